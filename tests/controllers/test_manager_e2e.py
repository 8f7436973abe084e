"""End-to-end: the ControllerManager against the in-process API server, with a simulated kubelet."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from servicenet.common import gcfreeze
from servicenet.controllers.manager import ControllerManager

testing = pytest.importorskip("servicenet.testing")

NS = "default"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def poll(fn: Callable[[], Awaitable[Any]], timeout: float = 30.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last={last!r})")


async def make_node(client: Any, name: str = "node-1") -> None:
    await client.create("v1", "nodes", None, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": "z1"}}})
    status = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}
    await client.patch("v1", "nodes", None, name, {"status": status}, subresource="status")


def pod_status(ip: str, ready: bool) -> dict[str, Any]:
    return {
        "status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": now()}],
        }
    }


async def list_slices(client: Any, svc: str) -> list[dict[str, Any]]:
    res = await client.list("discovery.k8s.io/v1", "endpointslices", NS, label_selector=f"kubernetes.io/service-name={svc}")
    return res.get("items") or []


@contextlib.asynccontextmanager
async def manager(client: Any, **kw: Any) -> AsyncIterator[ControllerManager]:
    cm = ControllerManager(client, **kw)
    await cm.start()
    try:
        yield cm
    finally:
        await cm.stop()


async def test_1001_pods_make_11_slices_and_truncated_endpoints(tmp_path: Path) -> None:
    # upstream truncates only *over* 1000 addresses, so 1,001 pods are the smallest case
    async with testing.running_apiserver(tmp_path) as api:
        c = api.client
        await make_node(c)
        svc = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": NS, "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }
        await c.create("v1", "services", NS, svc)
        sem = asyncio.Semaphore(16)

        async def mk(i: int) -> None:
            async with sem:
                name = f"web-{i:04d}"
                body = {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {"name": name, "namespace": NS, "labels": {"app": "web"}},
                    "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]},
                }
                await c.create("v1", "pods", NS, body)
                await c.patch("v1", "pods", NS, name, pod_status(f"10.244.{i // 250}.{i % 250 + 1}", True), subresource="status")

        await asyncio.gather(*(mk(i) for i in range(1001)))
        async with manager(c, controllers=["endpointslice", "endpoints"]) as cm:
            assert set(cm.queues) == {"endpointslice", "endpoints"}
            t0 = time.monotonic()

            async def slices_done() -> list[dict[str, Any]] | None:
                sl = await list_slices(c, "web")
                total = sum(len(s.get("endpoints") or []) for s in sl)
                return sl if total == 1001 else None

            slices = await poll(slices_done, timeout=60)
            converge = time.monotonic() - t0
            assert len(slices) >= 11 and all(len(s["endpoints"]) <= 100 for s in slices)
            for s in slices:
                assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
                assert s["metadata"]["labels"]["team"] == "a"
                assert s["metadata"]["ownerReferences"][0]["kind"] == "Service"
                assert s["metadata"]["name"].startswith("web-")

            async def endpoints_done() -> dict[str, Any] | None:
                with contextlib.suppress(Exception):
                    ep = await c.get("v1", "endpoints", NS, "web")
                    if (ep["metadata"].get("annotations") or {}).get("endpoints.kubernetes.io/over-capacity") == "truncated":
                        return ep
                return None

            ep = await poll(endpoints_done, timeout=30)
            assert sum(len(s.get("addresses") or []) for s in ep["subsets"]) == 1000

            # one pod turns not ready: exactly one slice is rewritten
            before = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for s in slices}
            await c.patch("v1", "pods", NS, "web-0537", pod_status("10.244.2.38", False), subresource="status")

            async def flipped() -> list[dict[str, Any]] | None:
                sl = await list_slices(c, "web")
                for s in sl:
                    for e in s.get("endpoints") or []:
                        if e["targetRef"]["name"] == "web-0537" and e["conditions"]["ready"] is False:
                            return sl
                return None

            after = await poll(flipped)
            await asyncio.sleep(0.3)  # let any (wrong) extra writes land before comparing
            after = await list_slices(c, "web")
            changed = [s["metadata"]["name"] for s in after if before.get(s["metadata"]["name"]) != s["metadata"]["resourceVersion"]]
            assert len(changed) == 1, changed
            assert len(after) == len(before)
            # the manager's caches hold no managedFields (as kube-controller-manager's); the objects
            # keep theirs, the rewritten slice too (an update sent without them keeps the stored ones)
            assert len(cm.pods.list()) == 1001 and not any("managedFields" in p["metadata"] for p in cm.pods.list())
            assert not any("managedFields" in s["metadata"] for s in cm.slices.list())
            assert (await c.get("v1", "pods", NS, "web-0000"))["metadata"].get("managedFields")
            assert all(s["metadata"].get("managedFields") for s in after)
            print(f"\n1001 pods -> {len(slices)} slices in {converge:.2f}s")


async def fake_kubelet(c: Any, stop: asyncio.Event, ready_delay: float = 0.4) -> None:
    """Start scheduled pods (IP, Running, not ready), mark them Ready after ``ready_delay`` (a
    readiness probe), and finish terminating pods after a short grace."""
    started: dict[str, float] = {}
    terminating: dict[str, float] = {}
    n = 0
    while not stop.is_set():
        pods = (await c.list("v1", "pods", NS)).get("items") or []
        t = time.monotonic()
        for p in pods:
            name = p["metadata"]["name"]
            st = p.get("status") or {}
            ready = any(x.get("type") == "Ready" and x.get("status") == "True" for x in st.get("conditions") or [])
            with contextlib.suppress(Exception):
                if p["metadata"].get("deletionTimestamp"):
                    terminating.setdefault(name, t)
                    if ready:
                        await c.patch("v1", "pods", NS, name, pod_status(st.get("podIP") or "10.244.9.9", False), subresource="status")
                    elif t - terminating[name] > 0.2:
                        await c.delete("v1", "pods", NS, name, grace_period_seconds=0)
                    continue
                if not p["spec"].get("nodeName"):
                    continue
                if not st.get("podIP"):
                    n += 1
                    started[name] = t
                    await c.patch("v1", "pods", NS, name, pod_status(f"10.244.1.{n % 250 + 1}", False), subresource="status")
                elif not ready and t - started.get(name, t) >= ready_delay:
                    await c.patch("v1", "pods", NS, name, pod_status(st["podIP"], True), subresource="status")
                else:
                    started.setdefault(name, t)
        await asyncio.sleep(0.05)


def deployment(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image, "ports": [{"name": "http", "containerPort": 8080}]}]},
            },
        },
    }


async def test_rolling_update_keeps_ready_endpoints_and_kubectl_rollout(tmp_path: Path) -> None:
    async with testing.running_apiserver(tmp_path) as api:
        c = api.client
        await make_node(c)
        await c.create("v1", "services", NS, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        })
        stop = asyncio.Event()
        async with manager(c, node_monitor_grace=600.0) as cm:
            kubelet = asyncio.create_task(fake_kubelet(c, stop))
            try:
                await c.create("apps/v1", "deployments", NS, deployment("v1"))

                async def ready_count() -> int:
                    return sum(
                        1 for s in await list_slices(c, "web") for e in s.get("endpoints") or [] if e["conditions"].get("ready")
                    )

                await poll(lambda: _eq(ready_count(), 3), timeout=30)
                await api.kubectl("rollout", "status", "deployment/web", "--timeout=30s")
                samples: list[int] = []
                watching = asyncio.Event()

                async def monitor() -> None:
                    watching.set()
                    while not stop.is_set():
                        samples.append(await ready_count())
                        await asyncio.sleep(0.01)

                mon = asyncio.create_task(monitor())
                await watching.wait()
                await c.patch("apps/v1", "deployments", NS, "web", {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}}, patch_type="strategic")
                rc, out, err = await api.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
                assert "successfully rolled out" in out

                async def only_v2() -> bool:
                    pods = (await c.list("v1", "pods", NS)).get("items") or []
                    return len(pods) == 3 and all(p["spec"]["containers"][0]["image"] == "v2" for p in pods)

                await poll(only_v2, timeout=30)
                await poll(lambda: _eq(ready_count(), 3), timeout=30)
                stop.set()
                await mon
                assert min(samples) >= 1, samples
                assert len(samples) > 20
                d = await c.get("apps/v1", "deployments", NS, "web")
                assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
                stop.clear()
                kubelet = asyncio.create_task(fake_kubelet(c, stop)) if kubelet.done() else kubelet

                rc, out, err = await api.kubectl("rollout", "undo", "deployment/web")
                await api.kubectl("rollout", "status", "deployment/web", "--timeout=60s")
                d = await c.get("apps/v1", "deployments", NS, "web")
                assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "v1"
                assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
                rss = (await c.list("apps/v1", "replicasets", NS)).get("items") or []
                assert sorted(r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for r in rss) == ["2", "3"], (
                    d["spec"]["template"], [r["spec"]["template"] for r in rss])
                evs = (await c.list("v1", "events", NS)).get("items") or []
                reasons = {e["reason"] for e in evs}
                assert {"ScalingReplicaSet", "SuccessfulCreate", "Scheduled"} <= reasons, reasons
                print(f"\nready endpoints during rollout: min={min(samples)} samples={len(samples)}")
            finally:
                stop.set()
                with contextlib.suppress(Exception):
                    await kubelet
            assert cm.describe()["health"].startswith("http://127.0.0.1:")


async def _eq(aw: Awaitable[int], want: int) -> bool:
    return (await aw) == want


async def test_statefulset_pods_and_headless_hostnames(tmp_path: Path) -> None:
    async with testing.running_apiserver(tmp_path) as api:
        c = api.client
        await make_node(c)
        await c.create("v1", "services", NS, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db", "namespace": NS},
            "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]},
        })
        stop = asyncio.Event()
        async with manager(c, node_monitor_grace=600.0):
            kubelet = asyncio.create_task(fake_kubelet(c, stop, ready_delay=0.1))
            try:
                await c.create("apps/v1", "statefulsets", NS, {
                    "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": NS},
                    "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                             "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "pg"}]}}},
                })

                async def hostnames() -> list[str] | None:
                    names = sorted(e.get("hostname", "") for s in await list_slices(c, "db") for e in s.get("endpoints") or [] if e["conditions"]["ready"])
                    return names if names == ["db-0", "db-1", "db-2"] else None

                await poll(hostnames, timeout=30)
                sl = await list_slices(c, "db")
                assert sl[0]["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
                sts = await poll(lambda: _sts_ready(c), timeout=30)
                assert sts["status"]["observedGeneration"] == sts["metadata"]["generation"]
                await c.patch("apps/v1", "statefulsets", NS, "db", {"spec": {"replicas": 1}})

                async def scaled() -> bool:
                    pods = (await c.list("v1", "pods", NS)).get("items") or []
                    return [p["metadata"]["name"] for p in pods] == ["db-0"]

                await poll(scaled, timeout=30)
            finally:
                stop.set()
                await kubelet


async def _sts_ready(c: Any) -> dict[str, Any] | None:
    sts = await c.get("apps/v1", "statefulsets", NS, "db")
    st = sts.get("status") or {}
    return sts if st.get("readyReplicas") == 3 and st.get("updatedReplicas") == 3 else None


async def test_unschedulable_node_not_ready_and_mirroring(tmp_path: Path) -> None:
    async with testing.running_apiserver(tmp_path) as api:
        c = api.client
        await make_node(c)
        beating = asyncio.Event()
        beating.set()

        async def heartbeat() -> None:  # the kubelet's node status updates, until told to stop
            while beating.is_set():
                status = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now(), "lastTransitionTime": now()}]}
                await c.patch("v1", "nodes", None, "node-1", {"status": status}, subresource="status")
                await asyncio.sleep(0.2)

        hb = asyncio.create_task(heartbeat())
        async with manager(c, node_monitor_grace=2.0):
            # a pod no node can take
            await c.create("v1", "pods", NS, {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "picky", "namespace": NS},
                "spec": {"nodeSelector": {"gpu": "yes"}, "containers": [{"name": "c", "image": "x"}]},
            })

            async def unschedulable() -> bool:
                p = await c.get("v1", "pods", NS, "picky")
                return any(x.get("type") == "PodScheduled" and x.get("reason") == "Unschedulable" for x in (p.get("status") or {}).get("conditions") or [])

            await poll(unschedulable, timeout=15)
            # a scheduled, ready pod on a node whose heartbeat stops: node Unknown, pod not ready
            await c.create("v1", "pods", NS, {
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runner", "namespace": NS},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            })
            p = await poll(lambda: _bound(c, "runner"), timeout=15)
            assert p["spec"]["nodeName"] == "node-1"
            await c.patch("v1", "pods", NS, "runner", pod_status("10.244.0.7", True), subresource="status")
            beating.clear()
            await hb

            async def node_unknown() -> bool:
                n = await c.get("v1", "nodes", None, "node-1")
                pod = await c.get("v1", "pods", NS, "runner")
                nready = next(x for x in n["status"]["conditions"] if x["type"] == "Ready")
                pready = next(x for x in pod["status"]["conditions"] if x["type"] == "Ready")
                return nready["status"] == "Unknown" and pready["status"] == "False"

            await poll(node_unknown, timeout=15)
            # mirroring: selector-less Service with hand-written Endpoints
            await c.create("v1", "services", NS, {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "ext", "namespace": NS},
                "spec": {"ports": [{"port": 5432}]},
            })
            await c.create("v1", "endpoints", NS, {
                "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "ext", "namespace": NS},
                "subsets": [{"addresses": [{"ip": "192.0.2.10"}], "ports": [{"port": 5432}]}],
            })

            async def mirrored() -> list[dict[str, Any]] | None:
                sl = await list_slices(c, "ext")
                return sl if sl and sl[0]["endpoints"][0]["addresses"] == ["192.0.2.10"] else None

            sl = await poll(mirrored, timeout=15)
            assert sl[0]["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslicemirroring-controller.k8s.io"
            await c.delete("v1", "endpoints", NS, "ext")
            await poll(lambda: _empty(list_slices(c, "ext")), timeout=15)
            evs = {e["reason"] for e in (await c.list("v1", "events", None)).get("items") or []}
            assert {"FailedScheduling", "NodeNotReady", "Scheduled"} <= evs, evs


async def _bound(c: Any, name: str) -> dict[str, Any] | None:
    p = await c.get("v1", "pods", NS, name)
    return p if p["spec"].get("nodeName") else None


async def _empty(aw: Awaitable[list[Any]]) -> bool:
    return not await aw


async def test_caches_frozen_out_of_the_collector_once_synced_and_again_when_grown_and_settled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcfreeze, "CHECK_INTERVAL", 0.02)
    async with testing.running_apiserver(tmp_path) as api:
        c = api.client
        try:
            async with manager(c) as cm:
                cm._gc_policy.min_objects = 1  # the caches of this small cluster count
                await poll(lambda: _true(cm._gc_policy.freezes == 1))
                cached = cm.factory.cache_stats()[0]
                assert gc.get_freeze_count() > 0
                # a quarter more objects in the caches (over the 5 % that counts), then still: frozen again
                for i in range((cached + 3) // 4):
                    await c.create("v1", "services", NS, {"metadata": {"name": f"s{i}"},
                                                          "spec": {"ports": [{"port": 80}]}})
                await poll(lambda: _true(cm._gc_policy.freezes >= 2))
        finally:
            gc.unfreeze()


async def _true(v: bool) -> bool:
    return v


async def test_endpoints_written_after_the_slices_of_the_same_change(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A readiness change wakes both endpoint controllers; the legacy Endpoints write waits for the
    Service's EndpointSlice sync, so the two do not reach the API server together."""
    writes: list[tuple[str, str, float, float]] = []  # (controller, verb, start, end)
    orig = ControllerManager._perform

    async def perform(self: ControllerManager, controller: str, a: Any) -> Any:
        t = time.monotonic()
        try:
            return await orig(self, controller, a)
        finally:
            writes.append((controller, a.verb, t, time.monotonic()))

    monkeypatch.setattr(ControllerManager, "_perform", perform)
    async with testing.running_apiserver(tmp_path) as api:
        c = api.client
        await make_node(c)
        await c.create("v1", "services", NS, {"metadata": {"name": "web"},
                                              "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
        for i in range(3):
            await c.create("v1", "pods", NS, {"metadata": {"name": f"web-{i}", "labels": {"app": "web"}},
                                              "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]}})
            await c.patch("v1", "pods", NS, f"web-{i}", pod_status(f"10.244.0.{i + 2}", True), subresource="status")
        async with manager(c, controllers=["endpointslice", "endpoints"]):
            async def ready(n: int) -> bool:
                with contextlib.suppress(Exception):
                    ep = await c.get("v1", "endpoints", NS, "web")
                    return sum(len(s.get("addresses") or []) for s in ep.get("subsets") or []) == n
                return False

            await poll(lambda: ready(3))
            for flip in range(3):
                del writes[:]
                await c.patch("v1", "pods", NS, "web-1", pod_status("10.244.0.3", flip % 2 == 1), subresource="status")
                await poll(lambda n=2 + flip % 2: ready(n))
                sl = [w for w in writes if w[0] == "endpointslice"]
                ep = [w for w in writes if w[0] == "endpoints"]
                assert sl and ep, writes
                assert min(w[2] for w in ep) >= max(w[3] for w in sl), writes
