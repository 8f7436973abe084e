"""An aiohttp client wrapper: ``await lb.request("GET", "/path")`` goes to the picked pod."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp

from servicenet.lb.balancer import Balancer
from servicenet.lb.calls import RequestPolicy, call, propagate
from servicenet.lb.model import join_hostport
from servicenet.lb.policies import Backend

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class Response:
    """The answer with its body read (the connection is back in the pool)."""

    def __init__(self, status: int, headers: Any, body: bytes, endpoint: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.endpoint = endpoint

    def text(self) -> str:
        return self.body.decode(errors="replace")


class LBSession:
    def __init__(self, balancer: Balancer, host: str, *, scheme: str = "http",
                 policy: RequestPolicy | None = None, session: aiohttp.ClientSession | None = None) -> None:
        self.balancer = balancer
        self.host = host  # the Host header (the Service name)
        self.scheme = scheme
        self.policy = policy or RequestPolicy()
        self._session = session
        self._own = session is None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        return self._session

    async def request(self, method: str, path: str, *, key: Any = None, **kw: Any) -> Response:
        base = self.policy
        policy = dataclasses.replace(base, idempotent=base.idempotent or method.upper() in IDEMPOTENT,
                                     failed=lambda r: r.status >= 500,
                                     retryable=lambda exc: isinstance(exc, aiohttp.ClientConnectorError))
        user_headers = dict(kw.pop("headers", None) or {})

        async def attempt(b: Backend, limit: float | None) -> Response:
            headers = dict(user_headers)
            headers.setdefault("Host", self.host)
            propagate(headers, limit)
            url = f"{self.scheme}://{join_hostport(b.ep.address, b.ep.port)}{path}"
            async with self.session.request(method, url, headers=headers, **kw) as r:
                return Response(r.status, r.headers, await r.read(), b.key)

        return await call(self.balancer, attempt, key=key, policy=policy)

    async def get(self, path: str, **kw: Any) -> Response:
        return await self.request("GET", path, **kw)

    async def close(self) -> None:
        if self._own and self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> LBSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
