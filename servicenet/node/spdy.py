"""SPDY/3.1 framing and a sans-IO session: the transport of Kubernetes' streaming protocols.

Only what Kubernetes streaming uses is implemented: SYN_STREAM / SYN_REPLY / RST_STREAM /
SETTINGS / PING / GOAWAY / HEADERS / WINDOW_UPDATE control frames and DATA frames.  Like the Go
``spdystream`` peer used by kubectl and the kubelet there is no flow control: WINDOW_UPDATE and
SETTINGS are parsed and ignored, and nothing ever waits for a window.

Frames, header blocks and the codec live in :mod:`servicenet.node.spdy_frames` and are
re-exported here.

:class:`Session` owns no I/O: feed it bytes with :meth:`Session.receive_data`, get
:class:`Event` objects back, issue commands (:meth:`Session.reply`, :meth:`Session.send_data`, ...)
and write whatever :meth:`Session.data_to_send` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from servicenet.node.spdy_frames import (  # re-exported: spdy.X names every SPDY piece
    DICTIONARY as DICTIONARY,
)
from servicenet.node.spdy_frames import (
    FLAG_CLEAR_SETTINGS as FLAG_CLEAR_SETTINGS,
)
from servicenet.node.spdy_frames import (
    FLAG_FIN as FLAG_FIN,
)
from servicenet.node.spdy_frames import (
    FLAG_UNIDIRECTIONAL as FLAG_UNIDIRECTIONAL,
)
from servicenet.node.spdy_frames import (
    MAX_DATA_LENGTH as MAX_DATA_LENGTH,
)
from servicenet.node.spdy_frames import (
    MAX_HEADER_BLOCK as MAX_HEADER_BLOCK,
)
from servicenet.node.spdy_frames import (
    VERSION as VERSION,
)
from servicenet.node.spdy_frames import (
    DataFrame as DataFrame,
)
from servicenet.node.spdy_frames import (
    Frame as Frame,
)
from servicenet.node.spdy_frames import (
    FrameDecoder as FrameDecoder,
)
from servicenet.node.spdy_frames import (
    FrameEncoder as FrameEncoder,
)
from servicenet.node.spdy_frames import (
    FrameError as FrameError,
)
from servicenet.node.spdy_frames import (
    FrameType as FrameType,
)
from servicenet.node.spdy_frames import (
    GoAway as GoAway,
)
from servicenet.node.spdy_frames import (
    GoAwayStatus as GoAwayStatus,
)
from servicenet.node.spdy_frames import (
    HeaderCompressor as HeaderCompressor,
)
from servicenet.node.spdy_frames import (
    HeaderDecompressor as HeaderDecompressor,
)
from servicenet.node.spdy_frames import (
    Headers as Headers,
)
from servicenet.node.spdy_frames import (
    HeadersFrame as HeadersFrame,
)
from servicenet.node.spdy_frames import (
    Ping as Ping,
)
from servicenet.node.spdy_frames import (
    RstStatus as RstStatus,
)
from servicenet.node.spdy_frames import (
    RstStream as RstStream,
)
from servicenet.node.spdy_frames import (
    Settings as Settings,
)
from servicenet.node.spdy_frames import (
    SpdyError as SpdyError,
)
from servicenet.node.spdy_frames import (
    StreamStateError as StreamStateError,
)
from servicenet.node.spdy_frames import (
    SynReply as SynReply,
)
from servicenet.node.spdy_frames import (
    SynStream as SynStream,
)
from servicenet.node.spdy_frames import (
    UnknownControl as UnknownControl,
)
from servicenet.node.spdy_frames import (
    WindowUpdate as WindowUpdate,
)
from servicenet.node.spdy_frames import (
    decode_header_block as decode_header_block,
)
from servicenet.node.spdy_frames import (
    encode_header_block as encode_header_block,
)
from servicenet.node.spdy_frames import (
    header_value as header_value,
)

__all__ = [
    "DICTIONARY", "MAX_DATA_LENGTH", "VERSION",
    "DataFrame", "SynStream", "SynReply", "RstStream", "Settings", "Ping", "GoAway", "HeadersFrame",
    "WindowUpdate", "UnknownControl", "Frame", "FrameType", "RstStatus", "GoAwayStatus",
    "SpdyError", "FrameError", "StreamStateError",
    "HeaderCompressor", "HeaderDecompressor", "FrameEncoder", "FrameDecoder",
    "encode_header_block", "decode_header_block", "header_value",
    "Event", "StreamOpened", "StreamReplied", "HeadersReceived", "DataReceived", "StreamEnded",
    "StreamReset", "PingAcked", "GoAwayReceived", "Session",
]


# -- session ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The peer opened a stream (SYN_STREAM). ``fin`` streams are half-closed by the peer already."""

    stream_id: int
    headers: Headers
    fin: bool = False


@dataclass(frozen=True, slots=True)
class StreamReplied:
    stream_id: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class HeadersReceived:
    stream_id: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class DataReceived:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer will send nothing more on this stream (FIN)."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class StreamReset:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class PingAcked:
    ping_id: int


@dataclass(frozen=True, slots=True)
class GoAwayReceived:
    last_good_stream_id: int
    status: int


Event = (StreamOpened | StreamReplied | HeadersReceived | DataReceived | StreamEnded | StreamReset
         | PingAcked | GoAwayReceived)


@dataclass(slots=True)
class _Stream:
    local_closed: bool = False
    remote_closed: bool = False
    replied: bool = False
    headers: Headers = field(default_factory=tuple)


class Session:
    """One SPDY/3.1 connection endpoint. ``server=True``: the peer opens odd streams, we use even ids."""

    def __init__(self, server: bool = True, max_frame_data: int = 64 * 1024) -> None:
        self.server = server
        self._own_parity = 0 if server else 1
        self._next_stream_id = 2 if server else 1
        self._next_ping_id = 2 if server else 1
        self._last_remote_id = 0
        self._streams: dict[int, _Stream] = {}
        self._enc = FrameEncoder()
        self._dec = FrameDecoder()
        self._out = bytearray()
        self._max_frame_data = max(1, min(max_frame_data, MAX_DATA_LENGTH))
        self.goaway_sent = False
        self.goaway_received = False

    # -- inspection --
    def is_open(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def can_send(self, stream_id: int) -> bool:
        st = self._streams.get(stream_id)
        return st is not None and not st.local_closed

    @property
    def open_streams(self) -> list[int]:
        return sorted(self._streams)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    # -- input --
    def receive_data(self, data: bytes) -> list[Event]:
        """Parse ``data``; return the events. Raises :class:`FrameError` (a GOAWAY is queued) on garbage."""
        try:
            frames = self._dec.feed(data)
        except FrameError:
            self.close(GoAwayStatus.PROTOCOL_ERROR)
            raise
        events: list[Event] = []
        for f in frames:
            self._handle(f, events)
        return events

    def _handle(self, f: Frame, events: list[Event]) -> None:
        match f:
            case SynStream(sid, headers, _, _, fin, uni):
                if sid % 2 == self._own_parity or sid <= self._last_remote_id:
                    self._send(RstStream(sid, RstStatus.PROTOCOL_ERROR))
                    return
                self._last_remote_id = sid
                if self.goaway_sent:
                    self._send(RstStream(sid, RstStatus.REFUSED_STREAM))
                    return
                self._streams[sid] = _Stream(local_closed=uni, remote_closed=fin, headers=headers)
                events.append(StreamOpened(sid, headers, fin))
                if fin:
                    events.append(StreamEnded(sid))
                self._gc(sid)
            case SynReply(sid, headers, fin):
                st = self._streams.get(sid)
                if st is None or st.replied:
                    return
                st.replied = True
                events.append(StreamReplied(sid, headers))
                if fin:
                    self._remote_fin(sid, events)
            case HeadersFrame(sid, headers, fin):
                if sid in self._streams:
                    events.append(HeadersReceived(sid, headers))
                    if fin:
                        self._remote_fin(sid, events)
            case DataFrame(sid, data, fin):
                st = self._streams.get(sid)
                if st is None or st.remote_closed:
                    return  # like spdystream: data for a gone stream is dropped
                if data:
                    events.append(DataReceived(sid, data))
                if fin:
                    self._remote_fin(sid, events)
            case RstStream(sid, status):
                if self._streams.pop(sid, None) is not None:
                    events.append(StreamReset(sid, status))
            case Ping(pid):
                if pid % 2 != self._own_parity:
                    self._send(Ping(pid))
                else:
                    events.append(PingAcked(pid))
            case GoAway(last, status):
                self.goaway_received = True
                events.append(GoAwayReceived(last, status))
            case _:
                return  # SETTINGS, WINDOW_UPDATE, unknown control frames: ignored (no flow control)

    def _remote_fin(self, sid: int, events: list[Event]) -> None:
        st = self._streams.get(sid)
        if st is None or st.remote_closed:
            return
        st.remote_closed = True
        events.append(StreamEnded(sid))
        self._gc(sid)

    def _gc(self, sid: int) -> None:
        st = self._streams.get(sid)
        if st is not None and st.local_closed and st.remote_closed:
            del self._streams[sid]

    # -- commands --
    def _send(self, f: Frame) -> None:
        self._out += self._enc.encode(f)

    def _stream(self, sid: int) -> _Stream:
        st = self._streams.get(sid)
        if st is None:
            raise StreamStateError(f"stream {sid} is not open")
        return st

    def open_stream(self, headers: Headers, fin: bool = False) -> int:
        sid = self._next_stream_id
        self._next_stream_id += 2
        self._streams[sid] = _Stream(local_closed=fin, replied=False, headers=headers)
        self._send(SynStream(sid, headers, fin=fin))
        return sid

    def reply(self, stream_id: int, headers: Headers = (), fin: bool = False) -> None:
        st = self._stream(stream_id)
        if st.replied:
            raise StreamStateError(f"stream {stream_id} already replied")
        st.replied = True
        self._send(SynReply(stream_id, headers, fin))
        if fin:
            st.local_closed = True
            self._gc(stream_id)

    def send_data(self, stream_id: int, data: bytes, fin: bool = False) -> None:
        st = self._stream(stream_id)
        if st.local_closed:
            raise StreamStateError(f"stream {stream_id} is closed for sending")
        step = self._max_frame_data
        for i in range(0, len(data), step):
            last = i + step >= len(data)
            self._send(DataFrame(stream_id, data[i:i + step], fin and last))
        if not data and fin:
            self._send(DataFrame(stream_id, b"", True))
        if fin:
            st.local_closed = True
            self._gc(stream_id)

    def end_stream(self, stream_id: int) -> None:
        """Half-close: an empty DATA frame with FIN (no-op if already closed for sending)."""
        if self.can_send(stream_id):
            self.send_data(stream_id, b"", fin=True)

    def reset_stream(self, stream_id: int, status: int = RstStatus.CANCEL) -> None:
        self._streams.pop(stream_id, None)
        self._send(RstStream(stream_id, status))

    def ping(self) -> int:
        pid = self._next_ping_id
        self._next_ping_id += 2
        self._send(Ping(pid))
        return pid

    def close(self, status: int = GoAwayStatus.OK) -> None:
        """Send GOAWAY naming the last stream the peer opened (once)."""
        if not self.goaway_sent:
            self.goaway_sent = True
            self._send(GoAway(self._last_remote_id, status))
