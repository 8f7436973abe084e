"""The one-write answer (servicenet.apiserver.answer) puts the same bytes on the wire as aiohttp's
general path for the same answer, and leaves every case it does not handle to that path.

A real aiohttp low-level server on loopback answers each request twice, once as ``web.Response``
and once as ``Answer``, with the same status, headers and body; raw sockets read both."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from servicenet.apiserver.answer import ONE_WRITE_LIMIT, Answer

CASES: dict[str, dict[str, Any]] = {
    "/ok": {"body": b'{"a":1}\n', "content_type": "application/json"},
    "/created": {"body": b"k8s\x00\x01\x02", "status": 201, "content_type": "application/vnd.kubernetes.protobuf",
                 "headers": {"Warning": '299 - "unknown field \\"x\\""', "Audit-Id": "abc"}},
    "/status": {"body": b'{"kind":"Status"}\n', "status": 404, "content_type": "application/json"},
    "/gone": {"body": b"", "status": 410, "content_type": "application/json"},
    "/empty204": {"body": b"", "status": 204},
    "/big": {"body": b"x" * (ONE_WRITE_LIMIT + 1), "content_type": "application/json"},
    "/own-length": {"body": b"abc", "headers": {"Connection": "keep-alive"}},
}
DATE = re.compile(rb"\r\nDate: [^\r]*\r\n")


@pytest.fixture
async def server() -> AsyncIterator[tuple[int, list[web.StreamResponse]]]:
    sent: list[web.StreamResponse] = []

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        kind, _, path = request.path.partition("/")[2].partition("/")
        cls = Answer if kind == "answer" else web.Response
        resp = cls(**CASES["/" + path])
        sent.append(resp)
        return resp

    runner = web.ServerRunner(web.Server(handle))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port, sent
    finally:
        await runner.cleanup()


async def exchange(port: int, request: bytes, expect: int = 1) -> bytes:
    """Send ``request`` (possibly several pipelined) and read until ``expect`` answers arrived or EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = b""
    try:
        while data.count(b"HTTP/1.") < expect or not _complete(data, expect) or b"Connection: close" in request:
            chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
            if not chunk:
                break
            data += chunk
    finally:
        writer.close()
    return DATE.sub(b"\r\nDate: -\r\n", data)


def _complete(data: bytes, expect: int) -> bool:
    """Whether ``data`` holds ``expect`` whole answers (by their Content-Length)."""
    pos = 0
    for _ in range(expect):
        head_end = data.find(b"\r\n\r\n", pos)
        if head_end < 0:
            return False
        m = re.search(rb"Content-Length: (\d+)", data[pos:head_end])
        pos = head_end + 4 + (int(m.group(1)) if m else 0)
        if pos > len(data):
            return False
    return True


@pytest.mark.parametrize("path", sorted(CASES))
async def test_same_bytes_as_aiohttp(server: tuple[int, list[web.StreamResponse]], path: str) -> None:
    port, _ = server
    general = await exchange(port, f"GET /plain{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    ours = await exchange(port, f"GET /answer{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert general.startswith(b"HTTP/1.1 ")
    assert ours == general


@pytest.mark.parametrize("extra", ["Connection: close\r\n", ""])
async def test_connection_close_and_keep_alive(server: tuple[int, list[web.StreamResponse]], extra: str) -> None:
    port, sent = server
    req = f"GET /answer/ok HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()
    general = await exchange(port, req.replace(b"/answer/", b"/plain/"))
    ours = await exchange(port, req)
    assert ours == general
    assert (b"Connection: close" in ours) == bool(extra)
    assert sent[-1].keep_alive is (not extra)


async def test_pipelined_answers_in_order(server: tuple[int, list[web.StreamResponse]]) -> None:
    port, _ = server
    req = b"".join(f"GET /answer/{p} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for p in ("ok", "status", "created"))
    data = await exchange(port, req, expect=3)
    assert [int(s) for s in re.findall(rb"HTTP/1.1 (\d+)", data)] == [200, 404, 201]


async def test_http10_and_head_take_the_general_path(server: tuple[int, list[web.StreamResponse]]) -> None:
    port, _ = server
    for req in (b"GET /{k}/ok HTTP/1.0\r\n\r\n", b"HEAD /{k}/ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
        general = await exchange(port, req.replace(b"{k}", b"plain"))
        ours = await exchange(port, req.replace(b"{k}", b"answer"))
        assert ours == general


async def test_header_with_line_break_is_refused_as_aiohttp_refuses_it(
        server: tuple[int, list[web.StreamResponse]]) -> None:
    port, _ = server
    CASES["/crlf"] = {"body": b"x", "headers": {"Warning": "a\r\nSet-Cookie: injected=1"}}
    try:
        general = await exchange(port, b"GET /plain/crlf HTTP/1.1\r\nHost: x\r\n\r\n")
        ours = await exchange(port, b"GET /answer/crlf HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        del CASES["/crlf"]
    assert b"injected" not in ours
    assert ours == general
