"""Raw TCP: a connected socket (or asyncio streams) to the endpoint the balancer picks."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from servicenet.lb.balancer import Balancer
from servicenet.lb.calls import RequestPolicy, call, call_sync
from servicenet.lb.policies import Backend


def _policy(timeout: float | None, retries: int) -> RequestPolicy:
    # a refused or reset connect never reached the server: always safe to try another endpoint
    return RequestPolicy(timeout=timeout, retries=retries, retryable=lambda exc: isinstance(exc, OSError))


def connect(balancer: Balancer, *, timeout: float | None = 5.0, key: Any = None, retries: int = 2,
            policy: RequestPolicy | None = None) -> socket.socket:
    """A socket connected to the chosen pod; the connect time is the latency sample."""

    def attempt(b: Backend, limit: float | None) -> socket.socket:
        return socket.create_connection((b.ep.address, b.ep.port), timeout=limit)

    return call_sync(balancer, attempt, key=key, policy=policy or _policy(timeout, retries))


async def open_connection(balancer: Balancer, *, timeout: float | None = 5.0, key: Any = None,
                          retries: int = 2, policy: RequestPolicy | None = None,
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    async def attempt(b: Backend, limit: float | None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(b.ep.address, b.ep.port)

    return await call(balancer, attempt, key=key, policy=policy or _policy(timeout, retries))


def timed_connect(address: tuple[str, int], timeout: float) -> float:
    """Connect and close, returning the seconds it took (the active health check's probe)."""
    t0 = time.perf_counter()
    with socket.create_connection(address, timeout=timeout):
        return time.perf_counter() - t0
