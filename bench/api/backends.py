"""``bench api`` by storage backend: durable creates/s on memory, SQLite and etcd side by side.

    .venv/bin/python -m bench.api.backends [--quick]

One API server process per backend (HTTPS, bearer token), the same closed-loop ConfigMap creates from
client processes (bench/api/load.py), and server RSS after the creates. etcd is a local single member
(Debian's etcd 3.4, data dir in the work dir, so on the same disk as SQLite); a raw gRPC put loop on
that etcd (same concurrency, value size of a stored ConfigMap) is the ceiling. Results on stdout and
in bench/results/api_backends.json. Run on a shared machine: compare the ratios, not the absolutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.api import load
from bench.api.run import ensure_namespaces, ms, pct, run_children
from bench.api.server_proc import ServerProc
from bench.cluster.procs import raw_etcd_puts
from bench.store_raw import raw_sqlite_insert_rate
from servicenet.store.etcdlaunch import Cluster

RESULTS = Path(__file__).resolve().parents[1] / "results"


def creates(target: Any, n: int, procs: int = 2, conns: int = 32, namespace: str = "bench") -> dict[str, Any]:
    ensure_namespaces(target, [namespace])
    names = [f"cm-{i:05d}" for i in range(n)]
    start_at = time.monotonic() + 1.0
    deadline = start_at + 120
    outs = run_children([(load.create_burst, (target, "configmaps", namespace, names[k::procs], conns, start_at,
                                              deadline)) for k in range(procs)], timeout=deadline - time.monotonic() + 30)
    done = sum(o["done"] for o in outs)
    t0, t1 = min(o["t0"] for o in outs), max(o["t1"] for o in outs)
    lat = [x for o in outs for x in o["lat"]]
    errors = [e for o in outs for e in o["errors"]]
    return {"done": done, "rate": done / (t1 - t0), "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)),
            "errors": len(errors)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None)
    args, _ = ap.parse_known_args(argv)  # `python -m bench api ARGS` passes run.py's flags too
    n = 1500 if args.quick else 5000
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-api-backends-"))
    rows: dict[str, dict[str, Any]] = {}
    cluster = Cluster(work / "etcd", 1)
    try:
        cluster.start()
        for storage in ("memory", "sqlite", "etcd"):
            extra = ["--etcd-servers", ",".join(cluster.endpoints)] if storage == "etcd" else []
            srv = ServerProc(work / storage, storage, extra=extra)
            target = srv.start()
            try:
                cpu0 = srv.cpu()
                r = creates(target, n)
                r["server_cpu_us_per_create"] = (srv.cpu() - cpu0) / max(1, r["done"]) * 1e6
                r["rss_mib"] = srv.rss_mib()
                rows[storage] = r
            finally:
                srv.stop()
            print(f"{storage:7s} {r['rate']:8,.0f} creates/s  p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                  f"server CPU {r['server_cpu_us_per_create']:6.0f} us/create  RSS {r['rss_mib']:6.1f} MiB"
                  f"  errors {r['errors']}", flush=True)
        raw_etcd = raw_etcd_puts(cluster.endpoints[0], n, inflight=64)
        raw_sqlite = raw_sqlite_insert_rate(str(work / "raw.db"), n=min(n, 3000), batch=1)
    finally:
        cluster.stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(f"raw etcd put loop (64 in flight, 400 B values): {raw_etcd:,.0f} puts/s  "
          f"(API server on etcd reaches {rows['etcd']['rate'] / raw_etcd:.0%} of it)")
    print(f"raw sqlite3 (1 row/commit, synchronous=FULL): {raw_sqlite:,.0f} rows/s")
    print(f"ratios: etcd/sqlite creates {rows['etcd']['rate'] / rows['sqlite']['rate']:.2f}, "
          f"sqlite/memory {rows['sqlite']['rate'] / rows['memory']['rate']:.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "api_backends.json").write_text(json.dumps(
        {"creates": n, "backends": rows, "raw_etcd_puts_per_s": raw_etcd, "raw_sqlite_rows_per_s": raw_sqlite},
        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
