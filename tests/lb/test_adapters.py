"""The thin adapters against real loopback HTTP servers, a real gRPC server and TCP sockets."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from concurrent import futures

import grpc
import httpx
import pytest
import requests

from servicenet.lb import Balancer, RequestPolicy, RetryBudget, call, call_sync, deadline, remaining
from servicenet.lb.adapters.aiohttp import LBSession
from servicenet.lb.adapters.grpc import ChannelPool
from servicenet.lb.adapters.httpx import AsyncLBTransport, LBTransport
from servicenet.lb.adapters.requests import LBAdapter
from servicenet.lb.adapters.tcp import connect, open_connection
from servicenet.lb.calls import DEADLINE_HEADER, DeadlineExceeded
from servicenet.lb.model import Endpoint

from .backends import backends


def _lb(bs, policy: str = "round_robin") -> Balancer:  # type: ignore[no-untyped-def]
    b = Balancer(policy)
    b.update([x.endpoint for x in bs])
    return b


def test_httpx_sync_spreads_and_retries_around_a_failing_pod() -> None:
    with backends(("a", 200, 0), ("b", 200, 0), ("c", 503, 0)) as bs:
        lb = _lb(bs)
        with httpx.Client(transport=LBTransport(lb), base_url="http://web-headless") as cl:
            got = Counter(cl.get("/").text for _ in range(60))
        assert set(got) == {"a", "b"} and min(got.values()) >= 25  # every 503 was retried elsewhere
        assert bs[2].hits > 0 and all(h["host"] == "web-headless" for h in bs[0].headers)
        assert next(m for m in lb.members if m.ep.port == bs[2].port).failures > 0


def test_httpx_post_is_not_retried_after_a_503() -> None:
    with backends(("c", 503, 0)) as bs:
        lb = _lb(bs)
        with httpx.Client(transport=LBTransport(lb)) as cl:
            assert cl.post("http://svc/").status_code == 503
        assert bs[0].hits == 1


async def test_httpx_async_and_deadline_header() -> None:
    with backends(("a", 200, 0), ("b", 200, 0)) as bs:
        lb = _lb(bs)
        async with httpx.AsyncClient(transport=AsyncLBTransport(lb)) as cl:
            with deadline(5.0):
                rs = [await cl.get("http://svc/") for _ in range(10)]
        assert Counter(r.text for r in rs) == {"a": 5, "b": 5}
        ms = int(bs[0].headers[0][DEADLINE_HEADER])
        assert 4000 < ms <= 5000


def test_requests_adapter() -> None:
    with backends(("a", 200, 0), ("b", 200, 0), ("c", 503, 0)) as bs:
        lb = _lb(bs)
        s = requests.Session()
        s.mount("http://web-headless", LBAdapter(lb))
        got = Counter(s.get("http://web-headless/x").text for _ in range(30))
        assert set(got) == {"a", "b"} and sum(got.values()) == 30
        assert bs[0].headers[0]["host"] == "web-headless"


async def test_aiohttp_wrapper() -> None:
    with backends(("a", 200, 0), ("b", 200, 0), ("c", 200, 0)) as bs:
        async with LBSession(_lb(bs), "web-headless") as s:
            got = Counter([(await s.get("/")).text() for _ in range(30)])
        assert got == {"a": 10, "b": 10, "c": 10}


async def test_hedging_answers_from_the_fast_pod() -> None:
    with backends(("slow", 200, 1.0), ("fast", 200, 0)) as bs:
        lb = Balancer("round_robin")
        lb.update([bs[0].endpoint])
        policy = RequestPolicy(hedge_after=0.05, idempotent=True)
        async with LBSession(lb, "svc", policy=policy) as s:
            lb.update([bs[0].endpoint, bs[1].endpoint])
            lb.policy._next = 0  # the first pick goes to the slow pod
            t0 = time.monotonic()
            r = await s.get("/")
            took = time.monotonic() - t0
        assert r.text() == "fast" and took < 0.6


async def test_deadline_is_enforced_and_shrinks_for_nested_calls() -> None:
    lb = Balancer("round_robin")
    lb.update([Endpoint("127.0.0.1", 9)])
    seen: list[float | None] = []

    async def attempt(b, limit):  # type: ignore[no-untyped-def]
        seen.append(limit)
        await asyncio.sleep(10)

    with deadline(0.2):
        with deadline(5.0):  # an inner, longer deadline cannot extend the outer one
            assert remaining() is not None and remaining() <= 0.2  # type: ignore[operator]
            with pytest.raises(TimeoutError):
                await call(lb, attempt, policy=RequestPolicy(retries=0))
    assert seen[0] is not None and seen[0] <= 0.2
    with deadline(0.0), pytest.raises(DeadlineExceeded):
        call_sync(lb, lambda b, limit: None)


def test_retry_budget_caps_retries() -> None:
    lb = Balancer("round_robin")
    lb.update([Endpoint("127.0.0.1", 9), Endpoint("127.0.0.2", 9)])
    budget = RetryBudget(percent=0.1, min_per_sec=0)
    policy = RequestPolicy(retries=5, budget=budget, failed=lambda r: r == "bad", idempotent=True)
    calls = 0

    def attempt(b, limit):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        return "bad"

    for _ in range(100):
        call_sync(lb, attempt, policy=policy)
    assert calls == 110 and budget.retries == 10  # 10 % of 100 requests


def test_tcp_connect_skips_a_refused_pod() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()
    lb = Balancer("round_robin")
    lb.update([Endpoint("127.0.0.1", dead_port), Endpoint("127.0.0.1", srv.getsockname()[1])])
    try:
        for _ in range(4):
            s = connect(lb, timeout=2)
            assert s.getpeername()[1] == srv.getsockname()[1]
            s.close()
    finally:
        srv.close()


async def test_tcp_open_connection() -> None:
    got = []

    async def handle(r, w):  # type: ignore[no-untyped-def]
        got.append(1)
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    lb = Balancer("round_robin")
    lb.update([Endpoint("127.0.0.1", server.sockets[0].getsockname()[1])])
    _, w = await open_connection(lb)
    w.close()
    server.close()
    await server.wait_closed()


def test_grpc_pool_picks_per_call() -> None:
    servers, ports = [], []
    for name in ("g0", "g1", "g2"):
        srv = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.method_handlers_generic_handler("echo.Echo", {
            "Who": grpc.unary_unary_rpc_method_handler(lambda req, ctx, n=name: n.encode() + b":" + req)})
        srv.add_generic_rpc_handlers((handler,))
        ports.append(srv.add_insecure_port("127.0.0.1:0"))
        srv.start()
        servers.append(srv)
    try:
        lb = Balancer("round_robin")
        lb.update([Endpoint("127.0.0.1", p) for p in ports])
        pool = ChannelPool(lb)
        who = pool.unary_unary("/echo.Echo/Who")
        got = Counter(who(b"hi", timeout=5).split(b":")[0] for _ in range(30))
        assert got == {b"g0": 10, b"g1": 10, b"g2": 10}
        servers[1].stop(None)
        got = Counter(who(b"hi", timeout=5).split(b":")[0] for _ in range(30))  # UNAVAILABLE is retried
        assert set(got) == {b"g0", b"g2"} and sum(got.values()) == 30
        pool.close()
    finally:
        for s in servers:
            s.stop(None)


async def test_aiohttp_retry_keeps_the_callers_headers() -> None:
    with backends(("bad", 503, 0), ("good", 200, 0)) as bs:
        lb = _lb(bs)
        async with LBSession(lb, "svc") as s:
            for _ in range(4):
                r = await s.get("/", headers={"x-trace": "t1"})
                assert r.text() == "good"
        assert all(h.get("x-trace") == "t1" for b in bs for h in b.headers)
        assert bs[0].hits >= 1


def test_balancer_wait_blocks_until_an_update() -> None:
    lb = Balancer()
    threading.Timer(0.05, lambda: lb.update([Endpoint("127.0.0.1", 1)])).start()
    assert lb.wait(lambda b: len(b.eligible) == 1, 5)
    assert not lb.wait(lambda b: len(b.eligible) == 2, 0.05)
