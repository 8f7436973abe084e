"""DNS wire-format helpers: question parsing, EDNS (OPT) parsing and record encoding (pure)."""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from .records import AAAA, CNAME, NS, PTR, RR, SOA, SRV, TXT, A, Labels, SoaData, SrvData

OPT_TYPE = 41
CLASS_IN = 1
MAX_NAME = 255


def _packed_ip(text: str) -> bytes:
    """The 4 or 16 address bytes of an A/AAAA record (answers are encoded once and cached whole)."""
    return ipaddress.ip_address(text).packed


class FormError(Exception):
    """The packet is not a well-formed DNS query."""


@dataclass(frozen=True, slots=True)
class Edns:
    udp_size: int
    version: int
    do: bool


@dataclass(frozen=True, slots=True)
class Query:
    qid: bytes
    flags: int
    question: bytes  # qname + qtype + qclass exactly as received
    qname_lower: bytes  # wire form, lowercased
    labels: Labels  # lowercased, decoded latin-1 (1:1 with the bytes)
    qtype: int
    qclass: int
    edns: Edns | None


def read_qname(data: bytes, pos: int) -> tuple[int, list[bytes]]:
    """Parse an uncompressed name at ``pos``; return (end, labels). Pointers are refused."""
    labels: list[bytes] = []
    total = 1
    n = len(data)
    while True:
        if pos >= n:
            raise FormError("name runs past the packet")
        length = data[pos]
        if length == 0:
            return pos + 1, labels
        if length & 0xC0:
            raise FormError("compression or extended label in question")
        total += length + 1
        if total > MAX_NAME:
            raise FormError("name longer than 255 octets")
        end = pos + 1 + length
        if end > n:
            raise FormError("label runs past the packet")
        labels.append(data[pos + 1:end])
        pos = end


def skip_name(data: bytes, pos: int) -> int:
    """Skip a possibly compressed name (in the additional section); loops are bounded."""
    n = len(data)
    hops = 0
    while True:
        if pos >= n:
            raise FormError("name runs past the packet")
        length = data[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            if pos + 2 > n:
                raise FormError("truncated pointer")
            hops += 1
            if hops > 64:
                raise FormError("compression loop")
            return pos + 2  # the pointer ends this name in the stream
        if length & 0xC0:
            raise FormError("extended label type")
        pos += 1 + length


def parse_query(data: bytes) -> Query:
    """Parse a query whose header is readable (len ≥ 12); raises FormError."""
    qid = data[:2]
    flags, qd, an, ns, ar = struct.unpack_from("!HHHHH", data, 2)
    if qd != 1:
        raise FormError("exactly one question expected")
    end, raw = read_qname(data, 12)
    if end + 4 > len(data):
        raise FormError("question truncated")
    qtype, qclass = struct.unpack_from("!HH", data, end)
    pos = end + 4
    pos = _skip_rrs(data, pos, an + ns)
    edns: Edns | None = None
    for _ in range(ar):
        pos = skip_name(data, pos)
        if pos + 10 > len(data):
            raise FormError("additional record truncated")
        rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", data, pos)
        pos += 10 + rdlen
        if pos > len(data):
            raise FormError("rdata runs past the packet")
        if rtype == OPT_TYPE:
            if edns is not None:
                raise FormError("two OPT records")
            edns = Edns(rclass, (ttl >> 16) & 0xFF, bool(ttl & 0x8000))
    qlow = data[12:end].lower()
    labels = tuple(lbl.lower().decode("latin-1") for lbl in raw)
    return Query(qid, flags, data[12:end + 4], qlow, labels, qtype, qclass, edns)


def _skip_rrs(data: bytes, pos: int, count: int) -> int:
    for _ in range(count):
        pos = skip_name(data, pos)
        if pos + 10 > len(data):
            raise FormError("record truncated")
        pos += 10 + struct.unpack_from("!H", data, pos + 8)[0]
        if pos > len(data):
            raise FormError("rdata runs past the packet")
    return pos


def age_ttls(msg: bytes, elapsed: int) -> bytes:
    """Subtract ``elapsed`` seconds from every record TTL (OPT excepted), never below 0."""
    if elapsed <= 0:
        return msg
    b = bytearray(msg)
    try:
        qd, an, ns, ar = struct.unpack_from("!HHHH", b, 4)
        pos = 12
        for _ in range(qd):
            pos = skip_name(msg, pos) + 4
        for _ in range(an + ns + ar):
            pos = skip_name(msg, pos)
            rtype, _, ttl, rdlen = struct.unpack_from("!HHIH", b, pos)
            if rtype != OPT_TYPE:
                struct.pack_into("!I", b, pos + 4, max(0, ttl - elapsed))
            pos += 10 + rdlen
    except (FormError, struct.error):
        return msg
    return bytes(b)


def opt_record(udp_size: int, do: bool, ext_rcode: int = 0) -> bytes:
    return b"\x00" + struct.pack("!HHBBHH", OPT_TYPE, udp_size, ext_rcode, 0, 0x8000 if do else 0, 0)


def name_to_wire(labels: Labels) -> bytes:
    out = bytearray()
    for lbl in labels:
        b = lbl.encode("latin-1")
        if not 0 < len(b) < 64:
            raise ValueError(f"bad label {lbl!r}")
        out.append(len(b))
        out += b
    out.append(0)
    if len(out) > MAX_NAME:
        raise ValueError("name too long")
    return bytes(out)


class Encoder:
    """Encode records after a question, compressing names against earlier ones."""

    def __init__(self, qname_labels: Labels, start: int) -> None:
        self.buf = bytearray()
        self.start = start  # absolute offset of buf[0] in the message
        self.table: dict[Labels, int] = {}
        off = 12
        for i in range(len(qname_labels)):
            self.table.setdefault(qname_labels[i:], off)
            off += 1 + len(qname_labels[i].encode("latin-1"))

    def name(self, labels: Labels, compress: bool = True) -> None:
        for i in range(len(labels)):
            suffix = labels[i:]
            ptr = self.table.get(suffix) if compress else None
            if ptr is not None:
                self.buf += struct.pack("!H", 0xC000 | ptr)
                return
            here = self.start + len(self.buf)
            if here < 0x3FFF:
                self.table.setdefault(suffix, here)
            b = labels[i].encode("latin-1")
            if not 0 < len(b) < 64:
                raise ValueError(f"bad label {labels[i]!r}")
            self.buf.append(len(b))
            self.buf += b
        self.buf.append(0)

    def rr(self, rr: RR) -> None:
        self.name(rr.name)
        self.buf += struct.pack("!HHI", rr.rtype, CLASS_IN, rr.ttl)
        at = len(self.buf)
        self.buf += b"\x00\x00"
        d = rr.rdata
        t = rr.rtype
        if t == A:
            self.buf += _packed_ip(d)  # type: ignore[arg-type]
        elif t == AAAA:
            self.buf += _packed_ip(d)  # type: ignore[arg-type]
        elif t in (CNAME, PTR, NS):
            self.name(d)  # type: ignore[arg-type]
        elif t == SRV:
            assert isinstance(d, SrvData)
            self.buf += struct.pack("!HHH", d.priority, d.weight, d.port)
            self.name(d.target, compress=False)
        elif t == TXT:
            raw = str(d).encode()
            for i in range(0, max(len(raw), 1), 255):
                chunk = raw[i:i + 255]
                self.buf.append(len(chunk))
                self.buf += chunk
        elif t == SOA:
            assert isinstance(d, SoaData)
            self.name(d.mname)
            self.name(d.rname)
            self.buf += struct.pack("!IIIII", d.serial, d.refresh, d.retry, d.expire, d.minimum)
        else:
            raise ValueError(f"cannot encode type {t}")
        struct.pack_into("!H", self.buf, at, len(self.buf) - at - 2)
