"""Run an API server with a timeline of the probe objects' writes through it: SIGUSR1 starts
recording, SIGUSR2 writes one JSON line per record to OUT.

    python -m bench.cluster.api_probe OUT.jsonl apiserver --storage etcd ...

Recorded, each with its CLOCK_MONOTONIC time (the benchmark's flip times are on the same clock),
for the benchmark's probe objects (namespace ``scale``, names ``probe…``: the probe pods' status
writes, the probe Services' EndpointSlice and Endpoints writes):

* ``put``: a PUT reached the handler (``t``) and its answer was made (``end``), with the storage
  transaction (``txn``: from the update's start to etcd's answer, ms) and the wait for the watch
  cache to reach the write's revision (``caught_up``, ms);
* ``pub``: the watch cache published an event of a probe EndpointSlice to its watchers
  (``ms``: the fan-out's own time, ``watchers``: how many got it);
* ``gc`` / ``stall``: collections and (with ``--probe-stalls``) event-loop stalls (:mod:`bench.cluster.loopwatch`).

Nothing here changes what the server does; it only times it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from bench.cluster import loopwatch
from bench.cluster.loopwatch import LoopWatch
from servicenet.apiserver import handlers, server
from servicenet.store import etcd, watch

MARK = "/scale/probe"
SHORT = {"endpointslices": "slice", "endpoints": "ep", "pods": "pod"}


def main() -> int:
    out = sys.argv[1]
    recs: list[dict[str, Any]] = []
    lw = LoopWatch(recs)
    rec = lw.rec
    stores: dict[str, dict[str, float]] = {}  # store key -> timings of the write under way

    orig_update = handlers.ResourceHandlers.update

    async def _update(self: Any, request: Any, t: Any, subresource: str | None = None) -> Any:
        if not (t.namespace == "scale" and (t.name or "").startswith("probe")):
            return await orig_update(self, request, t, subresource)
        t0 = time.monotonic()
        key = f"{t.info.plural}/{t.name}"
        stores[key] = {}
        try:
            return await orig_update(self, request, t, subresource)
        finally:
            st = stores.pop(key, {})
            rec(kind="put", plural=t.info.plural, name=t.name, t=t0, end=time.monotonic(),
                ua=request.headers.get("User-Agent", "")[:24], **st)

    orig_guarded = etcd.EtcdStore._guarded
    orig_written = etcd.EtcdStore._written

    def _slot(key: str) -> dict[str, float] | None:
        if MARK not in key:
            return None
        parts = key.rsplit("/", 3)  # .../<plural>/scale/<name>
        return stores.get(f"{parts[-3]}/{parts[-1]}")

    async def _guarded(self: Any, key: str, *a: Any, **kw: Any) -> Any:
        t0 = time.monotonic()
        try:
            return await orig_guarded(self, key, *a, **kw)
        finally:
            slot = _slot(key)
            if slot is not None:
                slot["txn"] = round((time.monotonic() - t0) * 1e3, 2)

    async def _written(self: Any, r: Any, *a: Any, **kw: Any) -> Any:
        t0 = time.monotonic()
        try:
            return await orig_written(self, r, *a, **kw)
        finally:
            slot = _slot(r.key)
            if slot is not None:
                slot["caught_up"] = round((time.monotonic() - t0) * 1e3, 2)

    orig_publish = watch.WatchHub.publish

    def _publish(self: Any, events: Any) -> None:
        if not lw.on or not any("endpointslices" + MARK in e.record.key for e in events):
            return orig_publish(self, events)
        t0 = time.monotonic()
        orig_publish(self, events)
        rec(kind="pub", t=t0, ms=round((time.monotonic() - t0) * 1e3, 3), n=len(events),
            keys=[e.record.key.rsplit("/", 1)[-1] for e in events if MARK in e.record.key],
            watchers=sum(len(ws) for _, ws, _ in self._route(events[0].record.key)))

    orig_start = server.ApiServer.start

    async def _start(self: Any, *a: Any, **kw: Any) -> Any:
        res = await orig_start(self, *a, **kw)
        asyncio.get_running_loop().create_task(lw.beat(), name="api-probe-beat")
        return res

    handlers.ResourceHandlers.update = _update  # type: ignore[method-assign]
    etcd.EtcdStore._guarded = _guarded  # type: ignore[method-assign]
    etcd.EtcdStore._written = _written  # type: ignore[method-assign]
    watch.WatchHub.publish = _publish  # type: ignore[method-assign]
    server.ApiServer.start = _start  # type: ignore[method-assign]

    return loopwatch.run_recorded(lw, recs, out, sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())


load = loopwatch.load


def split(flips: list[tuple[float, str, str, bool]], recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per flip (ms after its status write was sent), on this server: each probe write's arrival,
    answer, transaction and cache wait; the probe slices' fan-outs; collections and stalls."""
    out = []
    for k, (t0, _pod, _ip, _ready) in enumerate(flips):
        t_end = flips[k + 1][0] if k + 1 < len(flips) else float("inf")
        row: dict[str, Any] = {"t0": t0, "puts": [], "pubs": []}
        last = t0
        for r in recs:
            if not t0 <= r["t"] < t_end:
                continue
            if r["kind"] == "put":
                row["puts"].append((SHORT.get(r["plural"], r["plural"]), r["name"][-5:], round((r["t"] - t0) * 1e3, 1),
                                    round((r["end"] - t0) * 1e3, 1), r.get("txn"), r.get("caught_up")))
                last = max(last, r["end"])
            elif r["kind"] == "pub":
                row["pubs"].append((round((r["t"] - t0) * 1e3, 1), r["ms"], r["watchers"]))
        row["gc"] = [(r["gen"], r["ms"]) for r in recs if r["kind"] == "gc" and t0 <= r["t"] <= last and r["ms"] >= 1]
        row["stalls"] = [(round((r["t"] - t0) * 1e3, 1), r["ms"], r.get("stack")) for r in recs
                         if r["kind"] == "stall" and t0 - 0.05 <= r["t"] <= last]
        row["last_ms"] = round((last - t0) * 1e3, 1)
        out.append(row)
    return out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the flips, per kind of probe write on this server (p50 / p99, ms): when it arrived
    after the status write, how long the server took to answer it, and its storage transaction."""
    from bench.cluster.observe import pct

    by: dict[str, dict[str, list[float]]] = {}
    for r in rows:
        for kind, _name, t_in, t_out, txn, _wait in r["puts"]:
            d = by.setdefault(kind, {"in": [], "took": [], "txn": []})
            d["in"].append(t_in)
            d["took"].append(t_out - t_in)
            if txn is not None:
                d["txn"].append(txn)
    return {kind: {k: (round(pct(v, 50), 1), round(pct(v, 99), 1)) for k, v in d.items()} for kind, d in by.items()}
