"""The REST client keeps idle connections as long as client-go's transport (90 s), not aiohttp's
default 15 s: a controller's writes are sparse, and each new connection is a TLS handshake."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp.connector
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from servicenet.client import ApiClient, rest


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, set[tuple[str, int]]]]:
    conns: set[tuple[str, int]] = set()  # the clients' (address, port)

    async def ns(request: web.Request) -> web.Response:
        conns.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        return web.json_response({"kind": "Namespace", "metadata": {"name": request.match_info["name"]}})

    app = web.Application()
    app.router.add_get("/api/v1/namespaces/{name}", ns)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    try:
        yield srv, conns
    finally:
        await srv.close()


async def _two_gets_apart(srv: TestServer, idle: float, monkeypatch: pytest.MonkeyPatch) -> None:
    c = ApiClient(str(srv.make_url("")))
    try:
        await c.get("v1", "namespaces", None, "a")
        # the connector judges an idle connection by time.monotonic() when it hands one out
        monkeypatch.setattr(aiohttp.connector, "monotonic", lambda: time.monotonic() + idle)
        await c.get("v1", "namespaces", None, "b")
    finally:
        await c.close()


async def test_a_connection_idle_for_a_minute_is_reused(server: tuple[TestServer, set[tuple[str, int]]],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    srv, conns = server
    await _two_gets_apart(srv, 60.0, monkeypatch)
    assert len(conns) == 1


async def test_a_connection_idle_past_the_limit_is_replaced(server: tuple[TestServer, set[tuple[str, int]]],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    srv, conns = server
    await _two_gets_apart(srv, rest.IDLE_CONN_TIMEOUT + 5, monkeypatch)
    assert len(conns) == 2
