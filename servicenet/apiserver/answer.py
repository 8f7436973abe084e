"""A whole-body HTTP answer written in one piece.

Most API answers are one complete body (an object, a Status, a short list). aiohttp's
``web.Response`` sends such a body through its general path: a header multidict filled per answer,
a stream writer that buffers the head, then the body, then an end-of-message step, each a few
layers of calls. :class:`Answer` is a ``web.Response`` (every caller and every reader of its status,
headers or body sees one) whose ``prepare`` writes the status line, the headers and the body with
one ``transport.write`` when nothing asks for the general path: HTTP/1.1, not HEAD, a status that
carries a body, a ``bytes`` body up to :data:`ONE_WRITE_LIMIT`, no cookies, compression or chunking,
and header names and values free of CR and LF (which the general path refuses). Anything else goes
the general way, unchanged. The head is what aiohttp writes for the same answer: the handler's
headers, then ``Content-Length``, ``Date``, ``Server``, and ``Connection: close`` when the
connection ends after it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11

#: bodies above this take the general path, which waits for the transport to drain
ONE_WRITE_LIMIT = 64 * 1024
# headers the one-write head sets itself: a handler that sets one takes the general path
_OWN = frozenset({"content-length", "date", "server", "connection", "transfer-encoding"})
_NO_BODY = frozenset({204, 304})


class Answer(web.Response):
    """``web.Response(body=..., status=..., content_type=..., headers=...)``, sent in one write."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._eof_sent or self._payload_writer is not None:
            return await super().prepare(request)
        body = self._body
        head = _head(self, request) if type(body) is bytes and len(body) <= ONE_WRITE_LIMIT else None
        transport = request.transport
        if head is None or transport is None or transport.is_closing():
            return await super().prepare(request)
        assert isinstance(body, bytes)
        data = head + body
        request._payload_writer.output_size += len(data)  # noqa: SLF001 - what aiohttp counts as sent
        transport.write(data)
        self._eof_sent = True  # write_eof (called next by aiohttp) has nothing left to do
        self._body_length = len(body)
        return None


def _head(resp: Answer, request: web.BaseRequest) -> bytes | None:
    """The status line and headers for the one-write path, or None for the general path."""
    status = resp.status
    if (status < 200 or status in _NO_BODY or request.method == "HEAD" or request.version != HttpVersion11
            or resp._cookies or resp._compression or resp._chunked):  # noqa: SLF001
        return None
    keep_alive = resp.keep_alive
    if keep_alive is None:
        keep_alive = resp._keep_alive = request.keep_alive  # noqa: SLF001 - as aiohttp's prepare records it
    lines = [f"HTTP/1.1 {status} {resp.reason}"]
    for name, value in resp.headers.items():
        if name.lower() in _OWN or _breaks(name) or _breaks(value):
            return None
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(resp._body)}")  # type: ignore[arg-type]  # noqa: SLF001
    lines.append(f"Date: {rfc822_formatted_time()}")
    lines.append(f"Server: {SERVER_SOFTWARE}")
    if not keep_alive:
        lines.append("Connection: close")
    lines.append("\r\n")
    return "\r\n".join(lines).encode()


def _breaks(text: Any) -> bool:
    return "\r" in text or "\n" in text
