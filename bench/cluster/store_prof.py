"""CPU per create at the store level on etcd: EtcdStore.create vs a raw gRPC Txn/Put loop, one process.

    .venv/bin/python -m bench.cluster.store_prof [-n 3000] [--inflight 64] [--profile OUT.prof]

Wall rates on a shared 2-core machine mostly measure who got the CPU; this prints this process's
CPU time per operation (``time.process_time``: the gRPC poller thread included), which is what
the API server pays on top of HTTP and JSON. etcd runs as its own process (1 member).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from aetcd import rpc

from servicenet.store.etcd import EtcdStore
from servicenet.store.etcdlaunch import Cluster


def configmap(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"cm-{i:06d}", "namespace": "bench", "uid": f"00000000-0000-0000-0000-{i:012d}",
                         "creationTimestamp": "2026-12-03T23:00:00Z", "labels": {"app": "bench"}},
            "data": {"k": "v" * 300}}


_MAIN: list[float] = []  # main-thread CPU of each pool (the rest of the process CPU: gRPC's threads)


async def _pool(n: int, inflight: int, op: Any) -> tuple[float, float]:
    todo = iter(range(n))

    async def worker() -> None:
        for i in todo:
            await op(i)
    c0, m0, t0 = time.process_time(), time.thread_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(inflight)))
    _MAIN.append(time.thread_time() - m0)
    return time.process_time() - c0, time.perf_counter() - t0


async def store_creates(endpoint: str, n: int, inflight: int, prof: cProfile.Profile | None) -> dict[str, float]:
    st = EtcdStore([endpoint], prefix=f"/p{time.monotonic_ns()}", etcd_compact_interval=0)
    await st.open()
    try:
        await st.create("/registry/configmaps/bench/warm", configmap(-1))
        if prof:
            prof.enable()
        own0 = st.own_applied
        cpu, wall = await _pool(n, inflight, lambda i: st.create(f"/registry/configmaps/bench/cm-{i:06d}", configmap(i)))
        if prof:
            prof.disable()
        return {"rate": n / wall, "cpu_us": cpu / n * 1e6, "main_us": _MAIN[-1] / n * 1e6,
                "own_applied": (st.own_applied - own0) / n}
    finally:
        await st.close()


async def raw_txn(endpoint: str, n: int, inflight: int) -> dict[str, float]:
    """The same create transaction without the store: the gRPC floor."""
    async with grpc.aio.insecure_channel(endpoint.split("://", 1)[-1]) as ch:
        kv = rpc.KVStub(ch)
        run = f"/raw{time.monotonic_ns()}/".encode()
        value = b"x" * 400
        cmp = rpc.Compare

        async def op(i: int) -> None:
            k = run + b"%d" % i
            await kv.Txn(rpc.TxnRequest(
                compare=[cmp(key=k, target=cmp.MOD, result=cmp.EQUAL, mod_revision=0)],
                success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))],
                failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))]), timeout=30)
        cpu, wall = await _pool(n, inflight, op)
        return {"rate": n / wall, "cpu_us": cpu / n * 1e6, "main_us": _MAIN[-1] / n * 1e6}


def _run(coro: Any) -> Any:
    """On uvloop, as the API server runs."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--profile", default=None)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-store-prof-"))
    cluster = Cluster(work / "etcd", 1)
    prof = cProfile.Profile(time.thread_time) if args.profile else None  # main thread CPU
    try:
        cluster.start()
        ep = cluster.endpoints[0]
        for r in range(args.rounds):  # interleaved, so both see the same machine
            s = _run(store_creates(ep, args.n, args.inflight, prof if r == args.rounds - 1 else None))
            t = _run(raw_txn(ep, args.n, args.inflight))
            print(f"round {r}: EtcdStore.create {s['rate']:7,.0f}/s {s['cpu_us']:6.0f} us CPU/op "
                  f"(main thread {s['main_us']:.0f}; {s['own_applied']:.0%} applied from etcd's answer) | raw Txn {t['rate']:7,.0f}/s {t['cpu_us']:6.0f} us CPU/op "
                  f"(main thread {t['main_us']:.0f}) | store/raw CPU "
                  f"{s['cpu_us'] / t['cpu_us']:.2f}", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    if prof and args.profile:
        prof.dump_stats(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
