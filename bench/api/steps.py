"""CPU per create step inside the API server, JSON and protobuf bodies, one checkout or two.

    .venv/bin/python -m bench.api.steps [-n 3000] [--base /path/to/other/checkout] [--kinds pods,pods-protobuf]

For each kind (and each checkout), a fresh server (bench/api/steps_server.py) takes ``-n`` creates
from one client process x 32 connections; prints the server's CPU per create (all threads and the
event loop) and the ``time.thread_time`` of each wrapped step per create (a step's time includes the
wrapped steps it calls: ``_managed_fields`` holds ``create_managed_fields``). On a shared machine the
absolute figures move with the load (cold caches make every step 2-4x its in-process cost);
compare kinds and checkouts measured in the same minute.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from bench.api import load
from bench.api.run import ensure_namespaces, run_children
from bench.api.server_proc import ROOT, ServerProc


def measure(root: Path, kind: str, n: int, work: Path) -> tuple[float, float, dict[str, float]]:
    out = work / f"steps-{kind}-{time.monotonic_ns()}.json"
    srv = ServerProc(work / f"d-{time.monotonic_ns()}", cprofile=str(out), root=root, wrapper="bench.api.steps_server")
    target = srv.start()
    try:
        ensure_namespaces(target, ["p"])
        names = [f"x-{i:05d}" for i in range(n)]
        start = time.monotonic() + 0.2
        cpu0, loop0 = srv.cpu(), srv.loop_cpu()
        (o,) = run_children([(load.create_burst, (target, kind, "p", names, 32, start, start + 120))], 150)
        cpu, loop = srv.cpu() - cpu0, srv.loop_cpu() - loop0
    finally:
        srv.stop()
    done = max(1, o["done"])
    steps = {k: v[0] / done * 1e6 for k, v in json.loads(out.read_text()).items()}
    return cpu / done * 1e6, loop / done * 1e6, steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--base", type=Path, default=None, help="another checkout to measure in the same run")
    ap.add_argument("--kinds", default="pods,pods-protobuf")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sn-api-steps-"))
    roots = [("this", ROOT)] + ([("base", args.base.resolve())] if args.base else [])
    for label, root in roots:
        for kind in args.kinds.split(","):
            cpu, loop, steps = measure(root, kind, args.n, work)
            parts = ", ".join(f"{k} {v:.0f}" for k, v in sorted(steps.items(), key=lambda kv: -kv[1]))
            print(f"{label:4s} {kind:14s} server {cpu:5.0f} us/create (event loop {loop:5.0f}); steps, us/create: {parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
