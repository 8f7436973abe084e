"""Server CPU per pod create, two checkouts side by side: short alternating rounds against two
servers running at once, so that both see the same machine load.

    .venv/bin/python -m bench.api.ab --base /tmp/base-worktree [--rounds 6] [-n 1000] [--kinds pods,pods-protobuf]

Each round sends ``-n`` creates (closed loop, one client process x 32 connections) to one server and
reads that server's CPU (all threads, /proc) before and after; the servers take turns. Prints the
median and the spread of the CPU per create for each checkout and kind, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.api import load
from bench.api.run import ensure_namespaces, run_children
from bench.api.server_proc import ROOT, ServerProc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, type=Path, help="the other checkout (e.g. a worktree of main)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--kinds", default="pods,pods-protobuf")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sn-api-ab-"))
    servers = {"base": ServerProc(work / "base", root=args.base.resolve()), "this": ServerProc(work / "this", root=ROOT)}
    kinds = args.kinds.split(",")
    cpu: dict[tuple[str, str], list[float]] = {}
    try:
        targets = {name: s.start() for name, s in servers.items()}
        for t in targets.values():
            ensure_namespaces(t, ["ab"])
        for r in range(args.rounds):
            for kind in kinds:
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                for name in order:
                    srv, target = servers[name], targets[name]
                    names = [f"{kind.replace('-protobuf', '-pb')[:8]}-{r}-{i:05d}" for i in range(args.n)]
                    start = time.monotonic() + 0.2
                    c0 = srv.cpu()
                    (o,) = run_children([(load.create_burst, (target, kind, "ab", names, args.conns, start,
                                                              start + 120))], 150)
                    used = srv.cpu() - c0
                    if o["errors"]:
                        print(f"{name} {kind}: errors {o['errors'][:2]}", file=sys.stderr)
                    cpu.setdefault((name, kind), []).append(used / max(1, o["done"]) * 1e6)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for s in servers.values():
            s.stop()
    for kind in kinds:
        b, t = cpu[("base", kind)], cpu[("this", kind)]
        mb, mt = statistics.median(b), statistics.median(t)
        print(f"{kind:14s} server CPU per create: base {mb:6.0f} us [{min(b):.0f}-{max(b):.0f}], "
              f"this {mt:6.0f} us [{min(t):.0f}-{max(t):.0f}]  this/base {mt / mb:.2f}  "
              f"(= {1e6 / mb:,.0f} vs {1e6 / mt:,.0f} creates/s on one core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
