"""Acceptance: a client IN A POD (netns mode) uses servicenet.lb through the cluster DNS
(``servicenet endpoints --via dns``, run as the pod's program) and, with in-cluster config, the API."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from e2e.cluster import Cluster, running_cluster, until

from servicenet.dns.model import DnsConfig
from servicenet.dns.server import DnsServer

from .walk import NS, SliceClock, manifest, within

ROOT = Path(__file__).resolve().parents[2]


def client_pod(name: str, *args: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS},
            "spec": {"containers": [{
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


async def _walk(c: Cluster, tmp: Path, name: str, args: list[str], limit: float) -> dict[str, float]:
    flags = tmp / "flags"
    flags.mkdir(exist_ok=True)
    await c.kubectl("apply", "-f", "-", input=manifest(flags).encode())
    watcher = c.api.new_client()
    took: dict[str, float] = {}
    try:
        async with SliceClock(watcher, "web-headless").running() as clock:
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
            web1 = (await c.client.get("v1", "pods", NS, "web-1"))["status"]["podIP"]
            (flags / "web-1").write_text("not ready")
            gone = (lambda s: len(s) == 4 and web1 not in s)  # noqa: E731
            t_lb = await until(lambda: seen(gone), 30, interval=0.3, what="web-1 gone in the pod")
            t_api = clock.first(gone)
            assert t_api is not None
            took["not_ready"] = t_lb - t_api
    finally:
        await watcher.close()
    for what, t in took.items():
        assert t < limit, f"{what}: the in-pod client followed {t * 1000:.0f} ms after the EndpointSlice"
    return took


def _counter(d: dict[str, int]) -> Counter[str]:
    return Counter(d)


@pytest.mark.root
async def test_client_in_a_pod_dns_source(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, "netns") as c:
        dns = DnsServer(c.api.new_client(), config=DnsConfig(), listen=[("127.0.0.1", 0)],
                        netns=c.netns, dns_ip="10.96.0.10")
        await dns.start()
        try:
            took = await _walk(c, tmp_path, "lb-dns", ["--via", "dns", "--port", "9376"],
                               limit=DnsConfig().ttl + 1.0)
            print("in-pod dns source followed:", {k: f"{v * 1000:.0f} ms" for k, v in took.items()})
        finally:
            await dns.stop()
