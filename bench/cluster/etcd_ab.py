"""A/B of the etcd create path: two API servers on one etcd, this checkout against another one
(``--base``), in alternating rounds so both see the same machine.

    git archive main | tar -x -C /tmp/base      # the other side: its servers run from that tree
    .venv/bin/python -m bench.cluster.etcd_ab --base /tmp/base [-n 1500] [--rounds 2] [--one-writer] [--profile DIR]

Each round and side gets a fresh one-member etcd and two fresh API servers (one shared config dir),
then ``bench.cluster.run.creates`` (2 client processes x 32 connections, ConfigMaps). Printed per
side: wall creates/s with the load average, and the load-independent figures from /proc: API-server
CPU per create summed over both servers (main threads = the event loops; the rest is gRPC's and
the other threads), etcd's CPU per create and the client processes' CPU per create. ``--profile DIR``: a main-thread cProfile of each
server of this checkout (last round), as ``DIR/a0.prof`` and ``DIR/a1.prof``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.api.server_proc import ROOT, ServerProc, cpu_seconds
from bench.cluster.run import creates
from servicenet.store.etcdlaunch import Cluster


def one(root: Path, work: Path, n: int, profile: Path | None, one_writer: bool = False) -> dict[str, Any]:
    cluster = Cluster(work / "etcd", 1)
    servers: list[ServerProc] = []
    try:
        cluster.start()
        extra = ["--etcd-servers", ",".join(cluster.endpoints)]
        for k in range(2):
            prof = str(profile / f"a{k}.prof") if profile else None
            servers.append(ServerProc(work / "config", "etcd", cprofile=prof, extra=extra, root=root))
            servers[-1].start()
        etcd_pids = [m.proc.pid for m in cluster.members if m.proc is not None]
        main0 = sum(s.loop_cpu() for s in servers)
        each0 = [s.cpu() for s in servers]
        etcd0 = sum(cpu_seconds(p) for p in etcd_pids)
        load0 = os.getloadavg()[0]
        out = creates(servers[:1] if one_writer else servers, n)
        done = max(1, out["done"])
        each = [(s.cpu() - c0) / done * 1e6 for s, c0 in zip(servers, each0, strict=True)]
        out["server_cpu_us_per_create"] = sum(each)
        out["each_us_per_create"] = each
        out["main_us_per_create"] = (sum(s.loop_cpu() for s in servers) - main0) / done * 1e6
        out["etcd_us_per_create"] = (sum(cpu_seconds(p) for p in etcd_pids) - etcd0) / done * 1e6
        out["load"] = (load0 + os.getloadavg()[0]) / 2
        return out
    finally:
        for s in servers:
            s.stop()
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--base", type=Path, required=True, help="the other checkout (its servicenet runs the B side)")
    ap.add_argument("-n", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--one-writer", action="store_true",
                    help="every client on server 0: server 1's CPU is then what following etcd's watch costs")
    args = ap.parse_args(argv)
    sides = [("this", ROOT), ("base", args.base)]
    print(f"{'round side':12s}{'creates/s':>10s}{'load':>6s}{'API CPU us/create':>19s}{'main thr':>9s}"
          f"{'other thr':>10s}{'etcd us':>9s}{'clients':>8s}{'errors':>7s}  per server", flush=True)
    for r in range(args.rounds):
        for label, root in (sides if r % 2 == 0 else sides[::-1]):
            work = Path(tempfile.mkdtemp(prefix="bench-etcd-ab-"))
            prof = args.profile if label == "this" and r == args.rounds - 1 else None
            if prof:
                prof.mkdir(parents=True, exist_ok=True)
            try:
                o = one(root, work, args.n, prof, args.one_writer)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            cpu, main_ = o["server_cpu_us_per_create"], o["main_us_per_create"]
            print(f"{r:<5d} {label:6s}{o['rate']:10,.0f}{o['load']:6.1f}{cpu:19,.0f}{main_:9,.0f}"
                  f"{cpu - main_:10,.0f}{o['etcd_us_per_create']:9,.0f}{o['client_cpu_us_per_create']:8,.0f}"
                  f"{o['errors']:7d}  "
                  f"{' + '.join(f'{x:,.0f}' for x in o['each_us_per_create'])}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
