"""cProfile of the API server's main thread while it serves one create burst (or a Table LIST).

    .venv/bin/python -m bench.api.cpuprof [--kind pods|pods-protobuf|configmaps|table] [-n 3000] [--top 40]

The server runs as its own process under cProfile timed by its main thread's CPU clock
(bench/api/cprof_server.py; the SQLite writer thread is not in it); the same closed-loop clients as
``bench api`` drive it. Startup is in the profile too, so read the functions of the request path.
Profiling inflates the cost of small Python calls: use it to rank, and ``bench api``'s server CPU
per create for the figure.
"""

from __future__ import annotations

import argparse
import pstats
import re
import sys
import tempfile
import time
from pathlib import Path

from bench.api import load
from bench.api.conn import SyncConn
from bench.api.run import TABLE_ACCEPT, ensure_namespaces, run_children
from bench.api.server_proc import ServerProc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", default="pods", choices=["pods", "pods-protobuf", "configmaps", "table"])
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--out", default=None, help="where the .prof goes (default: a temp dir)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sn-api-prof-"))
    out = args.out or str(work / "server.prof")
    srv = ServerProc(work / "data", cprofile=out)
    target = srv.start()
    try:
        ensure_namespaces(target, ["p"])
        kind = "pods" if args.kind == "table" else args.kind
        names = [f"x-{i:05d}" for i in range(args.n)]
        start = time.monotonic() + 0.5
        cpu0 = srv.cpu()
        (o,) = run_children([(load.create_burst, (target, kind, "p", names, 32, start, start + 300))], 330)
        cpu = srv.cpu() - cpu0
        print(f"{o['done']} {kind} creates in {o['t1'] - o['t0']:.2f}s, server CPU {cpu / max(1, o['done']) * 1e6:.0f} "
              f"us per create (under cProfile)", file=sys.stderr)
        if args.kind == "table":
            c = SyncConn(target)
            try:
                for _ in range(3):
                    cont = ""
                    while True:
                        body = c.get("/api/v1/namespaces/p/pods" + (f"?limit=500&continue={cont}" if cont
                                                                     else "?limit=500"), accept=TABLE_ACCEPT)
                        m = re.search(rb'"continue":"([^"]+)"', body[:4096])
                        cont = m.group(1).decode() if m else ""
                        if not cont:
                            break
            finally:
                c.close()
    finally:
        srv.stop()
    st = pstats.Stats(out)
    st.sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
