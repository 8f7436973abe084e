"""``bench cluster`` part 1: storage figures of a several-API-server control plane.

    .venv/bin/python -m bench.cluster.run [--quick] [--members N (default 3)] [--in-flight 64,128,256]

Side by side, in one run:
- durable creates/s: two API servers on one etcd (N members on 127.0.0.1, one shared config dir),
  half the clients on each, against one API server on SQLite with the same clients, at each number
  of creates in flight (a throughput sweep, as etcd's own figures go from 1 client to 1,000; the
  highest default level, 256, is 128 per API server, within the 200 mutating requests an API server
  admits by default, upstream's default too); and raw etcd loops on the same etcd as the ceiling;
- watch delivery p99 through two API servers: watchers on server B, a writer on server A stamping
  each ConfigMap with its send time (CLOCK_MONOTONIC, shared by the processes); on SQLite both sides
  talk to the one server.

The readiness -> EndpointSlice -> DNS/proxy latency across nodes and the virtual-node scale
simulation are :mod:`bench.cluster.scale` (``python -m bench cluster`` runs both). Results: stdout
and bench/results/cluster.json (key ``storage``; the scale runs add ``scale_<storage>``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.api import load
from bench.api.run import CTX, Child, api, ensure_namespaces, ms, pct, run_children
from bench.api.server_proc import ServerProc, cpu_seconds
from bench.cluster.procs import leader_endpoint, raw_etcd_puts
from servicenet.store.etcdlaunch import Cluster

RESULTS = Path(__file__).resolve().parents[1] / "results"


WARMUP = 500
IN_FLIGHT = (64, 128, 256)  # creates in flight, from 2 client processes


def creates(servers: list[ServerProc], n: int, conns: int = 32, warmup: int = WARMUP,
            etcd_pids: list[int] | None = None, tag: str = "") -> dict[str, Any]:
    """``n`` ConfigMap creates (names ``cm<tag>-<i>``) over ``conns`` connections from each of 2 client
    processes, half the processes on each server; first ``warmup`` creates of other names, not
    measured (fresh servers and a fresh etcd: first-use costs out of the figure; both storage sides
    get the same)."""
    targets = [s.target for s in servers]
    ensure_namespaces(targets[0], ["bench"])
    if warmup:
        _burst(targets, [f"warm-{i:05d}" for i in range(warmup)], conns, lead=0.5, limit=60)
    cpu0 = sum(s.cpu() for s in servers)
    etcd0 = sum(cpu_seconds(p) for p in etcd_pids or [])
    outs = _burst(targets, [f"cm{tag}-{i:05d}" for i in range(n)], conns, lead=1.0, limit=120)
    done = sum(o["done"] for o in outs)
    t0, t1 = min(o["t0"] for o in outs), max(o["t1"] for o in outs)
    lat = [x for o in outs for x in o["lat"]]
    cpu = sum(s.cpu() for s in servers) - cpu0
    etcd_cpu = sum(cpu_seconds(p) for p in etcd_pids or []) - etcd0
    return {"in_flight": conns * 2, "done": done, "rate": done / (t1 - t0), "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)),
            "etcd_cpu_us_per_create": etcd_cpu / max(1, done) * 1e6,
            "failed": sum(o["failed"] for o in outs), "error_samples": [e for o in outs for e in o["errors"]],
            "server_cpu_us_per_create": cpu / max(1, done) * 1e6,
            "client_cpu_us_per_create": sum(o["cpu"] for o in outs) / max(1, done) * 1e6,
            "rss_mib": [round(s.rss_mib(), 1) for s in servers]}


def sweep(servers: list[ServerProc], n: int, levels: tuple[int, ...],
          etcd_pids: list[int] | None = None) -> list[dict[str, Any]]:
    """:func:`creates` at each number of creates in flight (warm-up before the first only)."""
    return [creates(servers, n, conns=max(1, k // 2), warmup=WARMUP if j == 0 else 0, etcd_pids=etcd_pids,
                    tag=f"-{k}") for j, k in enumerate(levels)]


def best(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweep's throughput: its fastest level."""
    return max(points, key=lambda p: p["rate"])


def _burst(targets: list[Any], names: list[str], conns: int, lead: float, limit: float,
           procs: int = 2) -> list[dict[str, Any]]:
    """Create ConfigMaps ``names`` from ``procs`` client processes (spread over ``targets``), all
    starting ``lead`` seconds from now and stopping after ``limit``; each process's results."""
    start_at = time.monotonic() + lead
    deadline = start_at + limit
    return run_children([(load.create_burst, (targets[k % len(targets)], "configmaps", "bench", names[k::procs],
                                              conns, start_at, deadline)) for k in range(procs)],
                        timeout=deadline - time.monotonic() + 30)


def watch(writer: Any, reader: Any, n: int, watchers: int = 50, rate: float = 100.0) -> dict[str, Any]:
    ensure_namespaces(writer, ["watch"])
    body = api(reader, lambda c: c.request("GET", "/api/v1/namespaces/watch/configmaps?limit=1"))
    rv = orjson.loads(body)["metadata"]["resourceVersion"]
    deadline = time.monotonic() + 30 + n / rate
    ready = CTX.Event()
    kid = Child(load.watchers, reader, "watch", watchers, rv, n, ready, deadline)
    try:
        if not ready.wait(30):
            raise TimeoutError("watchers did not connect")
        run_children([(load.watch_writer, (writer, "watch", rate, n))], timeout=n / rate + 60)
        out = kid.result(deadline - time.monotonic() + 10)
    finally:
        if kid.p.is_alive():
            kid.p.kill()
    # events without a send stamp (e.g. the kube-root-ca.crt ConfigMap the API server adds) are not writes of ours
    lat = [now - sent for stream in out["recv"] for _, sent, now in stream if not math.isnan(sent)]
    return {"events": len(lat), "expected": n * watchers, "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99))}


def _all_cpu(p: dict[str, Any]) -> float:
    """CPU per create of every process on the machine: API servers, etcd members, clients (µs)."""
    return float(p["server_cpu_us_per_create"] + p["etcd_cpu_us_per_create"] + p["client_cpu_us_per_create"])


def report_sweep(res: dict[str, Any]) -> None:
    es, ss = res["etcd_sweep"], res["sqlite_sweep"]
    print(f"{'creates in flight (2 client procs)':40s}" + "".join(f"{p['in_flight']:>10d}" for p in es))
    rows = [("etcd, 2 API servers: creates/s", es, lambda p: f"{p['rate']:,.0f}"),
            ("  CPU per create, all processes (us)", es, lambda p: f"{_all_cpu(p):,.0f}"),
            ("  etcd CPU per create (us)", es, lambda p: f"{p['etcd_cpu_us_per_create']:,.0f}"),
            ("  create latency p99 (ms)", es, lambda p: f"{p['p99_ms']:.1f}"),
            ("  failed creates", es, lambda p: f"{p['failed']}"),
            ("SQLite, 1 server: creates/s", ss, lambda p: f"{p['rate']:,.0f}"),
            ("  create latency p99 (ms)", ss, lambda p: f"{p['p99_ms']:.1f}")]
    for label, pts, cell in rows:
        print(f"{label:40s}" + "".join(f"{cell(p):>10s}" for p in pts))
    print()


def report(res: dict[str, Any]) -> None:
    report_sweep(res)
    e, s = res["etcd_creates"], res["sqlite_creates"]
    print(f"{'':34s}{'etcd (2 API servers)':>22s}{'SQLite (1 server)':>20s}")
    print(f"{'creates in flight (fastest level)':34s}{e['in_flight']:22d}{s['in_flight']:20d}")
    print(f"{'durable creates/s':34s}{e['rate']:22,.0f}{s['rate']:20,.0f}   etcd/SQLite {e['rate'] / s['rate']:.2f}")
    print(f"{'  target on etcd: >= 2,000/s':34s}{'':22s}{'':20s}   ratio {e['rate'] / 2000:.2f} "
          f"({'PASS' if e['rate'] >= 2000 else 'MISS'})")
    print(f"{'server CPU per create (us, all)':34s}{e['server_cpu_us_per_create']:22,.0f}"
          f"{s['server_cpu_us_per_create']:20,.0f}   etcd/SQLite "
          f"{e['server_cpu_us_per_create'] / s['server_cpu_us_per_create']:.2f}")
    print(f"{'etcd CPU per create (us, members)':34s}{e['etcd_cpu_us_per_create']:22,.0f}{'-':>20s}")
    print(f"{'client CPU per create (us)':34s}{e['client_cpu_us_per_create']:22,.0f}"
          f"{s['client_cpu_us_per_create']:20,.0f}")
    total = _all_cpu(e)
    cores = len(os.sched_getaffinity(0))
    print(f"{'CPU per create, all processes (us)':34s}{total:22,.0f}{'':20s}   at most "
          f"{cores * 1e6 / total:,.0f}/s on this machine's {cores} cores")
    print(f"{'create latency p99 (ms)':34s}{e['p99_ms']:22.1f}{s['p99_ms']:20.1f}")
    ew, sw = res["etcd_watch"], res["sqlite_watch"]
    print(f"{'watch delivery p50 (ms)':34s}{ew['p50_ms']:22.1f}{sw['p50_ms']:20.1f}")
    print(f"{'watch delivery p99 (ms)':34s}{ew['p99_ms']:22.1f}{sw['p99_ms']:20.1f}")
    print(f"{'watch events received':34s}{ew['events']:>22,}{sw['events']:>20,}   (expected {ew['expected']:,})")
    raw, txn = res["raw_etcd_puts_per_s"], res["raw_etcd_create_txns_per_s"]
    print(f"raw etcd loops on the same etcd ({res['raw_in_flight']} in flight, one Python client): "
          f"{raw:,.0f} puts/s, {txn:,.0f} "
          f"create txns/s; the two API servers reach {e['rate'] / txn:.0%} of the txn loop "
          f"({res['members']} member(s))")


def save_results(update: dict[str, Any]) -> None:
    """Merge ``update`` into bench/results/cluster.json (the storage and the scale runs share it)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "cluster.json"
    try:
        cur = json.loads(path.read_text())
    except (OSError, ValueError):
        cur = {}
    if not isinstance(cur, dict) or "etcd_creates" in cur:  # the older flat layout
        cur = {}
    cur.update(update)
    path.write_text(json.dumps(cur, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--members", type=int, default=3, help="etcd members (default 3, a real quorum)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--in-flight", default=",".join(map(str, IN_FLIGHT)),
                    help="creates in flight to sweep, comma-separated (default %(default)s)")
    args = ap.parse_args(argv)
    levels = tuple(int(x) for x in args.in_flight.split(","))
    n = 1500 if args.quick else 5000
    n_watch = 200 if args.quick else 600
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-cluster-"))
    res: dict[str, Any] = {"members": args.members}
    cluster = Cluster(work / "etcd", args.members)
    servers: list[ServerProc] = []
    try:
        cluster.start()
        extra = ["--etcd-servers", ",".join(cluster.endpoints)]
        servers = [ServerProc(work / "shared-config", "etcd", extra=extra) for _ in range(2)]
        targets = [s.start() for s in servers]  # one after the other: the first creates the keys
        res["etcd_sweep"] = sweep(servers, n, levels, etcd_pids=[m.proc.pid for m in cluster.members if m.proc])
        res["etcd_creates"] = best(res["etcd_sweep"])
        res["etcd_watch"] = watch(targets[0], targets[1], n_watch)
        for s in servers:
            s.stop()
        leader = leader_endpoint(cluster.endpoints)  # where the API servers' stores write
        res["raw_in_flight"] = max(64, *levels)
        res["raw_etcd_puts_per_s"] = raw_etcd_puts(leader, n, inflight=res["raw_in_flight"])
        res["raw_etcd_create_txns_per_s"] = raw_etcd_puts(leader, n, inflight=res["raw_in_flight"], txn=True)
        sq = ServerProc(work / "sqlite", "sqlite")
        servers = [sq]
        t = sq.start()
        res["sqlite_sweep"] = sweep([sq], n, levels)
        res["sqlite_creates"] = best(res["sqlite_sweep"])
        res["sqlite_watch"] = watch(t, t, n_watch)
    finally:
        for s in servers:
            s.stop()
        cluster.stop()
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    report(res)
    save_results({"storage": res})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
