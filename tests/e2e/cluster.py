"""An in-process cluster for end-to-end tests: API server + controller manager + node agent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servicenet.client import wait_for
from servicenet.controllers.manager import ControllerManager
from servicenet.node.agent import NodeAgent
from servicenet.testing import RunningApi, running_apiserver, worker_share

Obj = dict[str, Any]


@dataclass
class Cluster:
    api: RunningApi
    manager: ControllerManager
    agent: NodeAgent
    node: str
    network: str

    @property
    def client(self) -> Any:
        return self.api.client

    @property
    def netns(self) -> str | None:
        return getattr(self.agent.network, "node_netns", None)

    async def kubectl(self, *args: str, **kw: Any) -> tuple[int, str, str]:
        return await self.api.kubectl(*args, **kw)

    async def exec_in_node(self, *argv: str, timeout: float = 10.0) -> tuple[int, str]:
        full = ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)
        proc = await asyncio.create_subprocess_exec(*full, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        return proc.returncode or 0, out.decode()


@contextlib.asynccontextmanager
async def running_cluster(tmp: Path, network: str = "loopback", **agent_kw: Any) -> AsyncIterator[Cluster]:
    cidrs = ["127.96.0.0/16"] if network == "loopback" else ["10.96.0.0/12"]
    async with running_apiserver(tmp / "api", service_cidrs=cidrs) as api:
        pod_cidr = f"127.64.{worker_share(100, 254)}.0/24" if network == "loopback" else (
            "10.244.0.0/20" if network == "virtual" else None)
        agent = NodeAgent(api.client, node_name="node-1", network=network, pod_cidr=pod_cidr,
                          data_dir=str(tmp / "node"), backoff_base=0.2, **agent_kw, serving_cert=api.node_cert("node-1"))
        manager = ControllerManager(api.new_client())
        await agent.start()
        await manager.start()
        try:
            yield Cluster(api, manager, agent, "node-1", network)
        finally:
            await manager.stop()
            await agent.stop()
            await manager_client_close(manager)


async def manager_client_close(manager: ControllerManager) -> None:
    client = getattr(manager, "client", None)
    if client is not None:
        await client.close()


def ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


async def until(fn: Callable[[], Any], timeout: float = 20.0, interval: float = 0.02, what: str = "") -> Any:
    """:func:`servicenet.client.wait_for`, failing the test (not erroring) at the deadline."""
    try:
        return await wait_for(fn, timeout, interval)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or fn}") from None


async def slice_endpoints(client: Any, ns: str, svc: str) -> list[Obj]:
    lst = await client.list("discovery.k8s.io/v1", "endpointslices", ns,
                            label_selector=f"kubernetes.io/service-name={svc}")
    return [e for s in lst["items"] for e in s.get("endpoints") or []]


def redis_primary_links(ip: str, kube: str) -> dict[str, str]:
    """The Docker-link env vars a pod gets for the walkthrough's ``redis-primary`` Service (ports
    6379 ``redis`` and 9121 ``metrics`` at ``ip``) and the ``kubernetes`` Service at ``kube``."""
    return {
        "REDIS_PRIMARY_SERVICE_HOST": ip, "REDIS_PRIMARY_SERVICE_PORT": "6379",
        "REDIS_PRIMARY_SERVICE_PORT_REDIS": "6379", "REDIS_PRIMARY_SERVICE_PORT_METRICS": "9121",
        "REDIS_PRIMARY_PORT": f"tcp://{ip}:6379", "REDIS_PRIMARY_PORT_6379_TCP": f"tcp://{ip}:6379",
        "REDIS_PRIMARY_PORT_6379_TCP_PROTO": "tcp", "REDIS_PRIMARY_PORT_6379_TCP_PORT": "6379",
        "REDIS_PRIMARY_PORT_6379_TCP_ADDR": ip, "REDIS_PRIMARY_PORT_9121_TCP": f"tcp://{ip}:9121",
        "REDIS_PRIMARY_PORT_9121_TCP_PROTO": "tcp", "REDIS_PRIMARY_PORT_9121_TCP_PORT": "9121",
        "REDIS_PRIMARY_PORT_9121_TCP_ADDR": ip,
        "KUBERNETES_SERVICE_HOST": kube, "KUBERNETES_SERVICE_PORT": "443", "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "KUBERNETES_PORT": f"tcp://{kube}:443", "KUBERNETES_PORT_443_TCP": f"tcp://{kube}:443",
        "KUBERNETES_PORT_443_TCP_PROTO": "tcp", "KUBERNETES_PORT_443_TCP_PORT": "443",
        "KUBERNETES_PORT_443_TCP_ADDR": kube,
    }
