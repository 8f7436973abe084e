"""The node relay's health checks: candidates failing ``/readyz`` are tried last and their
connections closed (what keeps a node's heartbeats going when its API server is cut off from etcd).

The pure :class:`Health` state, then a real relay (in this namespace) in front of two HTTPS servers
on loopback whose ``/readyz`` the test turns off and on.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from servicenet.apiserver import certs
from servicenet.cluster import up_cluster
from servicenet.cluster.processes import Processes
from servicenet.cluster.relay import Health, Relay

A, B = ("127.0.0.1", 1), ("127.0.0.1", 2)


def test_health_falls_and_rises_by_counts() -> None:
    h = Health(rise=2, fall=2)
    assert h.order([A, B]) == [A, B]  # every candidate starts up
    assert h.observe(A, False) is None  # one failed check is not enough
    assert h.observe(A, True) is None  # and a pass resets the streak
    assert h.observe(A, False) is None
    assert h.observe(A, False) is False  # two in a row: down
    assert h.order([A, B]) == [B, A]
    assert h.observe(A, False) is None  # already down
    assert h.observe(A, True) is None
    assert h.observe(A, True) is True  # two passes in a row: up again
    assert h.order([A, B]) == [A, B]


def test_order_keeps_preference_within_each_group() -> None:
    h = Health(rise=1, fall=1)
    c = ("127.0.0.1", 3)
    h.observe(A, False)
    h.observe(c, False)
    assert h.order([A, B, c]) == [B, A, c]
    h.observe(B, False)
    assert h.order([A, B, c]) == [A, B, c]  # all down: still tried, in order


@dataclass
class Server:
    name: str
    addr: tuple[str, int]
    ready: bool = True


@pytest.fixture
async def servers(tmp_path: Path) -> AsyncIterator[list[Server]]:
    creds = certs.ensure(tmp_path / "pki", ["127.0.0.1"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(creds.server_cert), str(creds.server_key))
    out, runners = [], []
    for name in ("one", "two"):
        s = Server(name, ("127.0.0.1", 0))

        async def readyz(_: web.Request, s: Server = s) -> web.Response:
            return web.Response(status=200 if s.ready else 500, text="ok" if s.ready else "etcd failed")

        async def who(_: web.Request, s: Server = s) -> web.Response:
            return web.Response(text=s.name)

        app = web.Application()
        app.router.add_get("/readyz", readyz)
        app.router.add_get("/who", who)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        s.addr = runner.addresses[0][:2]
        out.append(s)
        runners.append(runner)
    yield out
    for r in runners:
        await r.cleanup()


async def _open(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return await asyncio.open_connection("127.0.0.1", port, ssl=ctx)


async def _who(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> str:
    """One keep-alive request on an open connection: the name of the server that answered."""
    w.write(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    return (await asyncio.wait_for(r.readexactly(length), 5)).decode()


async def _wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out: {what}")
        await asyncio.sleep(0.02)


async def test_unready_candidate_is_skipped_and_its_connections_closed(servers: list[Server]) -> None:
    one, two = servers
    relay = Relay(None, [[one.addr, two.addr]], check_interval=0.1)
    (_, port), = await relay.start()
    try:
        r, w = await _open(port)
        assert await _who(r, w) == "one"  # the preferred candidate while it is ready
        assert await _who(r, w) == "one"

        one.ready = False
        await _wait(lambda: relay.health.up.get(one.addr) is False, 5, "one marked down")
        # its open connection is closed (the client reconnects) ...
        assert await asyncio.wait_for(r.read(), 5) == b""
        w.close()
        # ... and new connections go to the ready one, though one still accepts connections
        for _ in range(3):
            r, w = await _open(port)
            assert await _who(r, w) == "two"
            w.close()

        one.ready = True
        await _wait(lambda: relay.health.up.get(one.addr) is True, 5, "one marked up again")
        r, w = await _open(port)
        assert await _who(r, w) == "one"
        # a connection through the other candidate is left alone when one comes back
        w.close()
    finally:
        await relay.stop()


async def test_without_checks_the_first_that_accepts_is_used(servers: list[Server]) -> None:
    one, two = servers
    one.ready = False
    relay = Relay(None, [[one.addr, two.addr]])
    (_, port), = await relay.start()
    try:
        r, w = await _open(port)
        assert await _who(r, w) == "one"
        w.close()
    finally:
        await relay.stop()


# A stand-in for the relay process: binds the --listen address it is given (the last argument), says
# so as the relay does, and waits; a taken port makes it exit with Python's EADDRINUSE message.
_FAKE_RELAY = (
    "import socket, sys, time\n"
    "host, port = sys.argv[-1].rsplit(':', 1)\n"
    "s = socket.socket(); s.bind((host, int(port))); s.listen()\n"
    "print(f'relay {sys.argv[-1]} -> test', flush=True)\n"
    "time.sleep(120)\n"
)


def _topo(tmp_path: Path) -> SimpleNamespace:
    """The part of a Topology its port-choosing spawns use."""
    topo = SimpleNamespace(procs=Processes(tmp_path / "logs"))
    topo._spawn_on_free_port = functools.partial(up_cluster.Topology._spawn_on_free_port, topo)  # noqa: SLF001
    return topo


async def test_a_relay_port_taken_before_the_relay_binds_it_is_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Topology picks a free port, then the relay binds it: another process may take it in
    between (parallel test runs). The relay exits with EADDRINUSE and another port is tried; the
    port returned is the one the relay said it listens on."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    busy = squatter.getsockname()[1]
    real = up_cluster.free_port
    handed = iter([busy, busy])  # the first two choices are taken; the third is really free
    monkeypatch.setattr(up_cluster, "free_port", lambda: next(handed, None) or real())
    topo = _topo(tmp_path)
    try:
        port = await up_cluster.Topology._spawn_relay(  # noqa: SLF001
            topo, "node-1/apiserver-relay", [sys.executable, "-c", _FAKE_RELAY, "--netns", "x"])  # type: ignore[arg-type]
        assert port != busy
        _, w = await asyncio.open_connection("127.0.0.1", port)
        w.close()
        log = (tmp_path / "logs" / "node-1-apiserver-relay.log").read_text()
        assert log.lower().count("address already in use") == 2
    finally:
        squatter.close()
        await topo.procs.stop(["node-1/apiserver-relay"])


async def test_a_relay_that_fails_otherwise_is_not_retried(tmp_path: Path) -> None:
    topo = _topo(tmp_path)
    with pytest.raises(RuntimeError, match="exited before listening"):
        await up_cluster.Topology._spawn_relay(  # noqa: SLF001
            topo, "node-1/apiserver-relay", [sys.executable, "-c", "raise SystemExit('no route')"])  # type: ignore[arg-type]
    assert (tmp_path / "logs" / "node-1-apiserver-relay.log").read_text().count("no route") == 1


_FAKE_APISERVER = (
    "import socket, sys, time\n"
    "port = int(sys.argv[-1])\n"
    "s = socket.socket(); s.bind(('127.0.0.1', port)); s.listen()\n"
    "print(f'servicenet apiserver listening on https://127.0.0.1:{port} and https://10.0.0.1:6443 (netns x)',"
    " flush=True)\n"
    "time.sleep(120)\n"
)


async def test_an_api_server_port_taken_before_it_binds_is_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same race for the API servers' loopback ports (``--api-listen 127.0.0.1:PORT``): the
    port is the one the server's own line names, after a port someone else took."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    busy = squatter.getsockname()[1]
    real = up_cluster.free_port
    handed = iter([busy])
    monkeypatch.setattr(up_cluster, "free_port", lambda: next(handed, None) or real())
    topo = _topo(tmp_path)
    try:
        port = await topo._spawn_on_free_port(  # noqa: SLF001
            "apiserver-1", lambda p: [sys.executable, "-c", _FAKE_APISERVER, str(p)],
            lambda p: f"listening on https://127.0.0.1:{p} ")
        assert port != busy
        log = (tmp_path / "logs" / "apiserver-1.log").read_text()
        assert log.lower().count("address already in use") == 1
        assert f"listening on https://127.0.0.1:{port} " in log
    finally:
        squatter.close()
        await topo.procs.stop(["apiserver-1"])
