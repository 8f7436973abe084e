"""Port-forward over SPDY (``portforward.k8s.io``), as kubectl speaks it to the kubelet.

Two carriers bring the same SPDY/3.1 byte stream:

* a websocket with subprotocol ``SPDY/3.1+portforward.k8s.io`` (kubectl >= 1.31 default): SPDY
  bytes in binary messages, split anywhere;
* the legacy HTTP upgrade (``Upgrade: SPDY/3.1``, ``X-Stream-Protocol-Version: portforward.k8s.io``).

Per forwarded connection the client opens an *error* and a *data* stream (headers ``streamtype``,
``port``, ``requestid``); once both exist the node dials the pod port and copies bytes; failures
are written as text on the error stream.

Pure parts: :func:`parse_stream`, :class:`PairTracker`, :func:`negotiate`, :func:`forward_error`.
I/O shell: :func:`serve_port_forward` over a :class:`ByteChannel`, :func:`hijack` (take over an
aiohttp connection after a non-websocket upgrade) and :func:`dial_pod`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from aiohttp import WSMsgType, web

from servicenet.common.component import bounded
from servicenet.common.hijack import RawChannel, hijack
from servicenet.common.netns import socket_in_netns
from servicenet.node import spdy
from servicenet.node.pod import PodWorker

__all__ = [
    "PORTFORWARD_PROTOCOL", "SPDY_UPGRADE", "WS_TUNNEL_PREFIX", "WS_TUNNEL_PROTOCOL",
    "StreamRejected", "StreamRequest", "Pair", "PairTracker", "parse_stream", "negotiate", "forward_error",
    "ByteChannel", "WebSocketChannel", "RawChannel", "hijack", "upgrade_response_head",
    "dial_pod", "serve_port_forward", "live_sessions", "Dialer",
]

PORTFORWARD_PROTOCOL = "portforward.k8s.io"
SPDY_UPGRADE = "SPDY/3.1"
WS_TUNNEL_PREFIX = "SPDY/3.1+"
WS_TUNNEL_PROTOCOL = WS_TUNNEL_PREFIX + PORTFORWARD_PROTOCOL
STREAM_CREATION_TIMEOUT = 30.0

Dialer = Callable[[int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


# -- pure core --------------------------------------------------------------------------------------
class StreamRejected(Exception):
    """A new stream's headers are unusable; the stream is reset."""


@dataclass(frozen=True, slots=True)
class StreamRequest:
    stream_id: int
    port: int
    kind: str  # "error" | "data"
    request_id: str


def parse_stream(stream_id: int, headers: spdy.Headers) -> StreamRequest:
    """Validate a port-forward stream's headers (messages as the kubelet words them)."""
    port_s = spdy.header_value(headers, "port")
    if not port_s:
        raise StreamRejected('"port" header is required')
    if not port_s.isdigit() or int(port_s) > 65535:
        raise StreamRejected(f'unable to parse "{port_s}" as a port')
    port = int(port_s)
    if port < 1:
        raise StreamRejected(f'port "{port_s}" must be > 0')
    kind = spdy.header_value(headers, "streamtype")
    if not kind:
        raise StreamRejected('"streamtype" header is required')
    if kind not in ("error", "data"):
        raise StreamRejected(f'invalid stream type "{kind}"')
    rid = spdy.header_value(headers, "requestid")
    if not rid:  # old clients: error and data streams are consecutive odd ids
        rid = str(stream_id if kind == "error" else stream_id - 2)
    return StreamRequest(stream_id, port, kind, rid)


@dataclass(slots=True)
class Pair:
    request_id: str
    created: float
    error: StreamRequest | None = None
    data: StreamRequest | None = None

    @property
    def complete(self) -> bool:
        return self.error is not None and self.data is not None


@dataclass(slots=True)
class PairTracker:
    """Matches error and data streams by request id; incomplete pairs expire after ``timeout``."""

    timeout: float = STREAM_CREATION_TIMEOUT
    pairs: dict[str, Pair] = field(default_factory=dict)

    def add(self, req: StreamRequest, now: float) -> tuple[Pair, str | None]:
        """Attach a stream; returns the pair and an error message for its error stream, if any.

        A complete pair leaves the tracker (the caller now owns it)."""
        p = self.pairs.get(req.request_id)
        if p is None:
            p = self.pairs[req.request_id] = Pair(req.request_id, now)
        slot = "error" if req.kind == "error" else "data"
        if getattr(p, slot) is not None:
            return p, (f"error processing stream for request {req.request_id}: "
                       f"{slot} stream already assigned")
        setattr(p, slot, req)
        if p.complete:
            del self.pairs[req.request_id]
        return p, None

    def expired(self, now: float) -> list[Pair]:
        gone = [p for p in self.pairs.values() if now - p.created >= self.timeout]
        for p in gone:
            del self.pairs[p.request_id]
        return gone


def timeout_message(request_id: str) -> str:
    return f"(request={request_id}) timed out waiting for streams"


def negotiate(client: list[str], server: tuple[str, ...]) -> str | None:
    """The first client protocol the server supports; "" when the client named none (old clients)."""
    if not client:
        return ""
    for p in client:
        if p in server:
            return p
    return None


def forward_error(port: int, pod: str, uid: str, err: BaseException, close: bool = True) -> bytes:
    """The JSON the kubelet writes on the error stream when forwarding fails."""
    msg = f"error forwarding port {port} to pod {pod}, uid {uid}: {_os_text(err)}"
    body: dict[str, object] = {"message": msg}
    if close:
        body = {"closeConnection": True, **body}
    return json.dumps(body).encode() + b"\n"


def _os_text(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno is not None:
        return os.strerror(err.errno).lower()
    return str(err) or type(err).__name__


def upgrade_response_head(upgrade: str, protocol: str | None) -> bytes:
    lines = ["HTTP/1.1 101 Switching Protocols", "Connection: Upgrade", f"Upgrade: {upgrade}"]
    if protocol:
        lines.append(f"X-Stream-Protocol-Version: {protocol}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# -- byte channels ----------------------------------------------------------------------------------
class ByteChannel(Protocol):
    async def read(self) -> bytes: ...  # b"" at end of stream
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


class WebSocketChannel:
    """A byte stream carried in binary websocket messages (the SPDY tunnel)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws

    async def read(self) -> bytes:
        while True:
            msg = await self.ws.receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
                continue
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return b""
            if msg.type == WSMsgType.TEXT:
                return b""  # the tunnel is binary-only: treat as a broken peer

    async def write(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def close(self) -> None:
        await self.ws.close()


# -- dialing the pod --------------------------------------------------------------------------------
async def dial_pod(worker: PodWorker, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to ``port`` of the pod as the kubelet does: localhost inside the pod's network
    namespace (netns mode), or the pod IP (loopback mode, where the pod IP is local)."""
    sb = worker.sandbox
    if sb is not None and sb.netns:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(None, socket_in_netns, sb.netns, socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)
    ip = worker.pod_ip()
    if not ip:
        raise ConnectionRefusedError(errno.ECONNREFUSED, "pod has no IP")
    return await asyncio.open_connection(ip, port)


# -- the server -------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Forward:
    data_id: int
    error_id: int | None = None
    writer: asyncio.StreamWriter | None = None
    pending: list[bytes] = field(default_factory=list)
    client_eof: bool = False
    task: asyncio.Task[None] | None = None


class _Server:
    def __init__(self, channel: ByteChannel, dial: Dialer, pod: str, uid: str, timeout: float) -> None:
        self.ch, self.dial, self.pod, self.uid = channel, dial, pod, uid
        self.session = spdy.Session(server=True, max_frame_data=32 * 1024)
        self.tracker = PairTracker(timeout)
        self.forwards: dict[int, _Forward] = {}  # data stream id -> forward
        self.error_ids: dict[str, int] = {}  # request id -> error stream id (pairs not yet complete)
        self._lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()

    async def flush(self) -> None:
        async with self._lock:
            out = self.session.data_to_send()
            if out:
                await self.ch.write(out)

    def _error(self, stream_id: int | None, text: bytes) -> None:
        if stream_id is not None and self.session.can_send(stream_id):
            self.session.send_data(stream_id, text)

    async def run(self) -> None:
        ticker = asyncio.create_task(self._expire())
        _LIVE.add(self)
        try:
            while True:
                data = await self.ch.read()
                if not data:
                    return
                try:
                    events = self.session.receive_data(data)
                except spdy.FrameError:
                    await self.flush()
                    return
                for ev in events:
                    await self._on_event(ev)
                await self.flush()
                if self.session.goaway_received and not self.forwards:
                    return
        finally:
            _LIVE.discard(self)
            ticker.cancel()
            for f in list(self.forwards.values()):
                if f.task is not None:
                    f.task.cancel()
                if f.writer is not None:
                    f.writer.close()
            with contextlib.suppress(Exception):
                self.session.close()
                await bounded(self.flush(), 1)
            with contextlib.suppress(Exception):
                await self.ch.close()

    async def _expire(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.tracker.timeout))
            for p in self.tracker.expired(self._loop.time()):
                eid = self.error_ids.pop(p.request_id, None)
                self._error(eid, timeout_message(p.request_id).encode())
                for sid in (eid, p.data.stream_id if p.data else None):
                    if sid is not None:
                        self.session.end_stream(sid)
                if p.data is not None:
                    self.forwards.pop(p.data.stream_id, None)
            with contextlib.suppress(Exception):
                await self.flush()

    async def _on_event(self, ev: spdy.Event) -> None:
        s = self.session
        match ev:
            case spdy.StreamOpened(sid, headers, _):
                try:
                    req = parse_stream(sid, headers)
                except StreamRejected:
                    s.reset_stream(sid, spdy.RstStatus.CANCEL)
                    return
                s.reply(sid)
                pair, err = self.tracker.add(req, self._loop.time())
                if err is not None:
                    self._error(self.error_ids.get(pair.request_id) or
                                (pair.error.stream_id if pair.error else None), err.encode())
                    s.reset_stream(sid, spdy.RstStatus.CANCEL)
                    return
                if req.kind == "error":
                    self.error_ids[req.request_id] = sid
                else:
                    self.forwards[sid] = _Forward(sid)
                if pair.complete:
                    assert pair.data is not None and pair.error is not None
                    self.error_ids.pop(pair.request_id, None)
                    fwd = self.forwards.setdefault(pair.data.stream_id, _Forward(pair.data.stream_id))
                    fwd.error_id = pair.error.stream_id
                    fwd.task = asyncio.create_task(self._forward(fwd, pair.data.port))
            case spdy.DataReceived(sid, data):
                fwd = self.forwards.get(sid)
                if fwd is None:
                    return  # data on an error stream: ignored
                if fwd.writer is None:
                    fwd.pending.append(data)
                    return
                fwd.writer.write(data)
                if fwd.writer.transport.get_write_buffer_size() > 1 << 20:
                    with contextlib.suppress(OSError):
                        await fwd.writer.drain()
            case spdy.StreamEnded(sid):
                fwd = self.forwards.get(sid)
                if fwd is not None:
                    fwd.client_eof = True
                    if fwd.writer is not None and fwd.writer.can_write_eof():
                        with contextlib.suppress(OSError):
                            fwd.writer.write_eof()
            case spdy.StreamReset(sid):
                fwd = self.forwards.get(sid)
                if fwd is not None and fwd.task is not None:
                    fwd.task.cancel()

    async def _forward(self, fwd: _Forward, port: int) -> None:
        s = self.session
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                reader, writer = await self.dial(port)
            except OSError as exc:
                self._error(fwd.error_id, forward_error(port, self.pod, self.uid, exc))
                return
            fwd.writer = writer
            for chunk in fwd.pending:
                writer.write(chunk)
            fwd.pending.clear()
            if fwd.client_eof and writer.can_write_eof():
                writer.write_eof()
            try:
                while chunk := await reader.read(32 * 1024):
                    if not s.can_send(fwd.data_id):
                        break
                    s.send_data(fwd.data_id, chunk)
                    await self.flush()
            except OSError as exc:
                if exc.errno not in (errno.ECONNRESET, errno.EPIPE):
                    self._error(fwd.error_id, forward_error(port, self.pod, self.uid, exc))
        except asyncio.CancelledError:
            pass
        finally:
            self.forwards.pop(fwd.data_id, None)
            if writer is not None:
                writer.close()
            s.end_stream(fwd.data_id)
            if fwd.error_id is not None:
                s.end_stream(fwd.error_id)
            with contextlib.suppress(Exception):
                await self.flush()


_LIVE: set[_Server] = set()


def live_sessions() -> list[str]:
    """The carriers ("websocket" / "upgrade") of the SPDY port-forward connections served now."""
    return sorted("websocket" if isinstance(s.ch, WebSocketChannel) else "upgrade" for s in _LIVE)


async def serve_port_forward(channel: ByteChannel, dial: Dialer, *, pod: str, uid: str,
                             stream_creation_timeout: float = STREAM_CREATION_TIMEOUT) -> None:
    """Serve one SPDY port-forward connection until the client goes away."""
    await _Server(channel, dial, pod, uid, stream_creation_timeout).run()
