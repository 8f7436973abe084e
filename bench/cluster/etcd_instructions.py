"""Instructions per create of one API server on etcd, under valgrind's callgrind: a figure the machine's
load does not move (CPU time per create does, by 2-3x on the shared 2-core machine).

    .venv/bin/python -m bench.cluster.etcd_instructions [-n 1500] [--role follower,writer] [ROOT ...]

Two API servers on a fresh one-member etcd (one shared config dir, as ``bench.cluster.run``); the
measured one runs under callgrind with instrumentation off. ``--role follower``: every create goes
to the other server, so the measured one only follows etcd's watch (what each server pays for every
write in the cluster); ``writer``: every create goes to the measured one (the HTTP path, the ``Txn``
and its own write's watch event). 200 creates warm up, then instrumentation is switched on
(``callgrind_control -i on``) for ``-n`` ConfigMap creates from one client process x ``--conns``
connections, until the measured server's cache has reached the last create's revision (a follower
under valgrind lags; a list with ``limit=1`` on one kept-open connection every 0.5 s), and the
instructions executed by the whole process (gRPC's threads included) are divided by the creates.
For each checkout ROOT (default: this one; another one makes an A/B). Needs valgrind.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench import callgrind
from bench.api import load, server_proc
from bench.api.conn import Conn
from bench.api.run import ensure_namespaces, run_children
from bench.api.server_proc import ROOT, ServerProc
from servicenet.store.etcdlaunch import Cluster

_OUT: list[str] = []


class _CallgrindPopen(subprocess.Popen):  # type: ignore[type-arg]
    def __init__(self, cmd: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(cmd, list) and "apiserver" in cmd and cmd[0] == sys.executable and _OUT:
            cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={_OUT[-1]}", *cmd]
        super().__init__(cmd, *args, **kwargs)


def _revision(target: Any) -> int:
    async def go() -> int:
        c = await Conn.open(target, target.ssl_context())
        try:
            body = await c.request("GET", "/api/v1/namespaces/bench/configmaps?limit=1")
            return int(orjson.loads(body)["metadata"]["resourceVersion"])
        finally:
            c.close()
    return asyncio.run(go())


def _wait_revision(target: Any, revision: int, timeout: float) -> int:
    """Poll ``target``'s list revision on one connection until it reaches ``revision``; the polls made."""
    async def go() -> int:
        c = await Conn.open(target, target.ssl_context())
        polls = 0
        deadline = time.monotonic() + timeout
        try:
            while True:
                polls += 1
                body = await c.request("GET", "/api/v1/namespaces/bench/configmaps?limit=1")
                if int(orjson.loads(body)["metadata"]["resourceVersion"]) >= revision:
                    return polls
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the measured server did not reach revision {revision}")
                await asyncio.sleep(0.5)
        finally:
            c.close()
    return asyncio.run(go())


def measure(root: Path, role: str, n: int, conns: int, work: Path) -> tuple[float, int]:
    cluster = Cluster(work / "etcd", 1)
    servers: list[ServerProc] = []
    out = work / f"cg-{role}-{time.monotonic_ns()}.out"
    try:
        cluster.start()
        extra = ["--etcd-servers", ",".join(cluster.endpoints)]
        plain = ServerProc(work / "config", "etcd", extra=extra, root=root)
        plain.start()
        measured = ServerProc(work / "config", "etcd", extra=extra, root=root)
        _OUT.append(str(out))
        real, server_proc.subprocess.Popen = server_proc.subprocess.Popen, _CallgrindPopen  # type: ignore[misc]
        try:
            measured.start(timeout=600)
        finally:
            server_proc.subprocess.Popen = real  # type: ignore[misc]
        servers = [plain, measured]
        assert plain.target is not None and measured.target is not None
        writer = measured.target if role == "writer" else plain.target
        ensure_namespaces(writer, ["bench"])
        warm = [f"w-{i}" for i in range(200)]
        run_children([(load.create_burst, (writer, "configmaps", "bench", warm, 16, time.monotonic() + 0.2,
                                           time.monotonic() + 600))], 700)
        _wait_revision(measured.target, _revision(plain.target), 600)
        subprocess.run(["callgrind_control", "-i", "on", str(measured.pid)], capture_output=True, check=True)
        names = [f"x-{i:05d}" for i in range(n)]
        start = time.monotonic() + 0.2
        (o,) = run_children([(load.create_burst, (writer, "configmaps", "bench", names, conns, start,
                                                  start + 1200))], 1300)
        _wait_revision(measured.target, _revision(plain.target), 1200)
        subprocess.run(["callgrind_control", "-i", "off", str(measured.pid)], capture_output=True, check=True)
        subprocess.run(["callgrind_control", "-d", str(measured.pid)], capture_output=True, check=True)
    finally:
        for s in servers:
            s.stop()
        cluster.stop()
    total = max(callgrind.totals(str(out) + "*"), default=0)
    if not total:
        raise RuntimeError(f"no callgrind totals in {out}*")
    return total / max(1, o["done"]), o["done"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1500)
    ap.add_argument("--role", default="follower,writer")
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--keep", type=Path, default=None, help="copy the callgrind output files here")
    ap.add_argument("roots", nargs="*", type=Path, help="checkouts to measure (default: this one)")
    args = ap.parse_args(argv)
    for role in args.role.split(","):
        for root in args.roots or [ROOT]:
            work = Path(tempfile.mkdtemp(prefix="sn-etcd-instr-"))
            try:
                ir, done = measure(root.resolve(), role, args.n, args.conns, work)
            finally:
                if args.keep:
                    args.keep.mkdir(parents=True, exist_ok=True)
                    for f in work.glob("cg-*"):
                        shutil.copy(f, args.keep / f"{root.resolve().name}-{f.name}")
                shutil.rmtree(work, ignore_errors=True)
            print(f"{str(root.resolve()):24s} {role:9s} {ir / 1000:8.1f}k instructions per create ({done} creates)",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
