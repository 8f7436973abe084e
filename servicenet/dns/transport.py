"""asyncio UDP and TCP protocols that feed a ``Responder`` (the per-packet I/O shell)."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from servicenet.common.netns import socket_in_netns

from .responder import Forward, Responder

SAMPLE_MASK = 63  # time one UDP query in 64 for the latency histogram
ForwardFn = Callable[[Forward], "asyncio.Future[bytes | None] | Any"]


class Latency:
    """Plain-Python latency buckets (seconds); exported by the metrics collector."""

    BOUNDS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, v: float) -> None:
        i = 0
        for b in self.BOUNDS:
            if v <= b:
                break
            i += 1
        self.counts[i] += 1
        self.total += v
        self.n += 1


class UdpServer(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder, forward: ForwardFn, latency: Latency) -> None:
        self.responder = responder
        self.forward = forward
        self.latency = latency
        self.transport: asyncio.DatagramTransport | None = None
        self._n = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send = transport.sendto  # type: ignore[attr-defined]
        self._handle = self.responder.handle_udp

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._n += 1
        if self._n & SAMPLE_MASK:
            out = self._handle(data)
            if out.__class__ is bytes:
                self._send(out, addr)
                return
        else:
            t0 = time.perf_counter()
            out = self._handle(data)
            if out.__class__ is bytes:
                self._send(out, addr)
                self.latency.observe(time.perf_counter() - t0)
                return
        if out is not None:
            asyncio.ensure_future(self._forwarded(out, addr))  # type: ignore[arg-type]

    async def _forwarded(self, f: Forward, addr: Any) -> None:
        out = await self.forward(f)
        if out is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP errors: nothing to do
        pass


class TcpServer(asyncio.Protocol):
    """RFC 7766: length-prefixed messages, pipelined; answers may complete out of order."""

    MAX_BUFFER = 1 << 17

    def __init__(self, responder: Responder, forward: ForwardFn, idle_timeout: float = 10.0) -> None:
        self.responder = responder
        self.forward = forward
        self.idle_timeout = idle_timeout
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._pending = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self.idle_timeout, self._idle)

    def _idle(self) -> None:
        if self._pending == 0 and self.transport is not None:
            self.transport.close()
        else:
            self._arm()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._arm()
        buf = self.buf
        while len(buf) >= 2:
            n = buf[0] << 8 | buf[1]
            if len(buf) < 2 + n:
                break
            msg = bytes(buf[2:2 + n])
            del buf[:2 + n]
            out = self.responder.handle(msg, "tcp")
            if isinstance(out, Forward):
                self._pending += 1
                asyncio.ensure_future(self._forwarded(out))
            elif out is not None:
                self._write(out)
            elif len(msg) < 12:
                self.close()  # unreadable frame: drop the connection
                return
        if len(buf) > self.MAX_BUFFER:
            self.close()

    def _write(self, out: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(struct.pack("!H", len(out)) + out)

    async def _forwarded(self, f: Forward) -> None:
        try:
            out = await self.forward(f)
            if out is not None:
                self._write(out)
        finally:
            self._pending -= 1

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.transport = None


def make_socket(host: str, port: int, kind: int, netns: str | None = None,
                reuse_port: bool = True) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket_in_netns(netns, family, kind, (host, port), reuse_port=reuse_port)
    if kind == socket.SOCK_STREAM:
        sock.listen(1024)
    else:
        for opt, val in ((socket.SO_RCVBUF, 1 << 22), (socket.SO_SNDBUF, 1 << 22)):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, val)
            except OSError:
                pass
    sock.setblocking(False)
    return sock


async def serve(loop: asyncio.AbstractEventLoop, responder: Responder, forward: ForwardFn,
                latency: Latency, udp_sock: socket.socket, tcp_sock: socket.socket,
                idle_timeout: float) -> tuple[asyncio.BaseTransport, asyncio.AbstractServer]:
    udp, _ = await loop.create_datagram_endpoint(lambda: UdpServer(responder, forward, latency), sock=udp_sock)
    tcp = await loop.create_server(lambda: TcpServer(responder, forward, idle_timeout), sock=tcp_sock)
    return udp, tcp
