"""httpx transports (sync and async) that send each request to the endpoint the balancer picks.

Use ``httpx.Client(transport=LBTransport(balancer), base_url="http://web-headless")``: the URL's
host stays in the ``Host`` header, the connection goes to the picked pod. Outcomes (5xx,
connection errors) and time to response headers feed the balancer.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx

from servicenet.lb.balancer import Balancer
from servicenet.lb.calls import RequestPolicy, call, call_sync, propagate
from servicenet.lb.policies import Backend

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def _target(request: httpx.Request, b: Backend, limit: float | None) -> httpx.Request:
    url = request.url.copy_with(host=b.ep.address, port=b.ep.port)
    headers = dict(request.headers)
    propagate(headers, limit)
    ext = dict(request.extensions)
    if limit is not None:
        ext["timeout"] = {"connect": limit, "read": limit, "write": limit, "pool": limit}
    return httpx.Request(request.method, url, headers=headers, content=request.content, extensions=ext)


def _policy(base: RequestPolicy, request: httpx.Request) -> RequestPolicy:
    idem = base.idempotent or request.method in IDEMPOTENT
    return dataclasses.replace(base, idempotent=idem, hedge_after=base.hedge_after if idem else None,
                               failed=lambda r: r.status_code >= 500,
                               retryable=lambda exc: isinstance(exc, httpx.ConnectError))


class LBTransport(httpx.BaseTransport):
    def __init__(self, balancer: Balancer, policy: RequestPolicy | None = None,
                 key: Any = None, **transport_kw: Any) -> None:
        self.balancer = balancer
        self.policy = policy or RequestPolicy()
        self.key = key  # a function of the request, for ring hash / Maglev affinity
        self.inner = httpx.HTTPTransport(**transport_kw)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()

        def attempt(b: Backend, limit: float | None) -> httpx.Response:
            resp = self.inner.handle_request(_target(request, b, limit))
            resp.read()
            return resp

        key = self.key(request) if callable(self.key) else None
        return call_sync(self.balancer, attempt, key=key, policy=_policy(self.policy, request))

    def close(self) -> None:
        self.inner.close()


class AsyncLBTransport(httpx.AsyncBaseTransport):
    def __init__(self, balancer: Balancer, policy: RequestPolicy | None = None,
                 key: Any = None, **transport_kw: Any) -> None:
        self.balancer = balancer
        self.policy = policy or RequestPolicy()
        self.key = key
        self.inner = httpx.AsyncHTTPTransport(**transport_kw)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()

        async def attempt(b: Backend, limit: float | None) -> httpx.Response:
            resp = await self.inner.handle_async_request(_target(request, b, limit))
            await resp.aread()
            return resp

        key = self.key(request) if callable(self.key) else None
        return await call(self.balancer, attempt, key=key, policy=_policy(self.policy, request))

    async def aclose(self) -> None:
        await self.inner.aclose()
