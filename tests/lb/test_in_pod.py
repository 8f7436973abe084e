"""Acceptance: a client IN A POD (netns mode) uses servicenet.lb through the cluster DNS
(``servicenet endpoints --via dns``, run as the pod's program) and, with in-cluster config, the API."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from e2e.cluster import Cluster, running_cluster, until

from servicenet.client import ApiClient
from servicenet.dns.model import DnsConfig
from servicenet.dns.server import DnsServer
from servicenet.testing import kubectl, read_banner, up_argv

from .walk import NS, DnsClock, SliceClock, flags_dir, manifest, within

ROOT = Path(__file__).resolve().parents[2]


def client_pod(name: str, *args: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                "name": "c", "image": "python", "env": [{"name": "PYTHONPATH", "value": str(ROOT)}],
                "command": [sys.executable, "-m", "servicenet.cli", "endpoints", "web-headless", "-n", NS,
                            "--requests", "3000", "--watch", "-o", "json", *args]}]}}


async def logs(c: Cluster, name: str) -> list[dict[str, Any]]:
    rc, out, _ = await c.kubectl("logs", "-n", NS, name, check=False)
    docs = []
    for line in out.splitlines() if rc == 0 else []:
        if line.startswith("{"):
            docs.append(json.loads(line))
    return docs


def sets(docs: list[dict[str, Any]]) -> list[tuple[float, frozenset[str]]]:
    return [(d["time"], frozenset(e["endpoint"].rsplit(":", 1)[0] for e in d["endpoints"] if e["used"]))
            for d in docs if "endpoints" in d]


async def _walk(c: Cluster, flags: Path, name: str, args: list[str], limit: float,
                dns_server: tuple[str, int]) -> dict[str, float]:
    await c.kubectl("apply", "-f", "-", input=manifest(flags).encode())
    watcher = c.api.new_client()
    took: dict[str, float] = {}
    server_lag: dict[str, float | None] = {}
    try:
        async with SliceClock(watcher, "web-headless").running() as clock, \
                DnsClock(dns_server, f"web-headless.{NS}.svc.cluster.local").running() as dclock:
            await until(lambda: len(clock.ready()) == 3, 60, what="3 ready endpoints")
            await c.client.create("v1", "pods", NS, client_pod(name, *args))

            async def spread() -> dict[str, Any] | None:
                return next((d["spread"] for d in await logs(c, name) if "spread" in d), None)

            res = await until(spread, 90, interval=0.5, what="the in-pod client's 3,000 requests")
            assert res["failed"] == 0 and within(_counter(res["answers"]), 3000, 3), res
            await c.kubectl("scale", "sts", "web", "-n", NS, "--replicas=5")

            async def seen(pred: Any) -> float | None:
                return next((t for t, s in sets(await logs(c, name)) if pred(s)), None)

            t_lb = await until(lambda: seen(lambda s: len(s) == 5), 60, interval=0.3, what="5 in the pod")
            t_api = clock.first(lambda s: len(s) == 5)
            assert t_api is not None
            took["scale_up"] = t_lb - t_api
            t_dns = dclock.first(lambda s: len(s) == 5)
            server_lag["scale_up"] = None if t_dns is None else t_dns - t_api
            web1 = (await c.client.get("v1", "pods", NS, "web-1"))["status"]["podIP"]
            (flags / "web-1").write_text("not ready")
            gone = (lambda s: len(s) == 4 and web1 not in s)  # noqa: E731
            t_lb = await until(lambda: seen(gone), 30, interval=0.3, what="web-1 gone in the pod")
            t_api = clock.first(gone)
            assert t_api is not None
            took["not_ready"] = t_lb - t_api
            t_dns = dclock.first(gone)
            server_lag["not_ready"] = None if t_dns is None else t_dns - t_api
            timeline = [(round(t - t_api, 3), d.get("source")) for d in await logs(c, name)
                        if "endpoints" in d for t in [d["time"]]]
            _, out, _ = await c.kubectl("logs", "-n", NS, name, check=False)
            timeline.append(("stderr", [x for x in out.splitlines() if not x.startswith("{")][-10:]))
    finally:
        await watcher.close()
    for what, t in took.items():
        assert t < limit, (f"{what}: the in-pod client followed {t * 1000:.0f} ms after the EndpointSlice; "
                           f"the DNS server answered after {server_lag}; pod timeline {timeline}")
    return took


def _counter(d: dict[str, int]) -> Counter[str]:
    return Counter(d)


@pytest.mark.root
async def test_client_in_a_pod_dns_source(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, "netns") as c:
        dns_client = c.api.new_client()
        dns = DnsServer(dns_client, config=DnsConfig(), listen=[("127.0.0.1", 0)],
                        netns=c.netns, dns_ip="10.96.0.10")
        await dns.start()
        try:
            with flags_dir() as flags:
                took = await _walk(c, flags, "lb-dns", ["--via", "dns", "--port", "9376"],
                                   limit=DnsConfig().ttl + 1.0, dns_server=next((h, p) for n, h, p in dns.bound if n is None))
            print("in-pod dns source followed:", {k: f"{v * 1000:.0f} ms" for k, v in took.items()})
        finally:
            await dns.stop()
            await dns_client.close()


RBAC = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: lb-client, namespace: {NS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: lb-client, namespace: {NS}}}
rules:
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: lb-client, namespace: {NS}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: lb-client}}
subjects:
- {{kind: ServiceAccount, name: lb-client, namespace: {NS}}}
"""


class UpCluster:
    """``servicenet up --network netns`` as a process: API, controllers, node, DNS and proxy, with
    the API reachable from pods through the ``kubernetes`` Service (what in-cluster config needs)."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.kubeconfig = data / "kubeconfig"
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> UpCluster:
        self.proc = await asyncio.create_subprocess_exec(
            *up_argv(self.data, "--network", "netns", "--only", "controller-manager,node,dns,proxy"),
            cwd=str(ROOT), env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        await read_banner(self.proc, 90)
        return self

    async def kubectl(self, *args: str, **kw: Any) -> tuple[int, str, str]:
        return await kubectl(self.kubeconfig, *args, **kw)

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            await self.proc.wait()


@pytest.mark.root
async def test_client_in_a_pod_api_source_incluster(tmp_path: Path) -> None:
    with flags_dir() as flags:
        async with UpCluster(tmp_path / "up") as up:
            await up.kubectl("apply", "-f", "-", input=manifest(flags).encode())
            await up.kubectl("apply", "-f", "-", input=RBAC.encode())
            client = ApiClient.from_kubeconfig(up.kubeconfig)
            try:
                async with SliceClock(client, "web-headless").running() as clock:
                    await until(lambda: len(clock.ready()) == 3, 90, what="3 ready endpoints")
                    pod = client_pod("lb-api", "--via", "api", "--in-cluster", "--port", "http")
                    pod["spec"]["serviceAccountName"] = "lb-client"
                    await client.create("v1", "pods", NS, pod)

                    async def docs() -> list[dict[str, Any]]:
                        rc, out, _ = await up.kubectl("logs", "-n", NS, "lb-api", check=False)
                        if "servicenet endpoints:" in out:  # the CLI's error line: fail now, loudly
                            raise AssertionError(f"the in-pod client failed: {out.strip()}")
                        return [json.loads(x) for x in out.splitlines() if x.startswith("{")] if rc == 0 else []

                    async def spread() -> dict[str, Any] | None:
                        return next((d["spread"] for d in await docs() if "spread" in d), None)

                    res = await until(spread, 120, interval=0.5, what="the in-pod client's 3,000 requests")
                    assert res["failed"] == 0 and within(Counter(res["answers"]), 3000, 3), res
                    took = {}
                    await up.kubectl("scale", "sts", "web", "-n", NS, "--replicas=5")

                    async def seen(pred: Any) -> float | None:
                        return next((t for t, s in sets(await docs()) if pred(s)), None)

                    t_lb = await until(lambda: seen(lambda s: len(s) == 5), 90, interval=0.3, what="5 in the pod")
                    t_api = clock.first(lambda s: len(s) == 5)
                    assert t_api is not None
                    took["scale_up"] = t_lb - t_api
                    web1 = (await client.get("v1", "pods", NS, "web-1"))["status"]["podIP"]
                    (flags / "web-1").write_text("not ready")
                    gone = (lambda s: len(s) == 4 and web1 not in s)  # noqa: E731
                    t_lb = await until(lambda: seen(gone), 30, interval=0.3, what="web-1 gone in the pod")
                    t_api = clock.first(gone)
                    assert t_api is not None
                    took["not_ready"] = t_lb - t_api
                    print("in-pod api source followed:", {k: f"{v * 1000:.1f} ms" for k, v in took.items()})
                    for what, t in took.items():
                        assert t < 0.100, f"{what}: the in-pod client followed {t * 1000:.0f} ms after the slice"
            finally:
                await client.close()
