"""SPDY/3.1 frames, header blocks and the frame codec (pure; used by :mod:`servicenet.node.spdy`).

Header blocks are compressed with one zlib stream per direction (each block ends with a sync
flush) primed with the dictionary of the SPDY/3 specification, :data:`DICTIONARY`.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

VERSION = 3
MAX_DATA_LENGTH = (1 << 24) - 1
MAX_HEADER_BLOCK = 1 << 20  # decompressed size limit of one header block
Headers = tuple[tuple[str, str], ...]


def _build_dictionary() -> bytes:
    """The SPDY/3 header compression dictionary (spec section 2.6.10.1).

    It is a run of length-prefixed (uint32 big-endian) tokens followed by a raw text tail.
    """
    words = (
        "options head post put delete trace accept accept-charset accept-encoding accept-language "
        "accept-ranges age allow authorization cache-control connection content-base content-encoding "
        "content-language content-length content-location content-md5 content-range content-type date "
        "etag expect expires from host if-match if-modified-since if-none-match if-range "
        "if-unmodified-since last-modified location max-forwards pragma proxy-authenticate "
        "proxy-authorization range referer retry-after server te trailer transfer-encoding upgrade "
        "user-agent vary via warning www-authenticate method get status"
    ).split() + ["200 OK"] + "version HTTP/1.1 url public set-cookie keep-alive origin".split()
    codes = ("100 101 201 202 205 206 300 302 303 304 305 306 307 402 405 406 407 408 409 410 411 412 "
             "413 414 415 416 417 502 504 505").split()
    reasons = ("203 Non-Authoritative Information", "204 No Content", "301 Moved Permanently",
               "400 Bad Request", "401 Unauthorized", "403 Forbidden", "404 Not Found",
               "500 Internal Server Error", "501 Not Implemented", "503 Service Unavailable")
    months = "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec "
    clock = "00:00:00 "
    days = "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    types = ",".join(["chunked", "text/html", "image/png", "image/jpg", "image/gif", "application/xml",
                      "application/xhtml+xml", "text/plain", "text/javascript", "public"])
    rest = "privatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    out = bytearray()
    for w in words:
        out += struct.pack(">I", len(w)) + w.encode()
    out += ("".join(codes) + "".join(reasons) + months + clock + days + types + rest).encode()
    return bytes(out)


DICTIONARY = _build_dictionary()


class FrameType(IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    INVALID_CREDENTIALS = 10
    FRAME_TOO_LARGE = 11


class GoAwayStatus(IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 2


FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02
FLAG_CLEAR_SETTINGS = 0x01


class SpdyError(Exception):
    """Base of SPDY errors."""


class FrameError(SpdyError):
    """The peer sent bytes that are not valid SPDY/3.1 (fatal for the connection)."""


class StreamStateError(SpdyError):
    """A local command does not fit the stream's state (unknown stream, already closed...)."""


# -- frames -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DataFrame:
    stream_id: int
    data: bytes = b""
    fin: bool = False


@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    headers: Headers = ()
    associated_id: int = 0
    priority: int = 0
    fin: bool = False
    unidirectional: bool = False


@dataclass(frozen=True, slots=True)
class SynReply:
    stream_id: int
    headers: Headers = ()
    fin: bool = False


@dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Settings:
    entries: tuple[tuple[int, int, int], ...] = ()  # (flags, id, value)
    clear: bool = False


@dataclass(frozen=True, slots=True)
class Ping:
    ping_id: int


@dataclass(frozen=True, slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True, slots=True)
class HeadersFrame:
    stream_id: int
    headers: Headers = ()
    fin: bool = False


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int
    delta: int


@dataclass(frozen=True, slots=True)
class UnknownControl:
    frame_type: int
    flags: int
    payload: bytes


Frame = (DataFrame | SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame
         | WindowUpdate | UnknownControl)


# -- header blocks ----------------------------------------------------------------------------------
def header_value(headers: Headers, name: str) -> str | None:
    """The first value of ``name`` (case-insensitive), or None."""
    name = name.lower()
    for k, v in headers:
        if k == name:
            return v
    return None


def encode_header_block(headers: Headers) -> bytes:
    """Uncompressed name/value block; repeated names are merged into one NUL-separated value."""
    merged: dict[str, list[str]] = {}
    for k, v in headers:
        merged.setdefault(k.lower(), []).append(v)
    out = bytearray(struct.pack(">I", len(merged)))
    for k, vs in merged.items():
        kb, vb = k.encode(), "\x00".join(vs).encode()
        out += struct.pack(">I", len(kb)) + kb + struct.pack(">I", len(vb)) + vb
    return bytes(out)


def decode_header_block(raw: bytes) -> Headers:
    def take(pos: int) -> tuple[bytes, int]:
        if pos + 4 > len(raw):
            raise FrameError("truncated header block")
        (n,) = struct.unpack_from(">I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise FrameError("truncated header block")
        return raw[pos:pos + n], pos + n

    if len(raw) < 4:
        raise FrameError("truncated header block")
    (count,) = struct.unpack_from(">I", raw, 0)
    pos, out = 4, []
    for _ in range(count):
        name, pos = take(pos)
        value, pos = take(pos)
        key = name.decode("latin-1").lower()
        if not key:
            raise FrameError("empty header name")
        for v in value.split(b"\x00"):
            out.append((key, v.decode("latin-1")))
    return tuple(out)


class HeaderCompressor:
    """Compresses successive header blocks of one direction of a connection."""

    def __init__(self) -> None:
        self._z = zlib.compressobj(zlib.Z_BEST_COMPRESSION, zlib.DEFLATED, 15, zdict=DICTIONARY)

    def compress(self, headers: Headers) -> bytes:
        return self._z.compress(encode_header_block(headers)) + self._z.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    def __init__(self) -> None:
        self._z = zlib.decompressobj(15, zdict=DICTIONARY)

    def decompress(self, block: bytes) -> Headers:
        try:
            raw = self._z.decompress(block, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise FrameError(f"header block does not decompress: {exc}") from exc
        if self._z.unconsumed_tail:
            raise FrameError("header block too large")
        return decode_header_block(raw)


# -- frame codec ------------------------------------------------------------------------------------
def _control(ftype: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_DATA_LENGTH:
        raise SpdyError("control frame too large")
    return struct.pack(">HHI", 0x8000 | VERSION, ftype, (flags << 24) | len(payload)) + payload


class FrameEncoder:
    def __init__(self) -> None:
        self._headers = HeaderCompressor()

    def encode(self, f: Frame) -> bytes:
        match f:
            case DataFrame(sid, data, fin):
                if len(data) > MAX_DATA_LENGTH:
                    raise SpdyError("data frame too large")
                return struct.pack(">II", sid & 0x7FFFFFFF, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data
            case SynStream(sid, headers, assoc, prio, fin, uni):
                flags = (FLAG_FIN if fin else 0) | (FLAG_UNIDIRECTIONAL if uni else 0)
                body = struct.pack(">IIBB", sid & 0x7FFFFFFF, assoc & 0x7FFFFFFF, (prio & 7) << 5, 0)
                return _control(FrameType.SYN_STREAM, flags, body + self._headers.compress(headers))
            case SynReply(sid, headers, fin):
                body = struct.pack(">I", sid & 0x7FFFFFFF) + self._headers.compress(headers)
                return _control(FrameType.SYN_REPLY, FLAG_FIN if fin else 0, body)
            case HeadersFrame(sid, headers, fin):
                body = struct.pack(">I", sid & 0x7FFFFFFF) + self._headers.compress(headers)
                return _control(FrameType.HEADERS, FLAG_FIN if fin else 0, body)
            case RstStream(sid, status):
                return _control(FrameType.RST_STREAM, 0, struct.pack(">II", sid & 0x7FFFFFFF, status))
            case Settings(entries, clear):
                body = struct.pack(">I", len(entries)) + b"".join(
                    struct.pack(">II", ((fl & 0xFF) << 24) | (i & 0xFFFFFF), v) for fl, i, v in entries)
                return _control(FrameType.SETTINGS, FLAG_CLEAR_SETTINGS if clear else 0, body)
            case Ping(pid):
                return _control(FrameType.PING, 0, struct.pack(">I", pid))
            case GoAway(last, status):
                return _control(FrameType.GOAWAY, 0, struct.pack(">II", last & 0x7FFFFFFF, status))
            case WindowUpdate(sid, delta):
                return _control(FrameType.WINDOW_UPDATE, 0, struct.pack(">II", sid & 0x7FFFFFFF, delta))
            case UnknownControl(ftype, flags, payload):
                return _control(ftype, flags, payload)
        raise TypeError(f"not a SPDY frame: {f!r}")


class FrameDecoder:
    """Incremental parser: bytes in any split, whole frames out."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._headers = HeaderDecompressor()

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        frames: list[Frame] = []
        while len(self._buf) >= 8:
            w0, w1 = struct.unpack_from(">II", self._buf, 0)
            length = w1 & 0xFFFFFF
            if len(self._buf) < 8 + length:
                break
            payload = bytes(self._buf[8:8 + length])
            del self._buf[:8 + length]
            flags = w1 >> 24
            if w0 & 0x80000000:
                version = (w0 >> 16) & 0x7FFF
                if version != VERSION:
                    raise FrameError(f"unsupported SPDY version {version}")
                frames.append(self._control(w0 & 0xFFFF, flags, payload))
            else:
                sid = w0 & 0x7FFFFFFF
                if sid == 0:
                    raise FrameError("data frame on stream 0")
                frames.append(DataFrame(sid, payload, bool(flags & FLAG_FIN)))
        return frames

    def _control(self, ftype: int, flags: int, p: bytes) -> Frame:
        fin = bool(flags & FLAG_FIN)

        def need(n: int, exact: bool = False) -> None:
            if len(p) < n or (exact and len(p) != n):
                raise FrameError(f"invalid length {len(p)} for control frame type {ftype}")

        def sid(off: int = 0) -> int:
            v = struct.unpack_from(">I", p, off)[0] & 0x7FFFFFFF
            if v == 0:
                raise FrameError(f"stream id 0 in control frame type {ftype}")
            return int(v)

        if ftype == FrameType.SYN_STREAM:
            need(10)
            assoc = struct.unpack_from(">I", p, 4)[0] & 0x7FFFFFFF
            return SynStream(sid(), self._headers.decompress(p[10:]), assoc, p[8] >> 5, fin,
                             bool(flags & FLAG_UNIDIRECTIONAL))
        if ftype == FrameType.SYN_REPLY:
            need(4)
            return SynReply(sid(), self._headers.decompress(p[4:]), fin)
        if ftype == FrameType.HEADERS:
            need(4)
            return HeadersFrame(sid(), self._headers.decompress(p[4:]), fin)
        if ftype == FrameType.RST_STREAM:
            need(8, exact=True)
            return RstStream(sid(), struct.unpack_from(">I", p, 4)[0])
        if ftype == FrameType.SETTINGS:
            need(4)
            (n,) = struct.unpack_from(">I", p, 0)
            need(4 + 8 * n, exact=True)
            entries = []
            for i in range(n):
                w, v = struct.unpack_from(">II", p, 4 + 8 * i)
                entries.append((w >> 24, w & 0xFFFFFF, v))
            return Settings(tuple(entries), bool(flags & FLAG_CLEAR_SETTINGS))
        if ftype == FrameType.PING:
            need(4, exact=True)
            return Ping(struct.unpack_from(">I", p, 0)[0])
        if ftype == FrameType.GOAWAY:
            need(8, exact=True)
            last, status = struct.unpack_from(">II", p, 0)
            return GoAway(last & 0x7FFFFFFF, status)
        if ftype == FrameType.WINDOW_UPDATE:
            need(8, exact=True)
            s, delta = struct.unpack_from(">II", p, 0)
            return WindowUpdate(s & 0x7FFFFFFF, delta & 0x7FFFFFFF)
        return UnknownControl(ftype, flags, p)
