"""Take over an aiohttp connection after answering ``101 Switching Protocols`` ourselves.

Used by the node agent (SPDY port-forward) and by the API server (splicing a SPDY upgrade through
to the node agent). I/O shell only.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

__all__ = ["RawChannel", "hijack"]


class _Takeover(asyncio.Protocol):
    """Receives a hijacked connection's bytes; hands the loss back to aiohttp's protocol."""

    def __init__(self, orig: asyncio.BaseProtocol, reader: asyncio.StreamReader) -> None:
        self.orig, self.reader = orig, reader
        self.writable = asyncio.Event()
        self.writable.set()
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.reader.feed_data(data)

    def eof_received(self) -> bool:
        self.reader.feed_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.reader.at_eof():
            self.reader.feed_eof()
        self.writable.set()
        with contextlib.suppress(Exception):
            self.orig.connection_lost(exc)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


class RawChannel:
    """A connection taken over from aiohttp after answering ``101 Switching Protocols`` ourselves."""

    def __init__(self, transport: asyncio.Transport, proto: _Takeover) -> None:
        self.transport, self._proto = transport, proto

    async def read(self) -> bytes:
        return await self._proto.reader.read(65536)

    async def write(self, data: bytes) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("connection closed")
        self.transport.write(data)
        await self._proto.writable.wait()

    async def close(self) -> None:
        self.transport.close()


def hijack(request: web.Request, head: bytes) -> RawChannel:
    """Detach ``request``'s connection from aiohttp, write ``head`` (the 101) and return it raw.

    The protocol is swapped before the response goes out, so no byte the client sends after
    the 101 can reach aiohttp's HTTP parser.  The handler should close the channel and then
    return any response (aiohttp's attempt to send it fails quietly on the closed transport)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("client connection is gone")
    assert isinstance(transport, asyncio.Transport)
    reader = asyncio.StreamReader(limit=1 << 16)
    reader.set_transport(transport)
    proto = _Takeover(transport.get_protocol(), reader)
    transport.set_protocol(proto)
    with contextlib.suppress(Exception):
        transport.resume_reading()
    transport.write(head)
    request.protocol.keep_alive(False)
    return RawChannel(transport, proto)
