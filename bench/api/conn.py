"""A minimal keep-alive HTTP/1.1 client over asyncio streams (TLS + bearer token).

The benchmark's clients share two cores with the server, so they must be cheap: one connection is
one asyncio stream, a request is one pre-formatted header block, and a response is read with
``readuntil``/``readexactly`` (Content-Length) or chunk by chunk (watch streams).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from servicenet.client.kubeconfig import load


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    token: str
    ca_pem: bytes | None

    @classmethod
    def from_kubeconfig(cls, path: str) -> Target:
        cfg = load(path)
        rest = cfg.server.split("://", 1)[1]
        host, _, port = rest.rpartition(":")
        return cls(host.strip("[]"), int(port), cfg.token or "", cfg.ca_data)

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode() if self.ca_pem else None)
        return ctx


class HttpError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


class Conn:
    """One keep-alive connection; one request at a time."""

    def __init__(self, target: Target, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 user_agent: str) -> None:
        self.target = target
        self.reader = reader
        self.writer = writer
        self._fixed = (f"Host: {target.host}:{target.port}\r\nAuthorization: Bearer {target.token}\r\n"
                       f"User-Agent: {user_agent}\r\n").encode()

    @classmethod
    async def open(cls, target: Target, ctx: ssl.SSLContext, user_agent: str = "bench/1.0") -> Conn:
        reader, writer = await asyncio.open_connection(target.host, target.port, ssl=ctx,
                                                       server_hostname=target.host, limit=1 << 20)
        return cls(target, reader, writer, user_agent)

    def close(self) -> None:
        self.writer.close()

    def send(self, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json", accept: str = "application/json") -> None:
        head = f"{method} {path} HTTP/1.1\r\n".encode() + self._fixed + f"Accept: {accept}\r\n".encode()
        if body is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            self.writer.write(head + body)
        else:
            self.writer.write(head + b"\r\n")

    async def read_head(self) -> tuple[int, dict[str, str]]:
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        return status, headers

    async def read_response(self) -> tuple[int, bytes]:
        status, headers = await self.read_head()
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = [c async for c in self.chunks()]
            body = b"".join(parts)
        else:
            body = b""
        return status, body

    async def request(self, method: str, path: str, body: bytes | None = None,
                      content_type: str = "application/json", accept: str = "application/json") -> bytes:
        self.send(method, path, body, content_type, accept)
        status, data = await self.read_response()
        if status >= 400:
            raise HttpError(status, data)
        return data

    async def chunks(self) -> AsyncIterator[bytes]:
        """The chunks of a chunked body, until the terminating zero-size chunk."""
        r = self.reader
        while True:
            size_line = await r.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                await r.readuntil(b"\r\n")
                return
            data = await r.readexactly(size + 2)
            yield data[:-2]

    async def lines(self) -> AsyncIterator[bytes]:
        """Newline-delimited records of a chunked streaming body (a watch)."""
        buf = b""
        async for chunk in self.chunks():
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                yield buf[:nl]
                buf = buf[nl + 1:]


class SyncConn:
    """A blocking keep-alive connection for timing large responses (LIST) with little client CPU:
    the body is received straight into one preallocated buffer."""

    def __init__(self, target: Target, user_agent: str = "bench/1.0") -> None:
        import socket

        self.target = target
        raw = socket.create_connection((target.host, target.port), timeout=120)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = target.ssl_context().wrap_socket(raw, server_hostname=target.host)
        self._fixed = (f"Host: {target.host}:{target.port}\r\nAuthorization: Bearer {target.token}\r\n"
                       f"User-Agent: {user_agent}\r\n").encode()
        self._buf = b""

    def close(self) -> None:
        self.sock.close()

    def _read_head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self._buf += chunk
        head, _, self._buf = self._buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(lines[0].split(" ", 2)[1]), headers

    def get(self, path: str, accept: str = "application/json") -> bytearray:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\n".encode() + self._fixed + f"Accept: {accept}\r\n\r\n".encode())
        status, headers = self._read_head()
        if "content-length" not in headers:
            raise HttpError(status, b"benchmark client needs Content-Length")
        n = int(headers["content-length"])
        body = bytearray(n)
        view = memoryview(body)
        have = min(n, len(self._buf))
        view[:have] = self._buf[:have]
        self._buf = self._buf[have:]
        while have < n:
            got = self.sock.recv_into(view[have:], min(n - have, 1 << 22))
            if not got:
                raise ConnectionError("connection closed mid-body")
            have += got
        if status >= 400:
            raise HttpError(status, bytes(body))
        return body
