"""The scheduler against a real API server with several Node objects: anti-affinity, nodeSelector,
FailedScheduling events in upstream's words, and a pending pod placed once a node gets its label."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servicenet.controllers.manager import ControllerManager
from servicenet.testing import running_apiserver

NS = "default"


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


async def _node(c: Any, name: str, labels: dict[str, str] | None = None) -> None:
    await c.create("v1", "nodes", None, {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}}})
    await c.patch("v1", "nodes", None, name, {"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": _now(),
         "lastTransitionTime": _now()}]}}, subresource="status")


async def _events(c: Any, pod: str) -> list[str]:
    evs = (await c.list("v1", "events", NS))["items"]
    return [e["message"] for e in evs if e["involvedObject"].get("name") == pod and e["reason"] == "FailedScheduling"]


async def test_scheduler_with_several_nodes(tmp_path: Path) -> None:
    async with running_apiserver(tmp_path) as api:
        c = api.client
        for i in (1, 2, 3):
            await _node(c, f"vms15{i}", {"node": f"kube-node{i}"} if i < 3 else {})
        cm = ControllerManager(c, node_monitor_grace=600.0, workers=2,
                               controllers=["deployment", "replicaset", "statefulset", "scheduler"])
        await cm.start()
        try:
            # hostnames: 4 replicas with required anti-affinity by hostname on 3 nodes
            tmpl = {"metadata": {"labels": {"app": "hostnames"}}, "spec": {
                "containers": [{"name": "c", "image": "x"}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "hostnames"}},
                     "topologyKey": "kubernetes.io/hostname"}]}}}}
            await c.create("apps/v1", "deployments", NS, {
                "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hostnames"},
                "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "hostnames"}}, "template": tmpl}})

            async def placed() -> Any:
                pods = (await c.list("v1", "pods", NS, label_selector="app=hostnames"))["items"]
                bound = sorted(p["spec"].get("nodeName", "") for p in pods if p["spec"].get("nodeName"))
                pending = [p for p in pods if not p["spec"].get("nodeName")]
                return (bound, pending) if len(pods) == 4 and len(bound) == 3 and pending else None

            bound, pending = await _poll(placed, 20)
            assert bound == ["vms151", "vms152", "vms153"]
            name = pending[0]["metadata"]["name"]
            want = ("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes "
                    "are available: 3 No preemption victims found for incoming pod.")

            async def failed() -> Any:
                return want in await _events(c, name)

            await _poll(failed, 10)
            _, out, _ = await api.kubectl("get", "pod", name, "-o", "jsonpath={.status.conditions[0].message}")
            assert out == want

            # the walkthrough's StatefulSet pinned to kube-node3: Pending until a node carries the label
            await c.create("apps/v1", "statefulsets", NS, {
                "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
                "spec": {"replicas": 1, "serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                             "nodeSelector": {"node": "kube-node3"}, "containers": [{"name": "c", "image": "x"}]}}}})
            want3 = ("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: "
                     "0/3 nodes are available: 3 Preemption is not helpful for scheduling.")

            async def web0_failed() -> Any:
                return want3 in await _events(c, "web-0")

            await _poll(web0_failed, 15)
            _, out, _ = await api.kubectl("get", "pod", "web-0", "-o", "jsonpath={.status.phase}")
            assert out == "Pending"
            await api.kubectl("label", "node", "vms153", "node=kube-node3")

            async def web0_bound() -> Any:
                p = await c.get("v1", "pods", NS, "web-0")
                return p["spec"].get("nodeName")

            assert await _poll(web0_bound, 10) == "vms153"
        finally:
            await cm.stop()
