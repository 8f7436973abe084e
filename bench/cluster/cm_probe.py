"""Run the controller manager with a timeline of the probe Services' path through it: SIGUSR1
starts recording, SIGUSR2 writes one JSON line per record to OUT.

    python -m bench.cluster.cm_probe OUT.jsonl controller-manager --kubeconfig ...

Recorded, each with its CLOCK_MONOTONIC time (the benchmark's flip times are on the same clock):

* ``pod``: a probe pod's event reached the controller manager's handler (``ready``: its Ready);
* ``epsync``: an Endpoints sync of a probe Service started (``t``) and ended (``end``);
* ``sync``: an EndpointSlice sync of a probe Service started (``t``) and ended (``end``), with
  the time its slice writes took (``write_ms``) and whether it returned early as stale;
* ``gc``: a collection of the interpreter's garbage collector (generation, pause); full
  (generation 2) collections from the process's start (``before``: ahead of the recording, with
  the objects frozen out of the collector then);
* ``freeze``: the controller manager froze its caches out of the collector (common.gcfreeze);
* ``connect``: a new connection to the API server (a TCP connect and TLS handshake);
* ``stall`` (with ``--probe-stalls``): the event loop did not run a 2 ms timer for ``ms`` (with the main thread's
  innermost frames when it was caught mid-stall by the sampling thread).

A flip's time from the pod event to the slice write is then split into queue wait, sync and
write, and each slow one can be matched against collections and stalls at the same time.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from typing import Any

import aiohttp

from bench.cluster import loopwatch
from bench.cluster.loopwatch import LoopWatch

try:
    from servicenet.common import gcfreeze
except ImportError:  # a checkout from before it (an A/B base)
    gcfreeze = None  # type: ignore[assignment]
from servicenet.controllers import manager as cm_mod

PROBES = ("scale/probe", "scale/probe-h")


def main() -> int:
    out = sys.argv[1]
    recs: list[dict[str, Any]] = []
    lw = LoopWatch(recs)
    rec = lw.rec

    orig_handler = cm_mod.ControllerManager._handler
    orig_sync = cm_mod.ControllerManager._sync_endpointslice
    orig_ep_sync = cm_mod.ControllerManager._sync_endpoints
    orig_perform = cm_mod.ControllerManager._perform
    orig_start = cm_mod.ControllerManager.start
    writes: dict[str, float] = {}

    def _handler(self: Any, plural: str) -> Any:
        fn = orig_handler(self, plural)
        if plural != "pods":
            return fn

        def on_event(etype: str, obj: Any, old: Any) -> None:
            name = (obj.get("metadata") or {}).get("name", "")
            if name.startswith("probe-"):
                ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                            for c in (obj.get("status") or {}).get("conditions") or [])
                rec(kind="pod", t=time.monotonic(), name=name, ready=ready)
            fn(etype, obj, old)
        return on_event

    async def _sync(self: Any, key: str) -> None:
        if key not in PROBES:
            return await orig_sync(self, key)
        t = time.monotonic()
        writes[key] = 0.0
        stale = self._trackers["endpointslice"].stale(key)
        try:
            await orig_sync(self, key)
        finally:
            rec(kind="sync", key=key, t=t, end=time.monotonic(), write_ms=round(writes.pop(key, 0.0) * 1e3, 2),
                stale=stale)

    async def _ep_sync(self: Any, key: str) -> None:
        if key not in PROBES:
            return await orig_ep_sync(self, key)
        t = time.monotonic()
        try:
            await orig_ep_sync(self, key)
        finally:
            rec(kind="epsync", key=key, t=t, end=time.monotonic())

    async def _perform(self: Any, controller: str, a: Any) -> Any:
        key = f"{a.namespace}/{((a.body or {}).get('metadata') or {}).get('labels', {}).get('kubernetes.io/service-name', '')}"
        t = time.monotonic()
        try:
            return await orig_perform(self, controller, a)
        finally:
            if controller == "endpointslice" and key in writes:
                writes[key] += time.monotonic() - t

    async def _start(self: Any) -> None:
        await orig_start(self)
        self._tasks.append(asyncio.create_task(lw.beat(), name="cm-probe-beat"))

    orig_connect = aiohttp.TCPConnector._create_connection

    async def _connect(self: Any, *a: Any, **kw: Any) -> Any:
        t = time.monotonic()
        try:
            return await orig_connect(self, *a, **kw)
        finally:
            rec(kind="connect", t=t, ms=round((time.monotonic() - t) * 1e3, 2))

    if gcfreeze is not None:
        orig_freeze = gcfreeze.freeze

        def _freeze() -> float:
            pause = orig_freeze()
            recs.append({"kind": "freeze", "t": time.monotonic(), "ms": round(pause * 1e3, 1),
                         "frozen": gc.get_freeze_count()})
            return pause

        gcfreeze.freeze = _freeze  # the manager calls it through the module
    aiohttp.TCPConnector._create_connection = _connect  # type: ignore[method-assign]
    cm_mod.ControllerManager._handler = _handler  # type: ignore[method-assign]
    cm_mod.ControllerManager._sync_endpointslice = _sync  # type: ignore[method-assign]
    cm_mod.ControllerManager._sync_endpoints = _ep_sync  # type: ignore[method-assign]
    cm_mod.ControllerManager._perform = _perform  # type: ignore[method-assign]
    cm_mod.ControllerManager.start = _start  # type: ignore[method-assign]

    return loopwatch.run_recorded(lw, recs, out, sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())


load = loopwatch.load


def split(flips: list[tuple[float, str, str, bool]], recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per flip (ms after its status write was sent): the pod event reaching the controller
    manager, each probe Service's first non-stale sync after it (start, end, write), the syncs
    returned as stale before it, and the collections and loop stalls between the write and the
    last sync's end."""
    out = []
    for k, (t0, pod, _ip, ready) in enumerate(flips):
        t_end = flips[k + 1][0] if k + 1 < len(flips) else float("inf")
        ev = next((r["t"] for r in recs if r["kind"] == "pod" and r["name"] == pod and r["ready"] == ready
                   and t0 <= r["t"] < t_end), None)
        row: dict[str, Any] = {"t0": t0, "pod_ms": None if ev is None else round((ev - t0) * 1e3, 1)}
        last = t0
        for key in PROBES:
            syncs = [r for r in recs if r["kind"] == "sync" and r["key"] == key and ev is not None and ev <= r["t"] < t_end]
            done = next((r for r in syncs if not r["stale"]), None)
            name = key.rsplit("/", 1)[1]
            row[f"{name}_stale"] = sum(1 for r in syncs if r["stale"] and (done is None or r["t"] < done["t"]))
            if done is not None:
                row[f"{name}_start_ms"] = round((done["t"] - t0) * 1e3, 1)
                row[f"{name}_end_ms"] = round((done["end"] - t0) * 1e3, 1)
                row[f"{name}_write_ms"] = done["write_ms"]
                last = max(last, done["end"])
            ep = next((r for r in recs if r["kind"] == "epsync" and r["key"] == key and ev is not None
                       and ev <= r["t"] < t_end), None)
            if ep is not None:
                row[f"{name}_ep_ms"] = (round((ep["t"] - t0) * 1e3, 1), round((ep["end"] - t0) * 1e3, 1))
        row["gc"] = [(r["gen"], r["ms"]) for r in recs if r["kind"] == "gc" and t0 <= r["t"] <= last and r["ms"] >= 1]
        row["stalls"] = [(round((r["t"] - t0) * 1e3, 1), r["ms"], r.get("stack")) for r in recs
                         if r["kind"] == "stall" and t0 - 0.05 <= r["t"] <= last]
        out.append(row)
    return out


def gc_summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Collections per generation over the recording: count, total and longest pause."""
    res: dict[str, Any] = {}
    for g in (0, 1, 2):
        ms = [r["ms"] for r in recs if r["kind"] == "gc" and r["gen"] == g and not r.get("before")]
        res[f"gen{g}"] = {"n": len(ms), "total_ms": round(sum(ms), 1), "max_ms": round(max(ms, default=0), 1)}
    fr = [r for r in recs if r["kind"] == "freeze"]
    res["freezes"] = {"n": len(fr), "ms": [r["ms"] for r in fr], "frozen": fr[-1]["frozen"] if fr else 0}
    full = [r for r in recs if r["kind"] == "gc" and r.get("before")]
    res["gen2_before"] = {"n": len(full), "total_ms": round(sum(r["ms"] for r in full), 1),
                          "last5_ms": [r["ms"] for r in full[-5:]], "frozen": full[-1]["frozen"] if full else 0}
    conns = [r["ms"] for r in recs if r["kind"] == "connect"]
    res["new_connections"] = {"n": len(conns), "max_ms": round(max(conns, default=0), 1)}
    st = [r["ms"] for r in recs if r["kind"] == "stall"]
    res["stalls"] = {"n": len(st), "total_ms": round(sum(st), 1), "max_ms": round(max(st, default=0), 1)}
    return res


def flip_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """p50 / p99 (ms after the status write) over the flips of :func:`split`'s rows: the pod event,
    each probe slice sync's start and end, and its write."""
    from bench.cluster.observe import pct

    out: dict[str, Any] = {}
    for k in ("pod_ms", "probe_start_ms", "probe_end_ms", "probe_write_ms", "probe-h_start_ms", "probe-h_end_ms",
              "probe-h_write_ms"):
        v = [r[k] for r in rows if r.get(k) is not None]
        out[k] = (round(pct(v, 50), 1), round(pct(v, 99), 1))
    return out
