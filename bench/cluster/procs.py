"""A raw etcd put loop: the ceiling an API server on that etcd can approach. (API server processes
on any backend are :class:`bench.api.server_proc.ServerProc`.)"""

from __future__ import annotations

import asyncio
import time

import grpc
from aetcd import rpc

from servicenet.store._etcdaddr import leader_first


def raw_etcd_puts(endpoint: str, n: int, inflight: int = 64, size: int = 400, txn: bool = False) -> float:
    """Puts per second of ``n`` distinct keys with ``inflight`` concurrent requests (durable: each
    put is acknowledged after etcd's raft commit and fsync, as an API server's create). With
    ``txn``, each is the API server's create transaction (put if the key's mod_revision is 0)."""
    async def go() -> float:
        async with grpc.aio.insecure_channel(endpoint.split("://", 1)[-1]) as ch:
            kv = rpc.KVStub(ch)
            value = b"x" * size
            todo = iter(range(n))
            run = f"/bench-raw/{time.monotonic_ns()}/".encode()

            cmp = rpc.Compare

            async def worker() -> None:
                for i in todo:
                    k = run + b"%d" % i
                    if not txn:
                        await kv.Put(rpc.PutRequest(key=k, value=value), timeout=30)
                        continue
                    await kv.Txn(rpc.TxnRequest(
                        compare=[cmp(key=k, target=cmp.MOD, result=cmp.EQUAL, mod_revision=0)],
                        success=[rpc.RequestOp(request_put=rpc.PutRequest(key=k, value=value))],
                        failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=k))]), timeout=30)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(inflight)))
            return n / (time.perf_counter() - t0)
    return asyncio.run(go())


def leader_endpoint(endpoints: list[str]) -> str:
    """The client URL of the raft leader among ``endpoints`` (plain HTTP members), as the API
    servers' store connects to it first; the first endpoint if none says it leads."""
    async def status(ep: str) -> tuple[int, int] | None:
        async with grpc.aio.insecure_channel(ep.split("://", 1)[-1]) as ch:
            try:
                r = await rpc.MaintenanceStub(ch).Status(rpc.StatusRequest(), timeout=2)
            except grpc.aio.AioRpcError:
                return None
            return int(r.header.member_id), int(r.leader)

    async def go() -> list[tuple[int, int] | None]:
        return list(await asyncio.gather(*(status(e) for e in endpoints)))

    return leader_first(endpoints, asyncio.run(go()))[0]
