"""What this machine's etcd can do at all: raw create loops, with the CPU each side spends per write.

    .venv/bin/python -m bench.cluster.ceiling [-n 20000] [--inflight 64] [--watchers 2] [--etcdctl l]

One fresh one-member etcd (as ``bench.cluster.run``). Printed per loop: wall writes/s with the load
average, etcd's CPU per write and the client's CPU per write (both from /proc, so load-independent),
and what the two add up to: on a 2-core machine, 2 / (etcd + client CPU) is the rate the cores
allow when nothing else runs.

- ``python txn``: the API server's create transaction (``If(mod_revision == 0) Then(Put) Else(Range)``,
  hand-encoded as the store sends it) from one grpc.aio client, ``--inflight`` in flight;
- ``python txn + N watchers``: the same with ``--watchers`` prefix watches (``prev_kv``) open on
  the keys in the same client process, as ``N`` API servers each hold one; their reading is
  counted in the client's CPU. ``, N channels``: each watcher on its own gRPC connection and the
  writes spread over them, as ``N`` API servers send them; ``no prev_kv``: watches without it;
- ``etcdctl check perf --load L`` (etcd's Go client, Debian's ``etcd-client``; 60 s of puts at
  the workload's fixed rate and client count): the Go client's ceiling, with etcdctl's own CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from aetcd import rpc

from bench.api.server_proc import cpu_seconds
from servicenet.store import _etcdwire as wire
from servicenet.store.etcd import prefix_end
from servicenet.store.etcdlaunch import Cluster


def _self_cpu() -> float:
    t = os.times()
    return t.user + t.system


async def _txn_loop(endpoint: str, n: int, inflight: int, watchers: int, size: int,
                    prev_kv: bool, channels: int) -> dict[str, float]:
    target = endpoint.split("://", 1)[-1]
    run = f"/ceiling/{time.monotonic_ns()}/".encode()
    value = b"x" * size
    seen = [0] * watchers
    msgs = [0] * watchers
    chans = [grpc.aio.insecure_channel(target) for _ in range(channels)]
    try:
        txns = [ch.unary_unary("/etcdserverpb.KV/Txn", request_serializer=None,
                               response_deserializer=rpc.TxnResponse.FromString) for ch in chans]
        calls = []
        for k in range(watchers):
            call = rpc.WatchStub(chans[k % channels]).Watch()
            await call.write(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
                key=run, range_end=prefix_end(run), prev_kv=prev_kv)))
            await call.read()  # created
            calls.append(call)

        async def follow(k: int) -> None:
            while seen[k] < n:
                resp = await calls[k].read()
                if resp is grpc.aio.EOF:
                    return
                seen[k] += len(resp.events)
                msgs[k] += 1

        readers = [asyncio.create_task(follow(k)) for k in range(watchers)]
        todo = iter(range(n))

        async def worker(txn: Any) -> None:
            for i in todo:
                k = run + b"%d" % i
                await txn(wire.txn_if_mod(k, 0, wire.put_op(k, value)), timeout=30)

        c0, t0 = _self_cpu(), time.perf_counter()
        await asyncio.gather(*(worker(txns[j % channels]) for j in range(inflight)))
        await asyncio.wait_for(asyncio.gather(*readers), 30)
        wall, cpu = time.perf_counter() - t0, _self_cpu() - c0
        for call in calls:
            call.cancel()
    finally:
        for ch in chans:
            await ch.close()
    return {"rate": n / wall, "client_cpu": cpu, "wall": wall,
            "events_per_msg": sum(seen) / max(1, sum(msgs)) if watchers else 0.0}


def python_txn(endpoint: str, etcd_pid: int, n: int, inflight: int, watchers: int, size: int,
               prev_kv: bool = True, channels: int = 1) -> dict[str, float]:
    try:
        import uvloop
        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    e0, l0 = cpu_seconds(etcd_pid), os.getloadavg()[0]
    out = runner(_txn_loop(endpoint, n, inflight, watchers, size, prev_kv, channels))
    out["etcd_cpu"] = cpu_seconds(etcd_pid) - e0
    out["load"] = (l0 + os.getloadavg()[0]) / 2
    out["n"] = n
    return out


def etcdctl_perf(endpoint: str, etcd_pid: int, load: str) -> dict[str, Any]:
    exe = shutil.which("etcdctl")
    if exe is None:
        raise RuntimeError("etcdctl not found (Debian: etcd-client)")
    e0, l0 = cpu_seconds(etcd_pid), os.getloadavg()[0]
    t0 = time.perf_counter()
    p = subprocess.run([exe, "--endpoints", endpoint, "check", "perf", "--load", load, "--auto-compact"],
                       capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, timeout=300)
    wall = time.perf_counter() - t0
    # children's CPU: etcdctl is our only child process that ended in this call
    text = p.stdout + p.stderr
    # "PASS: Throughput is 150 writes/s" or "FAIL: Throughput too low: 3680 writes/s"
    m = re.search(r"Throughput (?:is|too low:) (\d+) writes/s", text)
    writes = int(m.group(1)) * 60 if m else 0
    verdict = [ln.strip() for ln in text.splitlines() if ln.startswith(("PASS", "FAIL"))]
    return {"text": "\n".join(verdict), "etcd_cpu": cpu_seconds(etcd_pid) - e0, "wall": wall, "writes": writes,
            "load": (l0 + os.getloadavg()[0]) / 2}


def _row(label: str, o: dict[str, float]) -> str:
    n = o["n"]
    e, c = o["etcd_cpu"] / n * 1e6, o["client_cpu"] / n * 1e6
    return (f"{label:52s}{o['rate']:9,.0f}/s  load {o['load']:4.1f}  etcd {e:4.0f} us  client {c:4.0f} us  "
            f"sum {e + c:5.0f} us = {2e6 / (e + c):6,.0f}/s on 2 cores"
            + (f"  {o['events_per_msg']:.2f} events per watch message" if o.get("events_per_msg") else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--watchers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="rounds of the watched loops")
    ap.add_argument("--size", type=int, default=400, help="value bytes (a bench ConfigMap is ~400)")
    ap.add_argument("--etcdctl", default="", help="also run `etcdctl check perf --load L` (s, m, l, xl; 60 s)")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    cluster = Cluster(work / "etcd", 1)
    try:
        cluster.start()
        ep = cluster.endpoints[0]
        proc = cluster.members[0].proc
        assert proc is not None
        print(_row("python txn", python_txn(ep, proc.pid, args.n, args.inflight, 0, args.size)), flush=True)
        w = args.watchers
        for _ in range(args.rounds if w else 0):
            for label, prev_kv, chans in ((f"+ {w} watchers", True, 1), (f"+ {w} watchers, {w} channels", True, w),
                                          (f"+ {w} watchers, {w} channels, no prev_kv", False, w)):
                o = python_txn(ep, proc.pid, args.n, args.inflight, w, args.size, prev_kv, chans)
                print(_row("python txn " + label, o), flush=True)
        if args.etcdctl:
            c0 = os.times()
            o = etcdctl_perf(ep, proc.pid, args.etcdctl)
            c1 = os.times()
            child = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)
            print(o["text"])
            w = max(1, o["writes"])
            e, c = o["etcd_cpu"] / w * 1e6, child / w * 1e6
            print(f"{'etcdctl check perf ' + args.etcdctl:52s}{w / 60:9,.0f}/s  load {o['load']:4.1f}  etcd {e:4.0f} us  "
                  f"client {c:4.0f} us  sum {e + c:5.0f} us = {2e6 / (e + c):6,.0f}/s on 2 cores", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
