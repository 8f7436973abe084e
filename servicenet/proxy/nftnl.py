"""Direct nf_tables netlink writer for the statements the nftables renderer emits.

Why: every ``nft -f`` run dumps the kernel's chains and sets into its cache before it
does anything, and with ~100k chains that dump alone takes most of a second. A sync
that changes one endpoint only needs a handful of netlink messages; this module builds
them itself.

Pure part: :func:`encode` turns transaction text (the subset of nft syntax that
:mod:`render_nftables` writes for per-service objects) into one netlink batch, or raises
:class:`Unsupported` (the caller then falls back to ``nft -f``). I/O part:
:class:`NetlinkSession`, a netfilter netlink socket opened inside a network namespace.
"""

from __future__ import annotations

import ctypes
import ipaddress
import itertools
import os
import re
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
BATCH_BEGIN, BATCH_END = 0x10, 0x11
NEWCHAIN, DELCHAIN, NEWRULE, DELRULE, NEWSET, DELSET, NEWSETELEM, DELSETELEM = 3, 5, 6, 8, 9, 11, 12, 14
F_REQUEST, F_ACK, F_CREATE, F_APPEND = 0x1, 0x4, 0x400, 0x800
NESTED = 0x8000
FAMILIES = {"ip": 2, "ip6": 10}
VERDICTS = {"drop": 0, "accept": 1, "jump": -3, "goto": -4, "return": -5}
PROTOS = {"tcp": 6, "udp": 17, "sctp": 132}
SET_ANON_CONST_MAP = 0x1 | 0x2 | 0x8
NFT_DATA_VERDICT = 0xFFFFFF00
TYPE_INTEGER = 4


_TOKEN = os.urandom(4).hex()  # per process: names stay unique across proxy restarts
_ANON = itertools.count(1)


class Unsupported(ValueError):
    """A statement outside the subset this writer encodes."""


class NetlinkError(OSError):
    """The kernel rejected the batch."""


# --- attribute encoding ---------------------------------------------------------------------------

def attr(kind: int, payload: bytes, nested: bool = False) -> bytes:
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind | (NESTED if nested else 0)) + payload + b"\0" * (-n % 4)


def u32(kind: int, v: int) -> bytes:
    return attr(kind, struct.pack("!I", v & 0xFFFFFFFF))


def s(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


def nest(kind: int, *parts: bytes) -> bytes:
    return attr(kind, b"".join(parts), nested=True)


def _value(kind: int, data: bytes) -> bytes:
    return nest(kind, attr(1, data))  # {NFTA_DATA_VALUE}


def _verdict(code: str, chain: str | None) -> bytes:
    inner = attr(1, struct.pack("!i", VERDICTS[code]))  # NFTA_VERDICT_CODE
    if chain is not None:
        inner += s(2, chain)  # NFTA_VERDICT_CHAIN
    return nest(2, inner)  # NFTA_DATA_VERDICT


def expr(name: str, *parts: bytes) -> bytes:
    return nest(1, s(1, name), nest(2, *parts))  # NFTA_LIST_ELEM{NAME, DATA}


def payload(base: int, offset: int, length: int, dreg: int = 1) -> bytes:
    return expr("payload", u32(1, dreg), u32(2, base), u32(3, offset), u32(4, length))


def cmp(data: bytes, neq: bool = False, sreg: int = 1) -> bytes:
    return expr("cmp", u32(1, sreg), u32(2, 1 if neq else 0), _value(3, data))


def immediate_verdict(code: str, chain: str | None) -> bytes:
    return expr("immediate", u32(1, 0), nest(2, _verdict(code, chain)))


def immediate_data(dreg: int, data: bytes) -> bytes:
    return expr("immediate", u32(1, dreg), _value(2, data))


# --- statement parsing ----------------------------------------------------------------------------

@dataclass
class _Ctx:
    family: str
    table: str
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    msgs: list[tuple[int, int, bytes]] = field(default_factory=list)  # (type, flags, attrs)

    @property
    def addr_len(self) -> int:
        return 4 if self.family == "ip" else 16

    def ip(self, text: str) -> bytes:
        a = ipaddress.ip_address(text)
        if len(a.packed) != self.addr_len:
            raise Unsupported(f"address family mismatch: {text}")
        return a.packed

    def add(self, kind: int, flags: int, *parts: bytes) -> None:
        self.msgs.append((kind, flags, b"".join(parts)))


def _addr_offsets(ctx: _Ctx, which: str) -> tuple[int, int]:
    if ctx.family == "ip":
        return (12 if which == "saddr" else 16), 4
    return (8 if which == "saddr" else 24), 16


def _match_addr(ctx: _Ctx, which: str, value: str, neq: bool) -> list[bytes]:
    off, ln = _addr_offsets(ctx, which)
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise Unsupported(value) from None
    if net.prefixlen == ln * 8:
        return [payload(1, off, ln), cmp(ctx.ip(value.split("/")[0]), neq)]
    if net.prefixlen % 8:
        raise Unsupported(f"non byte-aligned prefix {value}")
    nbytes = net.prefixlen // 8
    return [payload(1, off, nbytes), cmp(net.network_address.packed[:nbytes], neq)]


_ADDR = r"(?:[0-9.]+|[0-9a-fA-F:]+:[0-9a-fA-F:.]*)"


def _rule_exprs(ctx: _Ctx, rule: str) -> tuple[list[bytes], bytes]:
    """Expressions (and user data) for one rule body, or :class:`Unsupported`."""
    udata = b""
    m = re.fullmatch(r'(.*) comment "([^"]*)"', rule)
    if m:
        rule, text = m.group(1), m.group(2).encode() + b"\0"
        udata = bytes([0, len(text)]) + text  # NFTNL_UDATA_RULE_COMMENT
    ipx = ctx.family
    out: list[bytes] = []
    rest = rule.split()
    while rest:
        tok = rest[0]
        if tok == ipx and len(rest) >= 3 and rest[1] in ("saddr", "daddr"):
            which = rest[1]
            if rest[2] == "!=":
                out += _match_addr(ctx, which, rest[3], True)
                rest = rest[4:]
            elif rest[2].startswith("@"):
                off, ln = _addr_offsets(ctx, which)
                out += [payload(1, off, ln), expr("lookup", s(1, rest[2][1:]), u32(2, 1))]
                rest = rest[3:]
            elif re.fullmatch(_ADDR + r"(/\d+)?", rest[2]):
                out += _match_addr(ctx, which, rest[2], False)
                rest = rest[3:]
            else:
                raise Unsupported(rule)
        elif tok in PROTOS and len(rest) >= 3 and rest[1] == "dport":
            out += [expr("meta", u32(2, 16), u32(1, 1)), cmp(bytes([PROTOS[tok]])),
                    payload(2, 2, 2), cmp(struct.pack("!H", int(rest[2])))]
            rest = rest[3:]
        elif tok == "meta" and len(rest) >= 3 and rest[1] == "l4proto" and rest[2] in PROTOS:
            out += [expr("meta", u32(2, 16), u32(1, 1)), cmp(bytes([PROTOS[rest[2]]]))]
            rest = rest[3:]
        elif tok in ("jump", "goto") and len(rest) == 2:
            out.append(immediate_verdict(tok, rest[1]))
            rest = []
        elif tok == "drop" and len(rest) == 1:
            out.append(immediate_verdict("drop", None))
            rest = []
        elif tok == "dnat" and len(rest) == 3 and rest[1] == "to":
            host, _, port = rest[2].rpartition(":")
            host = host.strip("[]")
            fam = FAMILIES[ctx.family]
            out += [immediate_data(1, ctx.ip(host)), immediate_data(2, struct.pack("!H", int(port))),
                    expr("nat", u32(1, 1), u32(2, fam), u32(3, 1), u32(5, 2), u32(7, 2))]
            rest = []
        elif tok == "update" and " ".join(rest[2:]) == f"{{ {ipx} saddr }}" and rest[1].startswith("@"):
            off, ln = _addr_offsets(ctx, "saddr")
            out += [payload(1, off, ln), expr("dynset", s(1, rest[1][1:]), u32(3, 1), u32(4, 1))]
            rest = []
        elif tok == "numgen":
            out += _numgen_vmap(ctx, " ".join(rest))
            rest = []
        else:
            raise Unsupported(rule)
    return out, udata


def _numgen_vmap(ctx: _Ctx, text: str) -> list[bytes]:
    m = re.fullmatch(r"numgen random mod (\d+) vmap \{ (.*) \}", text)
    if not m:
        raise Unsupported(text)
    mod = int(m.group(1))
    elems = []
    for item in m.group(2).split(" , "):
        km = re.fullmatch(r"(\d+) : (goto|jump) (\S+)", item.strip())
        if not km:
            raise Unsupported(text)
        elems.append((int(km.group(1)), km.group(2), km.group(3)))
    set_id = next(ctx.ids)
    # A concrete, never reused name: with "__map%d" the kernel scans every set of the table
    # for a free number, which is quadratic over a full sync.
    name = f"__map_sn{_TOKEN}_{next(_ANON)}"
    host_order = struct.pack("=I", 1)  # NFTNL_UDATA_SET_KEYBYTEORDER = host endian
    ctx.add(NEWSET, F_CREATE, s(1, ctx.table), s(2, name), u32(3, SET_ANON_CONST_MAP), u32(4, TYPE_INTEGER),
            u32(5, 4), u32(6, NFT_DATA_VERDICT), u32(10, set_id), nest(9, u32(1, len(elems))),
            attr(13, bytes([0, 4]) + host_order))
    items = b"".join(nest(1, nest(1, attr(1, struct.pack("=I", k))), nest(2, _verdict(code, ch)))
                     for k, code, ch in elems)
    ctx.add(NEWSETELEM, F_CREATE, s(1, ctx.table), s(2, name), u32(4, set_id), nest(3, items))
    return [expr("numgen", u32(1, 1), u32(2, mod), u32(3, 1)),
            expr("lookup", s(1, name), u32(4, set_id), u32(2, 1), u32(3, 0))]


def _elem_key(ctx: _Ctx, text: str) -> bytes:
    out = b""
    for part in (p.strip() for p in text.split(" . ")):
        if part in PROTOS:
            out += bytes([PROTOS[part], 0, 0, 0])
        elif part.isdigit():
            out += struct.pack("!H", int(part)) + b"\0\0"
        else:
            out += ctx.ip(part)
    return out


def _elements(ctx: _Ctx, body: str, with_data: bool) -> list[bytes]:
    """Encoded elements, grouped so that each group fits one netlink attribute (< 64 KiB)."""
    groups: list[bytes] = []
    items: list[bytes] = []
    size = 0
    for item in body.split(", "):
        key, _, data = item.partition(" : ")
        parts = nest(1, attr(1, _elem_key(ctx, key)))
        if with_data and data:
            code, _, chain = data.strip().partition(" ")
            if code not in VERDICTS:
                raise Unsupported(item)
            parts += nest(2, _verdict(code, chain or None))
        one = nest(1, parts)
        if size + len(one) > 60000:
            groups.append(b"".join(items))
            items, size = [], 0
        items.append(one)
        size += len(one)
    groups.append(b"".join(items))
    return groups


def _statement(ctx: _Ctx, line: str) -> None:
    t = f"{ctx.family} {ctx.table} "
    # "add set" (affinity sets) is left to nft: it records the set's properties in ways the
    # listing depends on; those syncs are rare.
    for verb in ("add chain ", "flush chain ", "delete chain ", "add rule ", "add element ", "delete element ",
                 "delete set "):
        if line.startswith(verb + t):
            rest = line[len(verb + t):]
            break
    else:
        raise Unsupported(line)
    tbl = s(1, ctx.table)
    if verb == "add chain ":
        if " " in rest:
            raise Unsupported(line)  # base chains and comments: left to nft
        ctx.add(NEWCHAIN, F_CREATE, tbl, s(3, rest))
    elif verb == "flush chain ":
        ctx.add(DELRULE, 0, tbl, s(2, rest))
    elif verb == "delete chain ":
        ctx.add(DELCHAIN, 0, tbl, s(3, rest))
    elif verb == "delete set ":
        ctx.add(DELSET, 0, tbl, s(2, rest))
    elif verb == "add rule ":
        chain, _, body = rest.partition(" ")
        exprs, udata = _rule_exprs(ctx, body)
        ctx.add(NEWRULE, F_CREATE | F_APPEND, tbl, s(2, chain), nest(4, *exprs), attr(7, udata) if udata else b"")
    else:  # elements
        m = re.fullmatch(r"(\S+) \{ (.*) \}", rest)
        if not m:
            raise Unsupported(line)
        add = verb == "add element "
        for group in _elements(ctx, m.group(2), add):
            ctx.add(NEWSETELEM if add else DELSETELEM, F_CREATE if add else 0, tbl, s(2, m.group(1)), nest(3, group))


def encode(text: str, family: str = "ip", table: str = "kube-proxy", seq: int = 1) -> tuple[bytes, list[int]]:
    """One netlink batch for ``text``; returns it and the sequence numbers that will be acked."""
    ctx = _Ctx(family, table)
    for line in text.splitlines():
        if line.strip():
            _statement(ctx, line)
    fam = FAMILIES[family]
    out = [_msg(BATCH_BEGIN, F_REQUEST, seq, 0, b"", res_id=NFNL_SUBSYS_NFTABLES)]
    seqs = []
    for i, (kind, flags, body) in enumerate(ctx.msgs, start=seq + 1):
        out.append(_msg((NFNL_SUBSYS_NFTABLES << 8) | kind, F_REQUEST | F_ACK | flags, i, fam, body))
        seqs.append(i)
    out.append(_msg(BATCH_END, F_REQUEST, seq + len(ctx.msgs) + 1, 0, b"", res_id=NFNL_SUBSYS_NFTABLES))
    return b"".join(out), seqs


def _msg(kind: int, flags: int, seq: int, family: int, body: bytes, res_id: int = 0) -> bytes:
    payload_ = struct.pack("=BBH", family, 0, socket.htons(res_id)) + body
    return struct.pack("=IHHII", 16 + len(payload_), kind, flags, seq, 0) + payload_


# --- I/O ------------------------------------------------------------------------------------------

_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class NetlinkSession:
    """A netfilter netlink socket bound inside ``netns`` (None: the current namespace)."""

    def __init__(self, netns: str | None) -> None:
        if netns is None:
            self.sock = self._open()
        else:
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                _setns(target)
                try:
                    self.sock = self._open()
                finally:
                    _setns(own)
            finally:
                os.close(own)
                os.close(target)
        self._seq = 1

    @staticmethod
    def _open() -> socket.socket:
        sk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        sk.setsockopt(socket.SOL_SOCKET, 32, 1 << 25)  # SO_SNDBUFFORCE: whole batches in one send
        sk.setsockopt(socket.SOL_SOCKET, 33, 1 << 24)  # SO_RCVBUFFORCE: room for the acks
        sk.bind((0, 0))
        sk.settimeout(60)
        return sk

    def apply(self, text: str, family: str = "ip", table: str = "kube-proxy") -> int:
        """Encode and send ``text`` as one batch (atomic); returns the number of messages. Blocking."""
        return self.send(*encode(text, family, table, self.next_seq()))

    def next_seq(self) -> int:
        return self._seq

    def send(self, batch: bytes, seqs: list[int]) -> int:
        """Send a batch made by :func:`encode` (with ``seq=next_seq()``) and wait for every ack."""
        self._seq = (seqs[-1] if seqs else self._seq) + 2
        if not seqs:
            return 0
        self.sock.send(batch)
        pending, errors = set(seqs), []
        first, last = seqs[0] - 1, seqs[-1]
        while pending:
            data = self.sock.recv(1 << 20)
            for kind, seq, err in _replies(data):
                if kind != 2 or not first <= seq <= last:  # NLMSG_ERROR: acks (0) and errors; older ones are stale
                    continue
                if err:
                    errors.append((seq, err))
                if seq == first:  # the commit itself failed
                    pending.clear()
                pending.discard(seq)
        if errors:
            seq, err = errors[0]
            raise NetlinkError(-err, f"{os.strerror(-err)} ({len(errors)} errors; first at message {seq - first}"
                               f" of {len(seqs)})")
        return len(seqs)

    def close(self) -> None:
        self.sock.close()


def _replies(data: bytes) -> Iterable[tuple[int, int, int]]:
    off = 0
    while off + 16 <= len(data):
        ln, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
        err = struct.unpack_from("=i", data, off + 16)[0] if kind == 2 else 0
        yield kind, seq, err
        off += (ln + 3) & ~3
        if ln == 0:
            break
