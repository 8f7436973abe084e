"""A node that stops renewing its Lease: Ready=Unknown, unreachable taints, endpoints not ready, eviction.

Real API server and controller manager; the two nodes are fake kubelets that renew their
``kube-node-lease`` Lease with the node agent's :class:`NodeLease` and mark their pods ready.
Small grace period (2 s) and toleration (3 s) make the upstream timeline fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servicenet.controllers import nodelifecycle_core as nlc
from servicenet.controllers.manager import ControllerManager
from servicenet.node.lease import NodeLease
from servicenet.testing import running_apiserver

NS = "default"
GRACE = 2.0
TOLERATION = 3


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _poll(fn: Any, timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last={last!r})")


class FakeKubelet:
    """Registers a Node (Ready once, no status heartbeats), renews its Lease, runs its pods as ready."""

    def __init__(self, client: Any, name: str, ip_prefix: str) -> None:
        self.client, self.name, self.prefix = client, name, ip_prefix
        self.lease = NodeLease(client, name, duration=2)  # renewed every 0.5 s
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.client.create("v1", "nodes", None, {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": self.name, "labels": {"kubernetes.io/hostname": self.name}}})
        status = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                  "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}]}
        await self.client.patch("v1", "nodes", None, self.name, {"status": status}, subresource="status")
        self._tasks = [asyncio.create_task(self.lease.run()), asyncio.create_task(self._pods())]

    async def _pods(self) -> None:
        n = 0
        while True:
            pods = (await self.client.list("v1", "pods", NS, field_selector=f"spec.nodeName={self.name}"))["items"]
            for p in pods:
                if (p.get("status") or {}).get("podIP") or p["metadata"].get("deletionTimestamp"):
                    continue
                n += 1
                ip = f"{self.prefix}.{n}"
                await self.client.patch("v1", "pods", NS, p["metadata"]["name"], {"status": {
                    "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": _now()}]}},
                    subresource="status")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


async def _slice_endpoints(c: Any) -> dict[str, tuple[bool, str]]:
    res = await c.list("discovery.k8s.io/v1", "endpointslices", NS, label_selector="kubernetes.io/service-name=web")
    return {e["targetRef"]["name"]: (bool(e["conditions"].get("ready")), e.get("nodeName", ""))
            for s in res["items"] for e in s.get("endpoints") or []}


async def test_lost_node_goes_unknown_tainted_unready_and_evicted(tmp_path: Path) -> None:
    async with running_apiserver(tmp_path) as api:
        api.server.registry.default_toleration_seconds = (TOLERATION, TOLERATION)
        c = api.client
        alive, lost = FakeKubelet(c, "alive", "10.244.1"), FakeKubelet(c, "lost", "10.244.2")
        await alive.start()
        await lost.start()
        cm = ControllerManager(c, node_monitor_grace=GRACE, workers=2)
        await cm.start()
        try:
            lease = await c.get("coordination.k8s.io/v1", "leases", "kube-node-lease", "lost")
            assert lease["spec"]["holderIdentity"] == "lost" and lease["spec"]["leaseDurationSeconds"] == 2
            assert lease["metadata"]["ownerReferences"][0]["kind"] == "Node"
            assert "." in lease["spec"]["renewTime"]  # MicroTime
            _, out, _ = await api.kubectl("get", "leases", "-n", "kube-node-lease", "-o", "name")
            assert sorted(out.split()) == ["lease.coordination.k8s.io/alive", "lease.coordination.k8s.io/lost"]
            await c.create("v1", "services", NS, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                                  "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
            await c.create("apps/v1", "replicasets", NS, {
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}}, "template": {
                    "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}})

            async def two_ready() -> Any:
                eps = await _slice_endpoints(c)
                return eps if sorted(n for r, n in eps.values() if r) == ["alive", "lost"] else None

            eps = await _poll(two_ready, 20)
            victim = next(p for p, (_, n) in eps.items() if n == "lost")
            pod = await c.get("v1", "pods", NS, victim)
            tols = {(t["key"], t.get("tolerationSeconds")) for t in pod["spec"]["tolerations"]}
            assert tols == {(nlc.NOT_READY, TOLERATION), (nlc.UNREACHABLE, TOLERATION)}  # DefaultTolerationSeconds

            await lost.stop()  # the node dies: no more Lease renewals
            t0 = time.monotonic()

            async def victim_unready() -> bool:
                return (await _slice_endpoints(c)).get(victim, (True, ""))[0] is False

            await _poll(victim_unready, GRACE + 5)
            unready_after = time.monotonic() - t0
            # the lease was last renewed up to 0.5 s before t0; the check runs grace + 0.1 s after the last observation
            assert unready_after <= GRACE + 1.0, unready_after
            node = await c.get("v1", "nodes", None, "lost")
            ready = next(x for x in node["status"]["conditions"] if x["type"] == "Ready")
            assert (ready["status"], ready["reason"]) == ("Unknown", "NodeStatusUnknown")
            assert {(t["key"], t["effect"]) for t in node["spec"]["taints"]} == {
                (nlc.UNREACHABLE, "NoSchedule"), (nlc.UNREACHABLE, "NoExecute")}
            # the live node's pod stayed ready throughout
            assert sum(1 for r, n in (await _slice_endpoints(c)).values() if r and n == "alive") == 1

            async def evicted() -> bool:
                p = await c.get("v1", "pods", NS, victim)
                return bool(p["metadata"].get("deletionTimestamp"))

            await _poll(evicted, TOLERATION + 5)
            evicted_after = time.monotonic() - t0
            assert evicted_after >= TOLERATION, evicted_after  # not before the toleration ran out

            async def replaced() -> bool:
                eps = await _slice_endpoints(c)
                return sorted(n for r, n in eps.values() if r) == ["alive", "alive"]

            await _poll(replaced, 15)

            # the node comes back: Ready again (kubelet status), taints removed
            lost2 = FakeKubelet(c, "lost", "10.244.3")
            lost2._tasks = [asyncio.create_task(lost2.lease.run())]
            status = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                      "lastHeartbeatTime": _now(), "lastTransitionTime": _now()}]}
            await c.patch("v1", "nodes", None, "lost", {"status": status}, subresource="status")

            async def untainted() -> bool:
                n = await c.get("v1", "nodes", None, "lost")
                return not (n.get("spec") or {}).get("taints")

            await _poll(untainted, 10)
            await lost2.stop()
        finally:
            await cm.stop()
            await alive.stop()
            await lost.stop()
