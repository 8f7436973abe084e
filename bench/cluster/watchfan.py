"""Watch fan-out: delivery latency and the watch-serving server's CPU per delivered event.

    .venv/bin/python -m bench.cluster.watchfan [--storage etcd|sqlite] [--watchers 50] [--rate 100] [--n 200]
                                               [--base DIR] [--rounds 2] [--cprofile OUT.prof]

A writer creates ConfigMaps at ``--rate``/s (each stamped with its send time) and ``--watchers``
watch streams receive them. On etcd the writer uses server A and the watchers server B (B gets
the writes through its etcd watch); on SQLite both use the one server. Reported per round: events
received, delivery p50/p99 (wall: depends on the machine's load), and the CPU that the watch-serving
server spent per delivered event (process and main thread: robust to load, the figure to compare).

``--base DIR``: a checkout (e.g. ``git archive BASE | tar -x -C DIR``) whose servicenet package runs
in alternate rounds, so the two are measured side by side under the same load.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.api import load
from bench.api.run import CTX, Child, api, ensure_namespaces, ms, pct, run_children
from bench.api.server_proc import ROOT, ServerProc
from servicenet.store.etcdlaunch import Cluster


def one_round(writer: Any, reader: Any, reader_proc: ServerProc, n: int, watchers: int, rate: float,
              ns: str) -> dict[str, Any]:
    ensure_namespaces(writer, [ns])
    body = api(reader, lambda c: c.request("GET", f"/api/v1/namespaces/{ns}/configmaps?limit=1"))
    rv = orjson.loads(body)["metadata"]["resourceVersion"]
    deadline = time.monotonic() + 30 + n / rate
    ready = CTX.Event()
    kid = Child(load.watchers, reader, ns, watchers, rv, n, ready, deadline)
    try:
        if not ready.wait(30):
            raise TimeoutError("watchers did not connect")
        time.sleep(0.3)
        cpu0, loop0 = reader_proc.cpu(), reader_proc.loop_cpu()
        run_children([(load.watch_writer, (writer, ns, rate, n))], timeout=n / rate + 60)
        out = kid.result(deadline - time.monotonic() + 10)
        cpu, loop_cpu = reader_proc.cpu() - cpu0, reader_proc.loop_cpu() - loop0
    finally:
        if kid.p.is_alive():
            kid.p.kill()
    lat = [now - sent for stream in out["recv"] for _, sent, now in stream if not math.isnan(sent)]
    events = max(1, len(lat))
    per_stream = sorted(sum(1 for _, sent, _ in stream if not math.isnan(sent)) for stream in out["recv"])
    short = [(k, len(stream)) for k, stream in enumerate(out["recv"]) if len(stream) < n]
    if short:
        print(f"streams short of {n}: {short[:5]} (per-stream counts {per_stream[:3]}..{per_stream[-3:]})", flush=True)
    return {"events": len(lat), "expected": n * watchers, "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)),
            "server_cpu_us_per_event": round(cpu / events * 1e6, 1),
            "server_loop_cpu_us_per_event": round(loop_cpu / events * 1e6, 1)}


def start(storage: str, work: Path, root: Path, cprofile: str | None) -> tuple[list[ServerProc], Cluster | None]:
    if storage == "sqlite":
        s = ServerProc(work / "sqlite", "sqlite", root=root, cprofile=cprofile)
        s.start()
        return [s], None
    cluster = Cluster(work / "etcd", 1)
    cluster.start()
    extra = ["--etcd-servers", ",".join(cluster.endpoints)]
    servers = [ServerProc(work / "shared-config", "etcd", extra=extra, root=root),
               ServerProc(work / "shared-config", "etcd", extra=extra, root=root, cprofile=cprofile)]
    for s in servers:
        s.start()
    return servers, cluster


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--storage", choices=["etcd", "sqlite"], default="etcd")
    ap.add_argument("--watchers", type=int, default=50)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--base", type=Path, default=None, help="a checkout to measure in alternate rounds")
    ap.add_argument("--cprofile", default=None, help="thread-CPU cProfile of the watch-serving server")
    args = ap.parse_args(argv)
    sides = [("this", ROOT)] + ([("base", args.base.resolve())] if args.base else [])
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in sides}
    for r in range(args.rounds):
        for name, root in (sides if r % 2 == 0 else sides[::-1]):
            work = Path(tempfile.mkdtemp(prefix="bench-watchfan-"))
            servers: list[ServerProc] = []
            cluster = None
            try:
                servers, cluster = start(args.storage, work, root, args.cprofile if name == "this" else None)
                writer, reader = servers[0].target, servers[-1].target
                res = one_round(writer, reader, servers[-1], args.n, args.watchers, args.rate, f"wf{r}")
            finally:
                for s in servers:
                    s.stop()
                if cluster is not None:
                    cluster.stop()
                shutil.rmtree(work, ignore_errors=True)
            results[name].append(res)
            print(f"round {r} {name:5s} {args.storage}: {res}", flush=True)
    for name, rs in results.items():
        cpu = sorted(x["server_cpu_us_per_event"] for x in rs)
        loop = sorted(x["server_loop_cpu_us_per_event"] for x in rs)
        p99 = sorted(x["p99_ms"] for x in rs)
        print(f"{name}: server CPU per delivered event {cpu} us (main thread {loop}); p99 {p99} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
