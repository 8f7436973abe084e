"""The API server's user-space instructions per create, under valgrind's callgrind: a figure that does
not move with the machine's load (CPU time per create does, by 20-50 % on a shared 2-core machine).

    .venv/bin/python -m bench.api.instructions [-n 500] [--kinds pods-protobuf,pods] [ROOT ...]

For each checkout ROOT (default: this one; another worktree makes an A/B) and kind, a fresh SQLite
server runs under callgrind with instrumentation off; 200 creates warm it up (caches, first-time
imports), then instrumentation is switched on (``callgrind_control -i on``) for ``-n`` creates from one
client process x 32 connections, and the instructions executed are divided by the creates. The
client's connections are new in the measured phase, so ~32 TLS handshakes (~3.7M instructions each,
OpenSSL under valgrind) are included: ~240k per create at -n 500, the same for every kind and root.
Cache misses are not counted: read it beside the CPU figures of ``bench.api.run``, not instead.
Needs valgrind (scripts/install-deps.sh installs it). About a minute per kind and root.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import callgrind
from bench.api import load, server_proc
from bench.api.run import ensure_namespaces, run_children
from bench.api.server_proc import ROOT, ServerProc

_OUT: list[str] = []  # where the next server's callgrind output goes


class _CallgrindPopen(subprocess.Popen):  # type: ignore[type-arg]
    """``subprocess.Popen`` that starts an API server under callgrind (instrumentation off)."""

    def __init__(self, cmd: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(cmd, list) and "apiserver" in cmd and cmd[0] == sys.executable and _OUT:
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={_OUT[-1]}", *cmd]
        super().__init__(cmd, *args, **kwargs)


def measure(root: Path, kind: str, n: int, work: Path) -> tuple[float, int]:
    """Instructions per create of ``kind`` for a server running ``root``'s code, and the creates done."""
    out = work / f"cg-{root.name}-{kind}-{time.monotonic_ns()}.out"
    _OUT.append(str(out))
    srv = ServerProc(work / f"d-{time.monotonic_ns()}", root=root)
    plain, server_proc.subprocess.Popen = server_proc.subprocess.Popen, _CallgrindPopen  # type: ignore[misc]
    try:
        target = srv.start(timeout=600)
    finally:
        server_proc.subprocess.Popen = plain  # type: ignore[misc]
    try:
        ensure_namespaces(target, ["p"])
        warm = [f"w-{i}" for i in range(200)]
        run_children([(load.create_burst, (target, kind, "p", warm, 16, time.monotonic() + 0.2,
                                           time.monotonic() + 300))], 400)
        subprocess.run(["callgrind_control", "-i", "on", str(srv.pid)], capture_output=True)
        names = [f"x-{i:05d}" for i in range(n)]
        start = time.monotonic() + 0.2
        (o,) = run_children([(load.create_burst, (target, kind, "p", names, 32, start, start + 600))], 700)
        subprocess.run(["callgrind_control", "-i", "off", str(srv.pid)], capture_output=True)
        subprocess.run(["callgrind_control", "-d", str(srv.pid)], capture_output=True)
    finally:
        srv.stop()
    total = max(callgrind.totals(str(out) + "*"), default=0)  # the dump made after instrumentation began
    if not total:
        raise RuntimeError(f"no callgrind totals in {out}*")
    return total / max(1, o["done"]), o["done"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=500)
    ap.add_argument("--kinds", default="pods-protobuf,pods")
    ap.add_argument("roots", nargs="*", type=Path, help="checkouts to measure (default: this one)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="sn-api-instr-"))
    for root in args.roots or [ROOT]:
        for kind in args.kinds.split(","):
            ir, done = measure(root.resolve(), kind, args.n, work)
            print(f"{root.resolve().name:12s} {kind:14s} {ir / 1000:8.1f}k instructions per create ({done} creates)",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
