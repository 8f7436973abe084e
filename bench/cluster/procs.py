"""A raw etcd put loop: the ceiling an API server on that etcd can approach. (API server processes
on any backend are :class:`bench.api.server_proc.ServerProc`.)"""

from __future__ import annotations

import asyncio
import time

import grpc
from aetcd import rpc

from servicenet.store._etcdconn import Connection


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
    """The client URL of the raft leader among ``endpoints`` (plain HTTP members), found as the API
    servers' store finds it (:meth:`Connection.leader_first`); the first endpoint if none says it leads."""
    conn = Connection(endpoints, None, 2.0)
    asyncio.run(conn.leader_first(timeout=2.0))
    return conn.endpoints[0]
