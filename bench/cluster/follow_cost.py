"""What a followed write costs an API server after gRPC: the watch cache and its internal consumers.

    PYTHONPATH=<checkout> .venv/bin/python -m bench.cluster.follow_cost [-n 20000] [--rounds 3]

An API server in this process (memory store; the store's fan-out and the internal consumers are the
same on every backend) gets ``n`` ConfigMap creates of another server as the etcd watch hands them
over: each event is published to the watch cache (``_publish``: index, then fan-out), then the loop
runs whatever that woke before the next event. Printed: main-thread CPU per event (``thread_time``),
with every internal consumer of the API server in place, and the same for the bare index (no
watcher registered) as the floor; and which watches each event reaches. Run it with PYTHONPATH at
two checkouts to compare them (the same machine minute: alternate).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import orjson

from servicenet.store import ADDED, Event, Record
from servicenet.testing import running_apiserver


def _value(i: int, rev: int) -> bytes:
    return orjson.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": f"cm-{i:06d}", "namespace": "bench", "uid": f"00000000-0000-0000-0000-{i:012d}",
        "resourceVersion": str(rev), "creationTimestamp": "2026-12-04T13:00:00Z",
        "managedFields": [{"manager": "bench", "operation": "Update", "apiVersion": "v1",
                           "time": "2026-12-04T13:00:00Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:data": {".": {}, "f:k": {}}}}]}, "data": {"k": "v" * 300}})


async def _feed(store: object, n: int, start: int) -> float:
    publish = store._publish  # type: ignore[attr-defined]
    rev = store.revision  # type: ignore[attr-defined]
    batches = []
    for i in range(start, start + n):
        rev += 1
        key = f"/registry/core/configmaps/bench/cm-{i:06d}"
        batches.append([Event(ADDED, Record(key, _value(i, rev), rev, rev), None)])
    c0 = time.thread_time()
    for b in batches:
        publish(b)
        await asyncio.sleep(0)  # the consumers this woke run now, as between two watch reads
    return (time.thread_time() - c0) / n * 1e6


async def main_async(n: int, rounds: int) -> None:
    async with running_apiserver(Path(tempfile.mkdtemp(prefix="bench-follow-")), storage="memory") as api:
        store = api.server.store
        hub = store._hub
        key = "/registry/core/configmaps/bench/x"
        reached = [p for p in hub._by_prefix if key.startswith(p)]
        print(f"internal watches: {len(hub)} on {len(hub._by_prefix)} prefixes; a ConfigMap event reaches "
              f"{len(reached)}: {', '.join(reached)}")
        start = 0
        await _feed(store, 2000, start)  # warm-up
        start += 2000
        best_full = best_bare = float("inf")
        for r in range(rounds):
            full = await _feed(store, n, start)
            start += n
            saved, hub._by_prefix = hub._by_prefix, {}
            if hasattr(hub, "_routes"):
                hub._routes.clear()
            try:
                bare = await _feed(store, n, start)
            finally:
                hub._by_prefix = saved
                if hasattr(hub, "_routes"):
                    hub._routes.clear()
            start += n
            print(f"round {r}: with the internal consumers {full:6.1f} us/event; index only {bare:6.1f}; "
                  f"consumers and fan-out {full - bare:6.1f}", flush=True)
            best_full, best_bare = min(best_full, full), min(best_bare, bare)
        print(f"best of {rounds}: with the internal consumers {best_full:6.1f} us/event; index only "
              f"{best_bare:6.1f}; consumers and fan-out {best_full - best_bare:6.1f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    try:
        import uvloop
        uvloop.run(main_async(args.n, args.rounds))
    except ImportError:
        asyncio.run(main_async(args.n, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
