"""Run the controller manager with a timeline of the probe Services' path through it: SIGUSR1
starts recording, SIGUSR2 writes one JSON line per record to OUT.

    python -m bench.cluster.cm_probe OUT.jsonl controller-manager --kubeconfig ...

Recorded, each with its CLOCK_MONOTONIC time (the benchmark's flip times are on the same clock):

* ``pod``: a probe pod's event reached the controller manager's handler (``ready``: its Ready);
* ``sync``: an EndpointSlice sync of a probe Service started (``t``) and ended (``end``), with
  the time its slice writes took (``write_ms``) and whether it returned early as stale;
* ``gc``: a collection of the interpreter's garbage collector (generation, pause); full
  (generation 2) collections from the process's start (``before``: ahead of the recording, with
  the objects frozen out of the collector then);
* ``freeze``: the controller manager froze its caches out of the collector (common.gcfreeze);
* ``connect``: a new connection to the API server (a TCP connect and TLS handshake);
* ``stall``: the event loop did not run a 2 ms timer for ``ms`` (with the main thread's
  innermost frames when it was caught mid-stall by the sampling thread).

A flip's time from the pod event to the slice write is then split into queue wait, sync and
write, and each slow one can be matched against collections and stalls at the same time.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

import aiohttp

from servicenet import cli

try:
    from servicenet.common import gcfreeze
except ImportError:  # a checkout from before it (an A/B base)
    gcfreeze = None  # type: ignore[assignment]
from servicenet.controllers import manager as cm_mod

PROBES = ("scale/probe", "scale/probe-h")
TICK = 0.002
STALL = 0.010


def main() -> int:
    out = sys.argv[1]
    recs: list[dict[str, Any]] = []
    state: dict[str, Any] = {"on": False, "gc_t0": 0.0, "beat": time.monotonic(), "stack": None}

    def rec(**kw: Any) -> None:
        if state["on"]:
            recs.append(kw)

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            state["gc_t0"] = time.monotonic()
            return
        r = {"kind": "gc", "t": state["gc_t0"], "gen": info["generation"],
             "ms": round((time.monotonic() - state["gc_t0"]) * 1e3, 3), "collected": info["collected"]}
        if info["generation"] == 2 and not state["on"]:
            recs.append({**r, "before": True, "frozen": gc.get_freeze_count()})  # full collections: the whole run
        else:
            rec(**r)

    orig_handler = cm_mod.ControllerManager._handler
    orig_sync = cm_mod.ControllerManager._sync_endpointslice
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

        async def beat() -> None:
            while True:
                if not state["on"]:
                    await asyncio.sleep(0.2)
                    state["beat"] = time.monotonic()
                    continue
                t = time.monotonic()
                await asyncio.sleep(TICK)
                now = time.monotonic()
                state["beat"] = now
                late = now - t - TICK
                if late > STALL:
                    rec(kind="stall", t=t, ms=round(late * 1e3, 2), stack=state["stack"])
                state["stack"] = None
        self._tasks.append(asyncio.create_task(beat(), name="cm-probe-beat"))

    main_id = threading.get_ident()

    recording = threading.Event()

    def sampler() -> None:  # catches what the main thread runs while the loop is stalled
        while True:
            recording.wait()
            time.sleep(0.005)
            if state["on"] and time.monotonic() - state["beat"] > STALL and state["stack"] is None:
                frame = sys._current_frames().get(main_id)
                if frame is not None:
                    state["stack"] = [f"{f.filename.rsplit('/', 2)[-2:]}:{f.lineno} {f.name}"
                                      for f in traceback.extract_stack(frame)[-8:]]

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
    cm_mod.ControllerManager._perform = _perform  # type: ignore[method-assign]
    cm_mod.ControllerManager.start = _start  # type: ignore[method-assign]
    gc.callbacks.append(on_gc)
    threading.Thread(target=sampler, daemon=True).start()

    def start(*_: Any) -> None:
        state["beat"] = time.monotonic()
        state["on"] = True
        recording.set()

    def stop(*_: Any) -> None:
        state["on"] = False
        recording.clear()
        with open(out + ".tmp", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)
        os.replace(out + ".tmp", out)  # the benchmark waits for the name

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())


def load(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


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
