"""A ``requests`` transport adapter: mount it on a Session for ``http://SERVICE``."""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import requests.adapters

from servicenet.lb.balancer import Balancer
from servicenet.lb.calls import RequestPolicy, call_sync, propagate
from servicenet.lb.model import join_hostport
from servicenet.lb.policies import Backend

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class LBAdapter(requests.adapters.HTTPAdapter):
    """``session.mount("http://web-headless", LBAdapter(balancer))``."""

    def __init__(self, balancer: Balancer, policy: RequestPolicy | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.balancer = balancer
        self.policy = policy or RequestPolicy()

    def send(self, request: requests.PreparedRequest, **kw: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(request.url or "")
        host = parts.netloc
        base = self.policy
        timeout = kw.get("timeout")
        policy = dataclasses.replace(
            base, idempotent=base.idempotent or (request.method or "GET") in IDEMPOTENT,
            failed=lambda r: r.status_code >= 500,
            retryable=lambda exc: isinstance(exc, requests.exceptions.ConnectionError),
            timeout=float(timeout) if base.timeout is None and isinstance(timeout, int | float) else base.timeout)

        def attempt(b: Backend, limit: float | None) -> requests.Response:
            r = request.copy()
            r.url = urlunsplit((parts.scheme, join_hostport(b.ep.address, b.ep.port), parts.path,
                                parts.query, parts.fragment))
            r.headers["Host"] = host
            propagate(r.headers, limit)  # type: ignore[arg-type]
            return super(LBAdapter, self).send(r, **{**kw, "timeout": limit})

        return call_sync(self.balancer, attempt, policy=policy)
