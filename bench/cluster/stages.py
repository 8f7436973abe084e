"""Where a readiness flip's time goes, seen from a quiet process of its own (not the benchmark's
busy one): when each API server's watch delivers the probe pod's change (the controller manager
sees it from server 0) and each EndpointSlice change of the probe Services.

:func:`start` spawns the observer; :meth:`Stages.stop` returns every event as (CLOCK_MONOTONIC
time, server index, kind, name, ready addresses or the pod's Ready) for :func:`split`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import time
from typing import Any

from bench.cluster.observe import pct, ready_addresses

CTX = mp.get_context("spawn")  # the parent runs an event loop: a forked child would inherit it


def _pod_ready(pod: dict[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


async def _observe(kubeconfigs: list[str], namespace: str, stop: Any, out: Any) -> None:
    from servicenet.client import ApiClient

    events: list[tuple[float, int, str, str, Any]] = []
    clients = [ApiClient.from_kubeconfig(k, user_agent="bench-stages") for k in kubeconfigs]

    async def watch(i: int, api: str, plural: str, selector: str) -> None:
        async for ev in clients[i].watch(api, plural, namespace, label_selector=selector):
            now = time.monotonic()
            obj = ev.get("object") or {}
            md = obj.get("metadata") or {}
            if ev.get("type") not in ("ADDED", "MODIFIED"):
                continue
            if plural == "pods":
                events.append((now, i, "pod", md.get("name", ""), _pod_ready(obj)))
            else:
                svc = (md.get("labels") or {}).get("kubernetes.io/service-name", "")
                events.append((now, i, "slice", svc, sorted(ready_addresses(obj))))

    tasks = []
    for i in range(len(clients)):
        tasks.append(asyncio.create_task(watch(i, "v1", "pods", "app=probe")))
        tasks.append(asyncio.create_task(watch(i, "discovery.k8s.io/v1", "endpointslices",
                                               "kubernetes.io/service-name in (probe,probe-h)")))
    out.put("ready")
    while not stop.is_set():
        await asyncio.sleep(0.2)
    for t in tasks:
        t.cancel()
        with contextlib.suppress(BaseException):
            await t
    for c in clients:
        await c.close()
    out.put(events)


def _main(kubeconfigs: list[str], namespace: str, stop: Any, out: Any) -> None:
    asyncio.run(_observe(kubeconfigs, namespace, stop, out))


class Stages:
    def __init__(self, kubeconfigs: list[str], namespace: str) -> None:
        self.stop_ev = CTX.Event()
        self.q = CTX.Queue()
        self.p = CTX.Process(target=_main, args=(kubeconfigs, namespace, self.stop_ev, self.q), daemon=True)
        self.p.start()
        if self.q.get(timeout=60) != "ready":
            raise RuntimeError("stage observer did not start")

    def stop(self) -> list[tuple[float, int, str, str, Any]]:
        self.stop_ev.set()
        try:
            return list(self.q.get(timeout=30))
        finally:
            self.p.join(5)
            if self.p.is_alive():
                self.p.kill()


def split(flips: list[tuple[float, str, str, bool]], events: list[tuple[float, int, str, str, Any]],
          servers: int) -> dict[str, Any]:
    """Per stage p50/p99 (ms after each flip's status write was sent): the pod change on each
    server, then each probe Service's slice on each server. ``flips``: (t0, pod, pod IP, ready)."""
    stages: dict[str, list[float]] = {}
    for k, (t0, pod, ip, ready) in enumerate(flips):
        t_end = flips[k + 1][0] if k + 1 < len(flips) else float("inf")
        for i in range(servers):
            for t, srv, kind, name, val in events:
                if srv == i and kind == "pod" and name == pod and val == ready and t0 <= t < t_end:
                    stages.setdefault(f"pod seen on server {i}", []).append(t - t0)
                    break
            for svc in ("probe", "probe-h"):
                for t, srv, kind, name, val in events:
                    if srv == i and kind == "slice" and name == svc and (ip in val) == ready and t0 <= t < t_end:
                        stages.setdefault(f"{svc} slice seen on server {i}", []).append(t - t0)
                        break
    return {k: {"n": len(v), "p50_ms": round(pct(v, 50) * 1e3, 1), "p99_ms": round(pct(v, 99) * 1e3, 1)}
            for k, v in sorted(stages.items())}
