"""``NodeAgent``: the kubelet of servicenet (Component) and ``servicenet node``.

Registers the Node, heartbeats its Ready condition, watches the pods bound to it
(``spec.nodeName``) and runs them through :class:`PodRuntime`; serves the kubelet API
(logs/exec/port-forward) plus ``/healthz``, ``/readyz`` and ``/metrics`` on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import socket
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from servicenet.api import wellknown as wk
from servicenet.api.timefmt import format_rfc3339
from servicenet.api.views import Obj
from servicenet.client import ApiClient, ApiError, Informer
from servicenet.common import log
from servicenet.common.health import HealthServer
from servicenet.common.netns import is_root
from servicenet.common.runner import run_until_signal
from servicenet.node import hostgw, podsecurity
from servicenet.node.auth import NodeAuth
from servicenet.node.lease import DEFAULT_DURATION, NodeLease
from servicenet.node.network import PodNetwork, make_network
from servicenet.node.network import _run as run_ip
from servicenet.node.podspec import HostResolv, parse_resolv_conf
from servicenet.node.process import PKG_ROOT
from servicenet.node.runtime import PodRuntime, RuntimeConfig
from servicenet.node.server import make_routes
from servicenet.node.status import Backoff

__all__ = ["NETNS_ANNOTATION", "NodeAgent", "main", "node_object"]

_log = log.get("node")
NETNS_ANNOTATION = wk.NETNS_ANNOTATION  # (kept importable from here)
KUBELET_VERSION = "v1.32.0-servicenet"


def _now() -> str:
    return format_rfc3339(datetime.now(UTC))


def node_conditions(now: str, since: str) -> list[Obj]:
    def c(t: str, s: str, reason: str, msg: str) -> Obj:
        return {"type": t, "status": s, "lastHeartbeatTime": now, "lastTransitionTime": since,
                "reason": reason, "message": msg}
    return [
        c("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
        c("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        c("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        c("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ]


def node_object(name: str, *, internal_ip: str, pod_cidr: str, port: int, netns: str | None, now: str,
                since: str) -> Obj:
    """The Node this agent registers (pure)."""
    cpu = str(os.cpu_count() or 1)
    try:
        mem_kib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 1024
    except (ValueError, OSError):
        mem_kib = 1 << 20
    capacity = {"cpu": cpu, "memory": f"{mem_kib}Ki", "pods": "110", "ephemeral-storage": "10Gi"}
    machine = platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    annotations = {"node.alpha.kubernetes.io/ttl": "0"}
    if netns:
        annotations[NETNS_ANNOTATION] = netns
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": annotations, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch}},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
        "status": {
            "capacity": capacity, "allocatable": dict(capacity),
            "addresses": [{"type": "InternalIP", "address": internal_ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {"machineID": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex, "systemUUID": str(
                uuid.uuid5(uuid.NAMESPACE_URL, name)), "bootID": _boot_id(), "kernelVersion": platform.release(),
                "osImage": "servicenet", "containerRuntimeVersion": "servicenet://0.1.0",
                "kubeletVersion": KUBELET_VERSION, "kubeProxyVersion": KUBELET_VERSION,
                "operatingSystem": "linux", "architecture": arch},
            "conditions": node_conditions(now, since),
            "phase": "Running",
        },
    }


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


class NodeAgent:
    name = "node"

    def __init__(self, client: Any, *, node_name: str, network: str = "auto", pod_cidr: str | None = None,
                 cluster_dns_ip: str | None = None, cluster_domain: str = wk.CLUSTER_DOMAIN,
                 data_dir: str | None = None, virtual_ready_delay: float = 0.0, backoff_base: float = 10.0,
                 host: str = "127.0.0.1", port: int = 0, resolv_conf: str | None = "/etc/resolv.conf",
                 heartbeat_interval: float = 10.0, net_id: str | None = None,
                 lease_duration: int = DEFAULT_DURATION, node_netns: str | None = None,
                 node_ip: str | None = None, underlay: str | None = None) -> None:
        self.client = client
        self.node_name = node_name
        self.mode = ("netns" if is_root() else "loopback") if network == "auto" else network
        plan = wk.address_plan(self.mode)
        self.pod_cidr = pod_cidr or plan.pod_cidr
        self.cluster_dns_ip = plan.dns_ip if cluster_dns_ip is None else cluster_dns_ip
        self.data_dir = data_dir or os.path.join(tempfile.gettempdir(), "servicenet", f"node-{node_name}")
        os.makedirs(self.data_dir, exist_ok=True)
        self.net_id = net_id or self._load_net_id()
        self.network: PodNetwork = make_network(self.mode, self.pod_cidr, self.net_id, node_netns, node_ip)
        self.underlay = underlay if self.mode == "netns" else None  # host-gw routes to the other nodes
        self._routes: dict[str, str] = {}
        self._nodes: Any = None
        self._routes_dirty = asyncio.Event()
        host_resolv = HostResolv()
        if resolv_conf:
            with contextlib.suppress(OSError), open(resolv_conf) as f:
                host_resolv = parse_resolv_conf(f.read())
        self.runtime = PodRuntime(
            RuntimeConfig(node_name=node_name, data_dir=self.data_dir,
                          cluster_dns=[self.cluster_dns_ip] if self.cluster_dns_ip else [],
                          cluster_domain=cluster_domain, host_resolv=host_resolv,
                          backoff=Backoff(base=backoff_base, cap=max(300.0, backoff_base)),
                          virtual_ready_delay=virtual_ready_delay,
                          node_allocatable={"cpu": str(os.cpu_count() or 1)},
                          default_user=self._default_user()),
            self.network, write_status=self._write_status, finalize=self._finalize, fetch=self._fetch,
            services=self._services, on_event=self._event, request_token=self._request_token)
        self.health = HealthServer(host, port)
        self.heartbeat_interval = heartbeat_interval
        self.lease = NodeLease(client, node_name, duration=lease_duration)
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self._pods: Any = None
        self._svcs: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._since = _now()
        self._recent_events: dict[tuple[str, str, str], float] = {}
        self.port = 0

    def _default_user(self) -> int | None:
        """netns mode: containers run as nobody unless their securityContext says otherwise."""
        if self.mode != "netns":
            return None
        uid, why = podsecurity.default_user(sys.executable, PKG_ROOT)
        if uid == 0:
            _log.warning("pods run as root by default: the unprivileged user cannot run the built-in images",
                         reason=why)
        return uid

    # -- identity -------------------------------------------------------------------------------------
    def _load_net_id(self) -> str:
        path = os.path.join(self.data_dir, "agent.json")
        with contextlib.suppress(OSError, ValueError, KeyError):
            with open(path) as f:
                return str(json.load(f)["net_id"])
        nid = secrets.token_hex(2)
        with open(path, "w") as f:
            json.dump({"net_id": nid, "node": self.node_name}, f)
        return nid

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def describe(self) -> dict[str, str]:
        d = {"node": self.node_name, "network": self.mode, "kubelet": self.url, "podCIDR": self.pod_cidr,
             "clusterDNS": self.cluster_dns_ip}
        if self.network.node_netns:
            d["netns"] = self.network.node_netns
        return d

    # -- lifecycle ------------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.network.setup()
        self.runtime.load_state()
        app = web.Application(middlewares=[NodeAuth(self.client, self.node_name).middleware])
        app.add_routes(make_routes(self.runtime))
        app.add_routes(self.health.routes())
        self.health.add_ready_check("pods-synced", lambda: (self._pods is not None and self._pods.synced,
                                                            "pod informer not synced"))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server = site._server
        if server is not None and server.sockets:
            self.port = server.sockets[0].getsockname()[1]
        await self._register()
        self._svcs = Informer(self.client, "v1", "services")
        self._pods = Informer(self.client, "v1", "pods", field_selector=f"spec.nodeName={self.node_name}")
        self._pods.add_handler(self._on_pod)
        await self._svcs.start()
        await self._pods.start()
        await self._svcs.wait_synced()
        await self._pods.wait_synced()
        await self.runtime.cleanup_orphans()
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="node heartbeat"))
        self._tasks.append(asyncio.create_task(self.lease.run(), name="node lease"))
        if self.underlay:
            self._nodes = Informer(self.client, "v1", "nodes")
            self._nodes.add_handler(lambda *_: self._routes_dirty.set())
            await self._nodes.start()
            self._tasks.append(asyncio.create_task(self._route_loop(), name="host-gw routes"))
        _log.info("node agent started", node=self.node_name, network=self.mode, port=self.port)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for inf in (self._pods, self._svcs, self._nodes):
            if inf is not None:
                await inf.stop()
        await self.runtime.shutdown()
        await self.network.teardown()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- API glue -------------------------------------------------------------------------------------
    def _on_pod(self, etype: str, obj: Obj, old: Obj | None) -> None:
        if (obj.get("spec") or {}).get("nodeName") != self.node_name:
            return
        if etype == "DELETED":
            self.runtime.remove_pod(obj)
        else:
            self.runtime.sync_pod(obj)

    def _services(self) -> list[Obj]:
        return self._svcs.list() if self._svcs is not None else []

    async def _write_status(self, pod: Obj, status: Obj) -> None:
        meta = pod["metadata"]
        patch = {"metadata": {"uid": meta.get("uid")}, "status": status}
        try:
            await self.client.patch("v1", "pods", meta.get("namespace"), meta["name"], patch,
                                    patch_type="merge", subresource="status")
        except ApiError as exc:
            if exc.status != 404:
                raise

    async def _finalize(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            await self.client.delete("v1", "pods", meta.get("namespace"), meta["name"], grace_period_seconds=0,
                                     preconditions={"uid": meta["uid"]} if meta.get("uid") else None)
        except ApiError as exc:
            if exc.status not in (404, 409):
                _log.warning("final pod delete failed", pod=meta["name"], error=str(exc))

    async def _request_token(self, namespace: str, sa: str, pod: Obj, audiences: list[str],
                             seconds: int) -> tuple[str, float]:
        """A ServiceAccount token bound to ``pod`` (TokenRequest), for its projected volume."""
        meta = pod["metadata"]
        spec: Obj = {"expirationSeconds": seconds,
                     "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}}
        if audiences:
            spec["audiences"] = audiences
        out = await self.client.request(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{sa}/token",
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
        exp = datetime.strptime(out["status"]["expirationTimestamp"], "%Y-%m-%dT%H:%M:%SZ")
        return out["status"]["token"], exp.replace(tzinfo=UTC).timestamp()

    async def _fetch(self, kind: str, namespace: str, name: str) -> Obj | None:
        try:
            return await self.client.get("v1", kind, namespace, name)  # type: ignore[no-any-return]
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def _event(self, pod: Obj, etype: str, reason: str, message: str) -> None:
        meta = pod["metadata"]
        key = (meta.get("uid", ""), reason, message)
        loop = asyncio.get_running_loop()
        if loop.time() - self._recent_events.get(key, -1e9) < 10:
            return  # the kubelet aggregates repeats; do not flood the API
        self._recent_events[key] = loop.time()
        if len(self._recent_events) > 2000:
            self._recent_events.clear()
        now = _now()
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta.get("namespace")},
              "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": meta.get("namespace"),
                                 "name": meta["name"], "uid": meta.get("uid")},
              "reason": reason, "message": message, "type": etype, "count": 1,
              "firstTimestamp": now, "lastTimestamp": now,
              "source": {"component": "kubelet", "host": self.node_name},
              "reportingComponent": "kubelet", "reportingInstance": self.node_name}

        async def send() -> None:
            with contextlib.suppress(Exception):
                await self.client.create("v1", "events", meta.get("namespace"), ev)
        self._tasks = [t for t in self._tasks if not t.done()]
        self._tasks.append(asyncio.create_task(send()))

    async def _register(self) -> None:
        node = node_object(self.node_name, internal_ip=self.network.node_ip, pod_cidr=self.pod_cidr,
                           port=self.port, netns=self.network.node_netns, now=_now(), since=self._since)
        try:
            await self.client.create("v1", "nodes", None, node)
        except ApiError as exc:
            if exc.status != 409:
                raise
            cur = await self.client.get("v1", "nodes", None, self.node_name)
            cur["metadata"].setdefault("labels", {}).update(node["metadata"]["labels"])
            annotations = cur["metadata"].setdefault("annotations", {})
            annotations.update(node["metadata"]["annotations"])
            if not self.network.node_netns:
                annotations.pop(NETNS_ANNOTATION, None)
            cur["spec"] = {**(cur.get("spec") or {}), **node["spec"]}
            await self.client.update("v1", "nodes", None, self.node_name, cur)
        await self.client.patch("v1", "nodes", None, self.node_name, {"status": node["status"]},
                                patch_type="merge", subresource="status")

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await self.client.patch("v1", "nodes", None, self.node_name,
                                        {"status": {"conditions": node_conditions(_now(), self._since)}},
                                        patch_type="merge", subresource="status")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("heartbeat failed", error=repr(exc))
                with contextlib.suppress(Exception):
                    await self._register()


    async def _route_loop(self) -> None:
        """Keep ``podCIDR via nodeIP`` routes to every other node in the node namespace."""
        ns = str(self.network.node_netns)
        while True:
            await self._routes_dirty.wait()
            self._routes_dirty.clear()
            want = hostgw.plan_routes(self._nodes.list(), self.node_name, str(self.underlay))
            put, drop = hostgw.route_diff(self._routes, want)
            for argv in put + drop:
                try:
                    await run_ip("ip", "-n", ns, *argv)
                except Exception as exc:
                    _log.warning("host-gw route failed", route=" ".join(argv), error=str(exc))
                    self._routes_dirty.set()
                    await asyncio.sleep(1.0)
                    continue
                if argv[1] == "replace":
                    self._routes[argv[2]] = argv[4]
                else:
                    self._routes.pop(argv[2], None)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="servicenet node", description="Run the servicenet node agent")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    p.add_argument("--node-name", default=socket.gethostname())
    p.add_argument("--network", choices=["auto", "netns", "loopback", "virtual"], default="auto")
    p.add_argument("--pod-cidr")
    p.add_argument("--cluster-dns")
    p.add_argument("--cluster-domain", default=wk.CLUSTER_DOMAIN)
    p.add_argument("--data-dir")
    p.add_argument("--port", type=int, default=10250)
    p.add_argument("--virtual-ready-delay", type=float, default=0.0)
    p.add_argument("--net-id", default=None, help="netns: the id in the names of this node's bridge, pods and veths")
    p.add_argument("--node-ip", default=None, help="netns: the node's address on the underlay (its InternalIP)")
    p.add_argument("--netns-name", default=None, help="netns: an existing node namespace to use")
    p.add_argument("--underlay-cidr", default=None,
                   help="netns: route other nodes' podCIDRs via their InternalIPs on this network (host-gw)")
    p.add_argument("--node-lease-duration-seconds", type=int, default=DEFAULT_DURATION,
                   help="heartbeat Lease duration; renewed every quarter of it (default 40)")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    log.setup(args.log_level)

    async def run() -> None:
        client = ApiClient.from_kubeconfig(args.kubeconfig)
        agent = NodeAgent(client, node_name=args.node_name, network=args.network, pod_cidr=args.pod_cidr,
                          cluster_dns_ip=args.cluster_dns, cluster_domain=args.cluster_domain,
                          data_dir=args.data_dir, virtual_ready_delay=args.virtual_ready_delay, port=args.port,
                          lease_duration=args.node_lease_duration_seconds, node_netns=args.netns_name, net_id=args.net_id,
                          node_ip=args.node_ip, underlay=args.underlay_cidr)
        await run_until_signal(agent, closing=[client.close], announce=True)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
