"""EndpointSlice controller benchmarks.

1. core: 10,000 Services x 10 pods, pure reconcile cost
   - from nothing to all slices (one reconcile per Service);
   - pod readiness change -> the one slice update (p50/p99 of the reconcile of that Service).
2. api: the ControllerManager against the in-process API server (scaled down by default,
   ``--api-services``): convergence from nothing, then pod readiness patch -> slice written
   (observed on a watch), p50/p99.

Run: ``.venv/bin/python -m bench.controllers.run [--services 10000] [--api-services 300]``
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from servicenet.controllers import endpointslice_core as esc

Obj = dict[str, Any]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def make_world(n_svc: int, per: int) -> tuple[list[Obj], dict[str, list[Obj]], dict[str, Obj]]:
    nodes = {f"node-{i}": {"metadata": {"name": f"node-{i}", "labels": {"topology.kubernetes.io/zone": f"z{i % 3}"}}} for i in range(10)}
    services, pods = [], {}
    k = 0
    for s in range(n_svc):
        name = f"svc-{s}"
        services.append({
            "metadata": {"name": name, "namespace": "default", "uid": f"u-{name}", "labels": {"app": name}},
            "spec": {"selector": {"app": name}, "clusterIP": "10.96.0.1", "ipFamilies": ["IPv4"],
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
        })
        plist = []
        for i in range(per):
            k += 1
            ip = f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}"
            plist.append({
                "metadata": {"name": f"{name}-{i}", "namespace": "default", "uid": f"u-{name}-{i}", "labels": {"app": name}},
                "spec": {"nodeName": f"node-{k % 10}", "containers": [{"name": "c"}]},
                "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "conditions": [{"type": "Ready", "status": "True"}]},
            })
        pods[name] = plist
    return services, pods, nodes


def bench_core(n_svc: int, per: int, flips: int) -> None:
    services, pods, nodes = make_world(n_svc, per)
    slices: dict[str, list[Obj]] = {}
    t0 = time.perf_counter()
    n_slices = 0
    for svc in services:
        res = esc.reconcile(svc, pods[svc["metadata"]["name"]], nodes, [])
        out = []
        for j, a in enumerate(res.actions):
            body = a.body or {}
            body["metadata"]["name"] = f"{svc['metadata']['name']}-{j}"
            body["metadata"]["resourceVersion"] = "1"
            out.append(body)
        slices[svc["metadata"]["name"]] = out
        n_slices += len(out)
    full = time.perf_counter() - t0
    total_eps = sum(len(s["endpoints"]) for v in slices.values() for s in v)
    assert total_eps == n_svc * per, total_eps
    print(f"core: {n_svc} services x {per} pods from nothing: {full:.2f}s "
          f"({n_slices} slices, {full / n_svc * 1e6:.0f} us/service)")
    rnd = random.Random(1)
    lat = []
    for _ in range(flips):
        svc = rnd.choice(services)
        name = svc["metadata"]["name"]
        plist = pods[name]
        i = rnd.randrange(per)
        p = copy.deepcopy(plist[i])
        cond = p["status"]["conditions"][0]
        cond["status"] = "False" if cond["status"] == "True" else "True"
        plist[i] = p
        t = time.perf_counter()
        res = esc.reconcile(svc, plist, nodes, slices[name])
        lat.append(time.perf_counter() - t)
        assert [a.verb for a in res.actions] == ["update"], res.actions
        slices[name] = [res.actions[0].body or {}]
    print(f"core: readiness flip -> one slice update: p50={pct(lat, 50) * 1e6:.0f}us "
          f"p99={pct(lat, 99) * 1e6:.0f}us max={max(lat) * 1e6:.0f}us (n={flips})")


async def bench_api(n_svc: int, per: int, flips: int) -> None:
    from servicenet import testing
    from servicenet.controllers.manager import ControllerManager

    async with testing.running_apiserver(Path(tempfile.mkdtemp(prefix="sn-bench-"))) as api:
        c = api.client
        await c.create("v1", "nodes", None, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})
        sem = asyncio.Semaphore(32)
        t0 = time.perf_counter()

        async def mk_pod(svc: str, i: int, ip: str) -> None:
            async with sem:
                name = f"{svc}-{i}"
                await c.create("v1", "pods", "default", {"apiVersion": "v1", "kind": "Pod",
                               "metadata": {"name": name, "namespace": "default", "labels": {"app": svc}},
                               "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]}})
                await c.patch("v1", "pods", "default", name, {"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                              "conditions": [{"type": "Ready", "status": "True"}]}}, subresource="status")

        async def mk_svc(s: int) -> None:
            async with sem:
                await c.create("v1", "services", "default", {"apiVersion": "v1", "kind": "Service",
                               "metadata": {"name": f"svc-{s}", "namespace": "default"},
                               "spec": {"selector": {"app": f"svc-{s}"}, "ports": [{"port": 80, "targetPort": 8080}]}})

        await asyncio.gather(*(mk_svc(s) for s in range(n_svc)))
        k = 0
        jobs = []
        for s in range(n_svc):
            for i in range(per):
                k += 1
                jobs.append(mk_pod(f"svc-{s}", i, f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}"))
        await asyncio.gather(*jobs)
        print(f"api: created {n_svc} services + {n_svc * per} pods in {time.perf_counter() - t0:.1f}s")

        seen: dict[tuple[str, bool], float] = {}
        ready_eps: dict[str, int] = {}

        async def watch() -> None:
            async for ev in c.watch("discovery.k8s.io/v1", "endpointslices", "default", resource_version="0"):
                o = ev.get("object") or {}
                ready_eps[o["metadata"]["name"]] = len(o.get("endpoints") or []) if ev["type"] != "DELETED" else 0
                for e in o.get("endpoints") or []:
                    seen.setdefault((e["targetRef"]["name"], bool(e["conditions"]["ready"])), time.perf_counter())

        w = asyncio.create_task(watch())
        cm = ControllerManager(c, controllers=["endpointslice"])
        t0 = time.perf_counter()
        await cm.start()
        deadline = time.monotonic() + 600
        while sum(ready_eps.values()) < n_svc * per and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        conv = time.perf_counter() - t0
        print(f"api: manager start -> all {n_svc * per} endpoints in slices: {conv:.2f}s")
        rnd = random.Random(2)
        lat = []
        for _ in range(flips):
            s, i = rnd.randrange(n_svc), rnd.randrange(per)
            name = f"svc-{s}-{i}"
            pod = await c.get("v1", "pods", "default", name)
            cur = pod["status"]["conditions"][0]["status"] == "True"
            want_ready = not cur
            seen.pop((name, want_ready), None)
            t = time.perf_counter()
            await c.patch("v1", "pods", "default", name, {"status": {"conditions": [{"type": "Ready", "status": "True" if want_ready else "False"}]}}, subresource="status")
            while (name, want_ready) not in seen:
                await asyncio.sleep(0.0005)
            lat.append(seen[(name, want_ready)] - t)
        print(f"api: readiness patch -> slice seen on watch: p50={pct(lat, 50) * 1e3:.1f}ms p99={pct(lat, 99) * 1e3:.1f}ms "
              f"mean={statistics.mean(lat) * 1e3:.1f}ms (n={flips}, {n_svc} services x {per} pods)")
        await cm.stop()
        w.cancel()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--pods", type=int, default=10)
    ap.add_argument("--flips", type=int, default=2000)
    ap.add_argument("--api-services", type=int, default=300)
    ap.add_argument("--api-flips", type=int, default=200)
    ap.add_argument("--skip-api", action="store_true")
    a = ap.parse_args()
    bench_core(a.services, a.pods, a.flips)
    if not a.skip_api:
        asyncio.run(bench_api(a.api_services, a.pods, a.api_flips))


if __name__ == "__main__":
    main()
