"""Direct nf_tables netlink writer for the statements the nftables renderer emits.

Why: every ``nft -f`` run dumps the kernel's chains and sets into its cache before it
does anything, and with ~100k chains that dump alone takes most of a second. A sync
that changes one endpoint only needs a handful of netlink messages; this module builds
them itself.

Pure part: :func:`encode` turns transaction text (the subset of nft syntax that
:mod:`render_nftables` writes for per-service objects) into one netlink batch, or raises
:class:`Unsupported` (the caller then falls back to ``nft -f``). The shapes a full sync
writes by the ten thousand (service chain rules, endpoint map elements) have fast paths.
I/O part: :class:`NetlinkSession`, a netfilter netlink socket opened inside a network
namespace. Batch messages ask for no ACK (100k ACKs would overflow the socket); a GETGEN
request sent right after the batch is the barrier: the kernel answers it only after it
has processed (and reported any error of) the whole batch.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import ipaddress
import itertools
import os
import re
import socket
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
BATCH_BEGIN, BATCH_END = 0x10, 0x11
GETCHAIN, NEWCHAIN, DELCHAIN, NEWRULE, DELRULE, NEWSET, GETSET, DELSET = 4, 3, 5, 6, 8, 9, 10, 11
NEWSETELEM, DELSETELEM, GETGEN = 12, 14, 16
F_REQUEST, F_ACK, F_DUMP, F_CREATE, F_APPEND = 0x1, 0x4, 0x300, 0x400, 0x800
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


@functools.lru_cache(maxsize=256)
def payload(base: int, offset: int, length: int, dreg: int = 1) -> bytes:
    return expr("payload", u32(1, dreg), u32(2, base), u32(3, offset), u32(4, length))


def cmp(data: bytes, neq: bool = False, sreg: int = 1) -> bytes:
    return expr("cmp", u32(1, sreg), u32(2, 1 if neq else 0), _value(3, data))


@functools.lru_cache(maxsize=4096)
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
        try:
            return self.pton(text)
        except OSError:
            raise Unsupported(f"not an {self.family} address: {text}") from None

    @functools.cached_property
    def pton(self) -> Callable[[str], bytes]:
        return functools.partial(socket.inet_pton, socket.AF_INET if self.addr_len == 4 else socket.AF_INET6)

    def add(self, kind: int, flags: int, *parts: bytes) -> None:
        self.msgs.append((kind, flags, b"".join(parts)))

    @functools.cached_property
    def tbl(self) -> bytes:
        return s(1, self.table)


def _addr_offsets(ctx: _Ctx, which: str) -> tuple[int, int]:
    if ctx.family == "ip":
        return (12 if which == "saddr" else 16), 4
    return (8 if which == "saddr" else 24), 16


def _match_addr(ctx: _Ctx, which: str, value: str, neq: bool) -> list[bytes]:
    off, ln = _addr_offsets(ctx, which)
    if "/" not in value:
        return [payload(1, off, ln), cmp(ctx.ip(value), neq)]
    return list(_match_net(ctx.family, off, ln, value, neq))


@functools.lru_cache(maxsize=256)
def _match_net(family: str, off: int, ln: int, value: str, neq: bool) -> tuple[bytes, ...]:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise Unsupported(value) from None
    if net.max_prefixlen != ln * 8:
        raise Unsupported(f"address family mismatch: {value}")
    if net.prefixlen == ln * 8:
        return payload(1, off, ln), cmp(net.network_address.packed, neq)
    if net.prefixlen % 8:
        raise Unsupported(f"non byte-aligned prefix {value}")
    nbytes = net.prefixlen // 8
    return payload(1, off, nbytes), cmp(net.network_address.packed[:nbytes], neq)


_ADDR = r"(?:[0-9.]+|[0-9a-fA-F:]+:[0-9a-fA-F:.]*)"


_DNAT_MAP = re.compile(r"meta l4proto (\w+) dnat (ip6?) addr \. port to numgen random mod (\d+) offset (\d+) "
                       r"map @(\S+)")
_MASQ = re.compile(r"(ip6?) daddr (\S+) \1 saddr != (\S+) jump (\S+)")


def _rule_exprs(ctx: _Ctx, rule: str) -> tuple[list[bytes], bytes]:
    """Expressions (and user data) for one rule body, or :class:`Unsupported`."""
    m = _DNAT_MAP.fullmatch(rule)
    if m and m.group(1) in PROTOS and m.group(2) == ctx.family:
        head, mid = _numgen_template()
        return [_l4proto(m.group(1)), head + _BE32.pack(int(m.group(3))) + mid + _BE32.pack(int(m.group(4))),
                _lookup_data(m.group(5)), _nat_from_map(ctx.family)], b""
    m = _MASQ.fullmatch(rule)
    if m and m.group(1) == ctx.family:
        off, ln = _addr_offsets(ctx, "daddr")
        return [payload(1, off, ln), _cmp_prefix(False, ln) + ctx.ip(m.group(2)),
                *_match_addr(ctx, "saddr", m.group(3), True), immediate_verdict("jump", m.group(4))], b""
    cached = _RULE_CACHE.get((ctx.family, rule))
    if cached is not None:
        return cached
    before = len(ctx.msgs)
    out = _generic_rule_exprs(ctx, rule)
    # (a rule that brought messages of its own, an anonymous map, must be encoded anew each time)
    if len(ctx.msgs) == before and len(_RULE_CACHE) < 4096:
        _RULE_CACHE[(ctx.family, rule)] = out
    return out


_RULE_CACHE: dict[tuple[str, str], tuple[list[bytes], bytes]] = {}
_BE32 = struct.Struct("!I")


@functools.cache
def _numgen_template() -> tuple[bytes, bytes]:
    """``numgen random mod M offset O`` split around M and O (both the last 4 bytes of their attribute)."""
    full = expr("numgen", u32(1, 1), u32(2, 0x5A5A5A5A), u32(3, 1), u32(4, 0xA5A5A5A5))
    i, j = full.index(b"\x5a" * 4), full.index(b"\xa5" * 4)
    return full[:i], full[i + 4:j]


@functools.lru_cache(maxsize=4096)
def _lookup_data(name: str) -> bytes:
    return expr("lookup", s(1, name), u32(2, 1), u32(3, 1))


@functools.lru_cache(maxsize=4)
def _nat_from_map(family: str) -> bytes:
    proto_reg = 8 + (4 if family == "ip" else 16) // 4  # the port follows the address in 32-bit registers
    return expr("nat", u32(1, 1), u32(2, FAMILIES[family]), u32(3, 1), u32(5, proto_reg))


@functools.lru_cache(maxsize=16)
def _cmp_prefix(neq: bool, n: int) -> bytes:
    """``cmp`` of ``n`` (a multiple of 4) data bytes, without the data: append them."""
    return cmp(b"\0" * n, neq)[:-n]


@functools.lru_cache(maxsize=64)
def _l4proto(proto: str) -> bytes:
    return expr("meta", u32(2, 16), u32(1, 1)) + cmp(bytes([PROTOS[proto]]))


def _generic_rule_exprs(ctx: _Ctx, rule: str) -> tuple[list[bytes], bytes]:
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
        elif tok == "fib" and rest[1:4] in (["saddr", "type", "local"], ["daddr", "type", "local"]):
            flag = 1 if rest[1] == "saddr" else 2  # NFTA_FIB_F_SADDR / _DADDR
            out += [expr("fib", u32(1, 1), u32(2, 3), u32(3, flag)),  # result: address type
                    cmp(struct.pack("=I", 2))]  # RTN_LOCAL, host order
            rest = rest[4:]
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
    if " " not in text:  # one address (cluster-ips, nodeport-ips)
        return ctx.ip(text)
    out = b""
    for part in text.split(" . "):
        if part in PROTOS:
            out += bytes([PROTOS[part], 0, 0, 0])
        elif part.isdigit():
            out += struct.pack("!H", int(part)) + b"\0\0"
        else:
            out += ctx.ip(part)
    return out


ENDPOINT_MAP_PREFIX = "service-endpoints-"
_HDR = struct.Struct("=HH")


_H4 = struct.Struct("=HHHH")
_H6 = struct.Struct("=HHHHHH")


_EP_KEY = struct.Struct("=HHHHHHI")  # element{ key{ value: u32 } } headers and the key


# a whole IPv4 endpoint map element: element{key{value: u32}} headers, the key (host order),
# data{value} headers, address, port (network order), padding
_EP4 = struct.Struct("=12sI8s4s2s2x")
_EP4_KEY_HDRS = _H6.pack(32, 1 | NESTED, 12, 1 | NESTED, 8, 1)
_EP4_DATA_HDRS = _H4.pack(16, 2 | NESTED, 12, 1)


@functools.lru_cache(maxsize=1024)
def _port16(port: int) -> bytes:
    return port.to_bytes(2, "big")


class EndpointLike(Protocol):
    ip: str
    port: int


class _Ep(NamedTuple):
    ip: str
    port: int


def _endpoint_elems(ctx: _Ctx, items: Iterable[tuple[int, EndpointLike]]) -> list[bytes]:
    """Endpoint map elements ``key : ip . port`` from ``(key, endpoint)`` pairs: host-order
    integer key, address . port data.

    The hot path of a full sync (10^5 elements): one ``struct`` call per IPv4 element."""
    pton, nested = ctx.pton, NESTED
    if ctx.addr_len == 4:
        pk, kh, dh = _EP4.pack, _EP4_KEY_HDRS, _EP4_DATA_HDRS
        return [pk(kh, k, dh, pton(ep.ip), _port16(ep.port)) for k, ep in items]
    out = []
    for k, ep in items:
        v = ctx.ip(ep.ip) + ep.port.to_bytes(2, "big") + b"\0\0"
        n = len(v)
        out.append(_EP_KEY.pack(24 + n, 1 | nested, 12, 1 | nested, 8, 1, k) + _H4.pack(8 + n, 2 | nested, 4 + n, 1) + v)
    return out


def _parse_endpoint_item(item: str) -> tuple[int, _Ep]:
    key, _, data = item.partition(" : ")
    ip, _, port = data.partition(" . ")
    return int(key), _Ep(ip, int(port))


def _elem(ctx: _Ctx, item: str, with_data: bool) -> bytes:
    key, _, data = item.partition(" : ")
    kb = _elem_key(ctx, key)
    n = len(kb)  # a multiple of 4: addresses, and protocols and ports padded to 4 bytes
    if not (with_data and data):
        return _H6.pack(12 + n, 1 | NESTED, 8 + n, 1 | NESTED, 4 + n, 1) + kb
    code, _, chain = data.strip().partition(" ")
    if code not in VERDICTS:
        raise Unsupported(item)
    vd = nest(2, _verdict(code, chain or None))
    return _H6.pack(12 + n + len(vd), 1 | NESTED, 8 + n, 1 | NESTED, 4 + n, 1) + kb + vd


_PROTO_KEY = {p: bytes([v, 0, 0, 0]) for p, v in PROTOS.items()}
_VCODE = {c: _HDR.pack(8, 1) + struct.pack("!i", v) for c, v in VERDICTS.items()}  # NFTA_VERDICT_CODE


def _verdict_elems(ctx: _Ctx, items: list[str]) -> list[bytes]:
    """Verdict map elements ``[addr . ]proto . port : goto|jump chain`` (the dispatch maps of a
    full sync, 10^4 elements): the same bytes as :func:`_elem`, without the generic parsing."""
    pton, pk, pk6, protos, codes = ctx.pton, _HDR.pack, _H6.pack, _PROTO_KEY, _VCODE
    out = []
    for item in items:
        key, _, data = item.partition(" : ")
        code, _, chain = data.partition(" ")
        parts = key.split(" . ")
        if len(parts) == 3:
            kb = pton(parts[0]) + protos[parts[1]] + int(parts[2]).to_bytes(2, "big") + b"\0\0"
        else:
            proto, port = parts  # (a shape outside these two raises ValueError: the general path)
            kb = protos[proto] + int(port).to_bytes(2, "big") + b"\0\0"
        inner = codes[code]
        if chain:
            cb = chain.encode() + b"\0"
            inner += pk(4 + len(cb), 2) + cb + b"\0" * (-len(cb) % 4)  # NFTA_VERDICT_CHAIN
        n, m = len(kb), len(inner)
        out.append(pk6(20 + n + m, 1 | NESTED, 8 + n, 1 | NESTED, 4 + n, 1) + kb
                   + pk(8 + m, 2 | NESTED) + pk(4 + m, 2 | NESTED) + inner)
    return out


def _encoded_elements(ctx: _Ctx, name: str, items: list[str], with_data: bool) -> list[bytes]:
    pton = ctx.pton
    if with_data and (" : goto " in items[0] or " : jump " in items[0]):
        try:
            return _verdict_elems(ctx, items)
        except (KeyError, ValueError, OSError):
            pass  # not only this shape: the general path
    if name.startswith(ENDPOINT_MAP_PREFIX):
        if with_data:
            return _endpoint_elems(ctx, map(_parse_endpoint_item, items))
        return [_EP_KEY.pack(16, 1 | NESTED, 12, 1 | NESTED, 8, 1, int(item)) for item in items]  # keys only
    if " : " not in items[0]:
        try:  # sets of addresses and address pairs
            pk6 = _H6.pack
            out = []
            for item in items:
                kb = b"".join(map(pton, item.split(" . "))) if " " in item else pton(item)
                n = len(kb)
                out.append(pk6(12 + n, 1 | NESTED, 8 + n, 1 | NESTED, 4 + n, 1) + kb)
            return out
        except OSError:
            pass  # not only addresses: the general path
    return [_elem(ctx, item, with_data) for item in items]


def _grouped(ctx: _Ctx, name: str, encoded: list[bytes]) -> list[Message]:
    """NEWSETELEM messages for already encoded elements, each under 64 KiB of attributes."""
    if not encoded:
        return []
    head = ctx.tbl + s(2, name)
    lens = set(map(len, encoded))
    if len(lens) == 1:  # the usual case: all elements of one size, groups by count
        per = max(1, 60000 // lens.pop())
        return [(NEWSETELEM, F_CREATE, head + nest(3, b"".join(encoded[i:i + per])))
                for i in range(0, len(encoded), per)]
    out: list[Message] = []
    items: list[bytes] = []
    size = 0
    for one in encoded:
        if size + len(one) > 60000:
            out.append((NEWSETELEM, F_CREATE, head + nest(3, b"".join(items))))
            items, size = [], 0
        items.append(one)
        size += len(one)
    out.append((NEWSETELEM, F_CREATE, head + nest(3, b"".join(items))))
    return out


def bulk_messages(family: str, table: str,
                  endpoint_maps: Mapping[str, Iterable[tuple[int, Iterable[EndpointLike]]]],
                  pair_set: str, addresses: Iterable[str]) -> list[Message]:
    """Elements added straight from data: endpoint maps (runs of endpoints, the i-th of a run
    under key ``base + i``, as ``key : ip . port``) and an ``addr . addr`` set with one pair
    per address (the hairpin set). No text in between."""
    ctx = _Ctx(family, table)
    out: list[Message] = []
    pton = ctx.pton
    for name, runs in endpoint_maps.items():
        pairs = itertools.chain.from_iterable(enumerate(eps, base) for base, eps in runs)
        out += _grouped(ctx, name, _endpoint_elems(ctx, pairs))
    n = 2 * ctx.addr_len
    pair = struct.Struct(f"=12s{n // 2}s{n // 2}s").pack
    head = _H6.pack(12 + n, 1 | NESTED, 8 + n, 1 | NESTED, 4 + n, 1)
    out += _grouped(ctx, pair_set, [pair(head, b, b) for b in map(pton, addresses)])
    return out


def _elements(ctx: _Ctx, name: str, body: str, with_data: bool) -> list[bytes]:
    """Encoded elements, grouped so that each group fits one netlink attribute (< 64 KiB)."""
    groups: list[bytes] = []
    items: list[bytes] = []
    size = 0
    for one in _encoded_elements(ctx, name, body.split(", "), with_data):
        if size + len(one) > 60000:
            groups.append(b"".join(items))
            items, size = [], 0
        items.append(one)
        size += len(one)
    groups.append(b"".join(items))
    return groups


_VERBS = ("add chain ", "flush chain ", "delete chain ", "add rule ", "add element ", "delete element ",
          "delete set ", "delete map ", "flush set ", "flush map ")


def _add_rule(ctx: _Ctx, rest: str) -> None:
    """``add rule <table> `` + ``rest`` (``chain body``)."""
    chain, _, body = rest.partition(" ")
    exprs, udata = _rule_exprs(ctx, body)
    ctx.msgs.append((NEWRULE, F_CREATE | F_APPEND,
                     ctx.tbl + s(2, chain) + nest(4, *exprs) + (attr(7, udata) if udata else b"")))


def _add_chain(ctx: _Ctx, name: str) -> None:
    ctx.msgs.append((NEWCHAIN, F_CREATE, ctx.tbl + s(3, name)))


def _statement(ctx: _Ctx, line: str) -> None:
    t = f"{ctx.family} {ctx.table} "
    # "add set"/"add map" are left to nft: it records the set's properties in ways the
    # listing depends on.
    verb = line[:line.index(" ", line.index(" ") + 1) + 1] if line.count(" ") >= 2 else line
    if verb not in _VERBS or not line.startswith(t, len(verb)):
        raise Unsupported(line)
    rest = line[len(verb) + len(t):]
    tbl = ctx.tbl
    if verb == "add rule ":
        _add_rule(ctx, rest)
    elif verb == "add chain ":
        if " " in rest:
            raise Unsupported(line)  # base chains and comments: left to nft
        _add_chain(ctx, rest)
    elif verb == "flush chain ":
        ctx.add(DELRULE, 0, tbl, s(2, rest))
    elif verb == "delete chain ":
        ctx.add(DELCHAIN, 0, tbl, s(3, rest))
    elif verb in ("delete set ", "delete map "):
        ctx.add(DELSET, 0, tbl, s(2, rest))
    elif verb in ("flush set ", "flush map "):
        ctx.add(DELSETELEM, 0, tbl, s(2, rest))  # no element list: every element
    else:  # elements
        name, _, body = rest.partition(" ")
        if not (body.startswith("{ ") and body.endswith(" }")):
            raise Unsupported(line)
        add = verb == "add element "
        for group in _elements(ctx, name, body[2:-2], add):
            ctx.add(NEWSETELEM if add else DELSETELEM, F_CREATE if add else 0, tbl, s(2, name), nest(3, group))


Message = tuple[int, int, bytes]  # (nf_tables message type, flags, attributes)


def encode(text: str, family: str = "ip", table: str = "kube-proxy", seq: int = 1,
           extra: Iterable[Message] = ()) -> tuple[bytes, list[int]]:
    """One netlink batch for ``text`` (then ``extra``); returns it and the sequence numbers of its messages.

    The messages ask for no ACK: the kernel reports only errors (see :meth:`NetlinkSession.send`).
    """
    ctx = _Ctx(family, table)
    add_rule, add_chain = f"add rule {family} {table} ", f"add chain {family} {table} "
    nr, nc = len(add_rule), len(add_chain)
    for line in text.splitlines():
        # the two statements a full sync is made of, 10^4 times each, skip _statement's verb parsing
        if line.startswith(add_rule):
            _add_rule(ctx, line[nr:])
        elif line.startswith(add_chain) and " " not in line[nc:]:
            _add_chain(ctx, line[nc:])
        elif line.strip():
            _statement(ctx, line)
    ctx.msgs.extend(extra)
    fam = FAMILIES[family]
    head = _NFGEN.pack(fam, 0, 0)
    out = [_msg(BATCH_BEGIN, F_REQUEST, seq, 0, b"", res_id=NFNL_SUBSYS_NFTABLES)]
    pack = _NLMSG.pack
    n = len(ctx.msgs)
    for i, (kind, flags, body) in enumerate(ctx.msgs, start=seq + 1):
        out.append(pack(20 + len(body), (NFNL_SUBSYS_NFTABLES << 8) | kind, F_REQUEST | flags, i, 0) + head + body)
    out.append(_msg(BATCH_END, F_REQUEST, seq + n + 1, 0, b"", res_id=NFNL_SUBSYS_NFTABLES))
    return b"".join(out), list(range(seq + 1, seq + n + 1))


_NLMSG = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")


def _msg(kind: int, flags: int, seq: int, family: int, body: bytes, res_id: int = 0) -> bytes:
    payload_ = _NFGEN.pack(family, 0, socket.htons(res_id)) + body
    return _NLMSG.pack(16 + len(payload_), kind, flags, seq, 0) + payload_


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
        self._sndbuf = 0

    @staticmethod
    def _open() -> socket.socket:
        sk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        sk.setsockopt(socket.SOL_SOCKET, 33, 1 << 24)  # SO_RCVBUFFORCE: room for error reports
        sk.bind((0, 0))
        sk.settimeout(60)
        return sk

    def apply(self, text: str, family: str = "ip", table: str = "kube-proxy") -> int:
        """Encode and send ``text`` as one batch (atomic); returns the number of messages. Blocking."""
        return self.send(*encode(text, family, table, self.next_seq()))

    def next_seq(self) -> int:
        return self._seq

    def reserve(self, seqs: list[int]) -> None:
        """Skip the sequence numbers of a batch encoded but not sent yet (to encode the next one)."""
        if seqs:
            self._seq = max(self._seq, seqs[-1] + 3)  # batch end, barrier

    def send(self, batch: bytes, seqs: list[int]) -> int:
        """Send a batch made by :func:`encode` (with ``seq=next_seq()``); wait until it is processed.

        A GETGEN request (with ACK) follows the batch; its answer arrives after every error
        the batch produced, so errors for the batch's sequence numbers, or for the batch
        itself (a failed commit), are all collected by then.
        """
        barrier = (seqs[-1] if seqs else self._seq) + 2
        self._seq = max(self._seq, barrier + 1)
        if not seqs:
            return 0
        need = len(batch) + 4096
        if need > self._sndbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, 32, need)  # SO_SNDBUFFORCE: the batch goes in one send
            self._sndbuf = need
        self.sock.send(batch)
        self.sock.send(_msg((NFNL_SUBSYS_NFTABLES << 8) | GETGEN, F_REQUEST | F_ACK, barrier, 0, b""))
        first, last = seqs[0] - 1, seqs[-1] + 1
        errors: list[tuple[int, int]] = []
        done = False
        while not done:
            try:
                data = self.sock.recv(1 << 20)
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # too many error reports: the batch failed anyway
                    self._drain(barrier)
                    raise NetlinkError(errno.ENOBUFS, "batch rejected (error reports overflowed)") from None
                raise
            for kind, seq, err in _replies(data):
                if seq == barrier:
                    done = done or kind == 2  # the GETGEN ACK comes last
                elif kind == 2 and err and first <= seq <= last:
                    errors.append((seq, err))
        if errors:
            seq, err = errors[0]
            where = "the commit" if seq in (first, last) else f"message {seq - first} of {len(seqs)}"
            raise NetlinkError(-err, f"{os.strerror(-err)} ({len(errors)} errors; first at {where})")
        return len(seqs)

    def names(self, what: str, family: str = "ip", table: str = "kube-proxy") -> list[str] | None:
        """Names of the chains (``what="chains"``) or sets and maps (``"sets"``) of ``table``,
        from a netlink dump (declarations only: no rules, no elements), or None if there is no
        such table. Blocking."""
        kind, name_attr = (GETCHAIN, 3) if what == "chains" else (GETSET, 2)
        seq = self._seq
        self._seq += 1
        self.sock.send(_msg((NFNL_SUBSYS_NFTABLES << 8) | kind, F_REQUEST | F_DUMP, seq, FAMILIES[family],
                            s(1, table)))
        out: list[str] = []
        while True:
            data = self.sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                ln, typ, _flags, mseq, _pid = _NLMSG.unpack_from(data, off)
                if ln < 16:
                    break
                if mseq == seq:
                    if typ == 3:  # NLMSG_DONE
                        return out
                    if typ == 2:  # NLMSG_ERROR
                        err = struct.unpack_from("=i", data, off + 16)[0]
                        if err == -errno.ENOENT:
                            return None
                        raise NetlinkError(-err, f"dump failed: {os.strerror(-err)}")
                    attrs = _attrs(data[off + 20:off + ln])
                    if attrs.get(1, b"").rstrip(b"\0").decode() == table and name_attr in attrs:
                        out.append(attrs[name_attr].rstrip(b"\0").decode())
                off += (ln + 3) & ~3

    def _drain(self, barrier: int) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    continue
                return
            if any(seq == barrier and kind == 2 for kind, seq, _ in _replies(data)):
                return

    def close(self) -> None:
        self.sock.close()


def _attrs(data: bytes) -> dict[int, bytes]:
    """Top-level netlink attributes of a message body: type (nested flag cleared) -> payload."""
    out: dict[int, bytes] = {}
    off = 0
    while off + 4 <= len(data):
        ln, kind = _HDR.unpack_from(data, off)
        if ln < 4:
            break
        out[kind & 0x3FFF] = data[off + 4:off + ln]
        off += (ln + 3) & ~3
    return out


def _replies(data: bytes) -> Iterable[tuple[int, int, int]]:
    off = 0
    while off + 16 <= len(data):
        ln, kind, _flags, seq, _pid = struct.unpack_from("=IHHII", data, off)
        err = struct.unpack_from("=i", data, off + 16)[0] if kind == 2 else 0
        yield kind, seq, err
        off += (ln + 3) & ~3
        if ln == 0:
            break
