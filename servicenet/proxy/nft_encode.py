"""nf_tables netlink encoding of :mod:`nft_commands` (pure: bytes out, no sockets).

Why: every ``nft -f`` run dumps the kernel's chains and sets into its cache before it does
anything, and with ~100k chains that dump alone takes most of a second. A sync that changes
one endpoint needs a handful of netlink messages; this module builds them from the typed
commands directly (no text in between). :func:`encode` turns commands into one batch, or
raises :class:`Unsupported` for what is left to ``nft`` (set declarations, anonymous interval
sets); the caller then renders the same commands as text. The shapes a full sync writes by
the ten thousand (endpoint map, dispatch map, address set elements) have fast paths, checked
against the general element encoder by tests. :func:`bulk_messages` encodes endpoint map and
hairpin elements straight from the model's data.

Batch messages ask for no ACK: the session (:mod:`nft_socket`) follows each batch with a
GETGEN request as a barrier.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import os
import socket
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from servicenet.proxy.nft_commands import (
    AddAffinitySet,
    AddChain,
    AddElements,
    Addr,
    AddrInSet,
    AddrNotInRanges,
    AddrPair,
    AddRule,
    Command,
    DeleteChain,
    DeleteElements,
    DeleteSet,
    Dnat,
    DnatMap,
    Expr,
    FibLocal,
    FlushChain,
    FlushSet,
    Key,
    L4Proto,
    NumgenVmap,
    PortKey,
    Rule,
    Target,
    UpdateSet,
    Value,
    Verdict,
)

NFNL_SUBSYS_NFTABLES = 10
BATCH_BEGIN, BATCH_END = 0x10, 0x11
GETCHAIN, NEWCHAIN, DELCHAIN, NEWRULE, GETRULE, DELRULE, NEWSET, GETSET, DELSET = 4, 3, 5, 6, 7, 8, 9, 10, 11
NEWSETELEM, GETSETELEM, DELSETELEM, GETGEN = 12, 13, 14, 16
GETTABLE = 1
F_REQUEST, F_ACK, F_DUMP, F_CREATE, F_APPEND = 0x1, 0x4, 0x300, 0x400, 0x800
NESTED = 0x8000
FAMILIES = {"ip": 2, "ip6": 10}
VERDICTS = {"drop": 0, "accept": 1, "jump": -3, "goto": -4, "return": -5}
PROTOS = {"tcp": 6, "udp": 17, "sctp": 132}
SET_ANON_CONST_MAP = 0x1 | 0x2 | 0x8
NFT_DATA_VERDICT = 0xFFFFFF00
TYPE_INTEGER = 4

_TOKEN = os.urandom(4).hex()  # per process: anonymous map names stay unique across proxy restarts
_ANON = itertools.count(1)

Message = tuple[int, int, bytes]  # (nf_tables message type, flags, attributes)


class Unsupported(ValueError):
    """A command this encoder leaves to ``nft -f``."""


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


# --- the encoding context -------------------------------------------------------------------------

@dataclass
class _Ctx:
    family: str
    table: str
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    msgs: list[Message] = field(default_factory=list)

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


# --- rule expressions -----------------------------------------------------------------------------

def _addr_offsets(family: str, which: str) -> tuple[int, int]:
    if which not in ("saddr", "daddr"):
        raise Unsupported(f"address selector {which!r}")
    if family == "ip":
        return (12 if which == "saddr" else 16), 4
    return (8 if which == "saddr" else 24), 16


@functools.lru_cache(maxsize=256)
def _match_net(family: str, which: str, value: str, neq: bool) -> bytes:
    off, ln = _addr_offsets(family, which)
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise Unsupported(value) from None
    if net.max_prefixlen != ln * 8:
        raise Unsupported(f"address family mismatch: {value}")
    if net.prefixlen % 8:
        raise Unsupported(f"non byte-aligned prefix {value}")
    nbytes = net.prefixlen // 8
    return payload(1, off, nbytes) + cmp(net.network_address.packed[:nbytes], neq)


def _e_addr(ctx: _Ctx, e: Addr) -> bytes:
    if "/" in e.value:
        return _match_net(ctx.family, e.which, e.value, e.neq)
    off, ln = _addr_offsets(ctx.family, e.which)
    return payload(1, off, ln) + _cmp_prefix(e.neq, ln) + ctx.ip(e.value)


def _e_addr_in_set(ctx: _Ctx, e: AddrInSet) -> bytes:
    off, ln = _addr_offsets(ctx.family, e.which)
    return payload(1, off, ln) + expr("lookup", s(1, e.set), u32(2, 1))


def _e_unsupported(ctx: _Ctx, e: Expr) -> bytes:
    raise Unsupported(e.text(ctx.family))


@functools.lru_cache(maxsize=64)
def _l4proto(proto: str) -> bytes:
    return expr("meta", u32(2, 16), u32(1, 1)) + cmp(bytes([PROTOS[proto]]))


def _e_l4proto(ctx: _Ctx, e: L4Proto) -> bytes:
    return _l4proto(e.proto)


@functools.lru_cache(maxsize=4)
def _fib_local(which: str) -> bytes:
    flag = 1 if which == "saddr" else 2  # NFTA_FIB_F_SADDR / _DADDR
    return (expr("fib", u32(1, 1), u32(2, 3), u32(3, flag))  # result: address type
            + cmp(struct.pack("=I", 2)))  # RTN_LOCAL, host order


def _e_fib(ctx: _Ctx, e: FibLocal) -> bytes:
    if e.which not in ("saddr", "daddr"):
        raise Unsupported(e.text(ctx.family))
    return _fib_local(e.which)


def _e_verdict(ctx: _Ctx, e: Verdict) -> bytes:
    return immediate_verdict(e.code, e.chain)


def _e_dnat(ctx: _Ctx, e: Dnat) -> bytes:
    return (immediate_data(1, ctx.ip(e.ip)) + immediate_data(2, struct.pack("!H", e.port))
            + expr("nat", u32(1, 1), u32(2, FAMILIES[ctx.family]), u32(3, 1), u32(5, 2), u32(7, 2)))


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


def _e_dnat_map(ctx: _Ctx, e: DnatMap) -> bytes:
    return b"".join(dnat_map_parts(ctx.family, e))


def dnat_map_parts(family: str, e: DnatMap, nested: bool = True) -> tuple[bytes, bytes, bytes]:
    """The three expressions of a :class:`DnatMap` (numgen, lookup, nat), each a whole
    NFTA_LIST_ELEM; with ``nested=False`` the numgen one without NLA_F_NESTED flags (the others
    repeat across rules: callers keep their own forms of them)."""
    head, mid = _numgen_template() if nested else _numgen_template_flat()
    return (head + _BE32.pack(e.mod) + mid + _BE32.pack(e.offset), _lookup_data(e.map), _nat_from_map(family))


@functools.cache
def _numgen_template_flat() -> tuple[bytes, bytes]:
    """:func:`_numgen_template` without NLA_F_NESTED flags (only headers change: the split
    points stay)."""
    head, mid = _numgen_template()
    return strip_nested(head + b"\x5a" * 4 + mid + b"\xa5" * 4)[:len(head)], \
        strip_nested(head + b"\x5a" * 4 + mid + b"\xa5" * 4)[len(head) + 4:len(head) + 4 + len(mid)]


@functools.lru_cache(maxsize=16)
def _cmp_prefix(neq: bool, n: int) -> bytes:
    """``cmp`` of ``n`` (a multiple of 4) data bytes, without the data: append them."""
    return cmp(b"\0" * n, neq)[:-n]


def _e_update(ctx: _Ctx, e: UpdateSet) -> bytes:
    off, ln = _addr_offsets(ctx.family, "saddr")
    return payload(1, off, ln) + expr("dynset", s(1, e.set), u32(3, 1), u32(4, 1))


def _e_numgen_vmap(ctx: _Ctx, e: NumgenVmap) -> bytes:
    """An anonymous verdict map, created in this batch before the rule that uses it."""
    set_id = next(ctx.ids)
    # A concrete, never reused name: with "__map%d" the kernel scans every set of the table
    # for a free number, which is quadratic over a full sync.
    name = f"__map_sn{_TOKEN}_{next(_ANON)}"
    host_order = struct.pack("=I", 1)  # NFTNL_UDATA_SET_KEYBYTEORDER = host endian
    n = len(e.targets)
    ctx.add(NEWSET, F_CREATE, ctx.tbl, s(2, name), u32(3, SET_ANON_CONST_MAP), u32(4, TYPE_INTEGER),
            u32(5, 4), u32(6, NFT_DATA_VERDICT), u32(10, set_id), nest(9, u32(1, n)),
            attr(13, bytes([0, 4]) + host_order))
    items = b"".join(nest(1, nest(1, attr(1, struct.pack("=I", k))), nest(2, _verdict(v.code, v.chain)))
                     for k, v in enumerate(e.targets))
    ctx.add(NEWSETELEM, F_CREATE, ctx.tbl, s(2, name), u32(4, set_id), nest(3, items))
    return (expr("numgen", u32(1, 1), u32(2, n), u32(3, 1))
            + expr("lookup", s(1, name), u32(4, set_id), u32(2, 1), u32(3, 0)))


_EXPR: dict[type, Callable[[_Ctx, Expr], bytes]] = {  # type: ignore[dict-item]
    Addr: _e_addr, AddrInSet: _e_addr_in_set, AddrNotInRanges: _e_unsupported, L4Proto: _e_l4proto,
    FibLocal: _e_fib, Verdict: _e_verdict, Dnat: _e_dnat, DnatMap: _e_dnat_map, UpdateSet: _e_update,
    NumgenVmap: _e_numgen_vmap,
}


def rule_body(ctx: _Ctx, rule: Rule) -> bytes:
    """NFTA_RULE_EXPRESSIONS (and the comment as user data) of one rule."""
    enc = _EXPR
    exprs = b"".join([enc[type(e)](ctx, e) for e in rule.exprs])
    out = attr(4 | NESTED, exprs)
    if rule.comment:
        text = rule.comment.encode() + b"\0"
        out += attr(7, bytes([0, len(text)]) + text)  # NFTNL_UDATA_RULE_COMMENT
    return out


# --- set and map elements -------------------------------------------------------------------------

_HDR = struct.Struct("=HH")
_H4 = struct.Struct("=HHHH")
_H6 = struct.Struct("=HHHHHH")
_EP_KEY = struct.Struct("=HHHHHHI")  # element{ key{ value: u32 } } headers and the key
# a whole IPv4 endpoint map element: element{key{value: u32}} headers, the key (host order),
# data{value} headers, address, port (network order), padding
_EP4 = struct.Struct("=12sI8s4s2s2x")
_EP4_HDRS = {f: (_H6.pack(32, 1 | f, 12, 1 | f, 8, 1), _H4.pack(16, 2 | f, 12, 1)) for f in (NESTED, 0)}
_PROTO_KEY = {p: bytes([v, 0, 0, 0]) for p, v in PROTOS.items()}
_VCODE = {c: _HDR.pack(8, 1) + struct.pack("!i", v) for c, v in VERDICTS.items()}  # NFTA_VERDICT_CODE


@functools.lru_cache(maxsize=1024)
def _port16(port: int) -> bytes:
    return port.to_bytes(2, "big")


def _key_bytes(ctx: _Ctx, k: Key) -> bytes:
    """A key's data: addresses in network order, protocols and ports padded to 4 bytes, an
    endpoint map index as a host-order u32."""
    if isinstance(k, str):
        return ctx.ip(k)
    if isinstance(k, int):
        return struct.pack("=I", k)
    if isinstance(k, AddrPair):
        return ctx.ip(k.first) + ctx.ip(k.second)
    if isinstance(k, PortKey):
        if k.proto not in PROTOS:
            raise Unsupported(f"protocol {k.proto}")
        head = b"" if k.addr is None else ctx.ip(k.addr)
        return head + _PROTO_KEY[k.proto] + _port16(k.port) + b"\0\0"
    raise Unsupported(f"element key {k!r}")


def element(ctx: _Ctx, k: Key, v: Value | None) -> bytes:
    """One NFTA_LIST_ELEM: the general encoder (every fast path below must give the same bytes)."""
    kb = _key_bytes(ctx, k)
    n = len(kb)  # a multiple of 4
    if v is None:
        data = b""
    elif isinstance(v, Verdict):
        data = nest(2, _verdict(v.code, v.chain))  # NFTA_SET_ELEM_DATA{NFTA_DATA_VERDICT}
    elif isinstance(v, Target):
        data = _value(2, ctx.ip(v.ip) + _port16(v.port) + b"\0\0")  # NFTA_SET_ELEM_DATA{NFTA_DATA_VALUE}
    else:
        raise Unsupported(f"element value {v!r}")
    return _H6.pack(12 + n + len(data), 1 | NESTED, 8 + n, 1 | NESTED, 4 + n, 1) + kb + data


class EndpointLike(Protocol):
    ip: str
    port: int


def _endpoint_elems(ctx: _Ctx, items: Iterable[tuple[int, EndpointLike]], flag: int = NESTED) -> list[bytes]:
    """Endpoint map elements ``index : ip . port`` from ``(index, endpoint)`` pairs.

    The hot path of a full sync (10^5 elements): one ``struct`` call per IPv4 element. With
    ``flag=0`` the nested attributes carry no NLA_F_NESTED flag: the form the kernel's dumps
    use (:func:`kernel_elements`)."""
    pton = ctx.pton
    if ctx.addr_len == 4:
        pk, kh, dh = _EP4.pack, _EP4_HDRS[flag][0], _EP4_HDRS[flag][1]
        return [pk(kh, k, dh, pton(ep.ip), _port16(ep.port)) for k, ep in items]
    out = []
    for k, ep in items:
        v = ctx.ip(ep.ip) + ep.port.to_bytes(2, "big") + b"\0\0"
        n = len(v)
        out.append(_EP_KEY.pack(24 + n, 1 | flag, 12, 1 | flag, 8, 1, k) + _H4.pack(8 + n, 2 | flag, 4 + n, 1) + v)
    return out


def _verdict_elems(ctx: _Ctx, keys: Sequence[PortKey], values: Sequence[Verdict], flag: int = NESTED) -> list[bytes]:
    """Dispatch map elements ``[addr . ]proto . port : goto|jump chain`` (10^4 in a full sync):
    the same bytes as :func:`element`, with the attribute headers packed by hand."""
    pton, pk, pk6, protos, codes = ctx.pton, _HDR.pack, _H6.pack, _PROTO_KEY, _VCODE
    out = []
    for k, v in zip(keys, values, strict=True):
        kb = protos[k.proto] + _port16(k.port) + b"\0\0"
        if k.addr is not None:
            kb = pton(k.addr) + kb
        inner = codes[v.code]
        if v.chain:
            cb = v.chain.encode() + b"\0"
            inner += pk(4 + len(cb), 2) + cb + b"\0" * (-len(cb) % 4)  # NFTA_VERDICT_CHAIN
        n, m = len(kb), len(inner)
        out.append(pk6(20 + n + m, 1 | flag, 8 + n, 1 | flag, 4 + n, 1) + kb
                   + pk(8 + m, 2 | flag) + pk(4 + m, 2 | flag) + inner)
    return out


def _address_elems(ctx: _Ctx, keys: Sequence[str], flag: int = NESTED) -> list[bytes]:
    """Address set elements (cluster-ips, nodeport-ips)."""
    pton, pk6 = ctx.pton, _H6.pack
    n = ctx.addr_len
    head = pk6(12 + n, 1 | flag, 8 + n, 1 | flag, 4 + n, 1)
    return [head + pton(k) for k in keys]


def _pair_elems(ctx: _Ctx, addresses: Iterable[str], flag: int = NESTED) -> list[bytes]:
    """``addr . addr`` set elements, one pair per address (the hairpin set)."""
    n = 2 * ctx.addr_len
    pair = struct.Struct(f"=12s{n // 2}s{n // 2}s").pack
    head = _H6.pack(12 + n, 1 | flag, 8 + n, 1 | flag, 4 + n, 1)
    return [pair(head, b, b) for b in map(ctx.pton, addresses)]


def encoded_elements(ctx: _Ctx, keys: Sequence[Key], values: Sequence[Value] | None) -> list[bytes]:
    """Each element encoded; the fast paths when every element has their shape."""
    if not keys:
        return []
    k0 = keys[0]
    try:
        if values is not None:
            if type(k0) is PortKey and type(values[0]) is Verdict:
                return _verdict_elems(ctx, keys, values)  # type: ignore[arg-type]
            if ctx.addr_len == 4 and type(k0) is int and type(values[0]) is Target:
                return _endpoint_elems(ctx, zip(keys, values, strict=True))  # type: ignore[arg-type]
        elif type(k0) is str:
            return _address_elems(ctx, keys)  # type: ignore[arg-type]
    except (AttributeError, KeyError, TypeError, OSError):
        pass  # not only this shape: the general path
    if values is None:
        return [element(ctx, k, None) for k in keys]
    return [element(ctx, k, v) for k, v in zip(keys, values, strict=True)]


def strip_nested(data: bytes) -> bytes:
    """``data`` (attributes) with the NLA_F_NESTED flag cleared at every level: the kernel's
    dumps set it nowhere. Recurses only into attributes flagged nested."""
    out: list[bytes] = []
    off, end = 0, len(data)
    while off + 4 <= end:
        ln, kind = _HDR.unpack_from(data, off)
        if ln < 4:
            break
        nxt = off + ((ln + 3) & ~3)
        if kind & NESTED:
            body = strip_nested(data[off + 4:off + ln])
            out.append(_HDR.pack(ln, kind & ~NESTED) + body + data[off + ln:nxt])
        else:
            out.append(data[off:nxt])
        off = nxt
    return b"".join(out)


def _grouped(ctx: _Ctx, kind: int, flags: int, name: str, encoded: list[bytes]) -> list[Message]:
    """(NEW|DEL)SETELEM messages for encoded elements, each under 64 KiB of attributes."""
    if not encoded:
        return []
    head = ctx.tbl + s(2, name)
    lens = set(map(len, encoded))
    if len(lens) == 1:  # the usual case: all elements of one size, groups by count
        per = max(1, 60000 // lens.pop())
        return [(kind, flags, head + nest(3, b"".join(encoded[i:i + per]))) for i in range(0, len(encoded), per)]
    out: list[Message] = []
    items: list[bytes] = []
    size = 0
    for one in encoded:
        if items and size + len(one) > 60000:
            out.append((kind, flags, head + nest(3, b"".join(items))))
            items, size = [], 0
        items.append(one)
        size += len(one)
    out.append((kind, flags, head + nest(3, b"".join(items))))
    return out


def bulk_messages(family: str, table: str,
                  endpoint_maps: Mapping[str, Iterable[tuple[int, Iterable[EndpointLike]]]],
                  pair_set: str, addresses: Iterable[str], kept: dict[str, list[bytes]] | None = None) -> list[Message]:
    """Elements added straight from data: endpoint maps (runs of endpoints, the i-th of a run
    under key ``base + i``, as ``key : ip . port``) and an ``addr . addr`` set with one pair
    per address (the hairpin set).

    With ``kept`` the elements are written in the form the kernel's dumps list them (no
    NLA_F_NESTED flags; the kernel takes that form too) and also appended, per set, to
    ``kept``: what a later resync compares a dump with, without encoding it all again."""
    ctx = _Ctx(family, table)
    flag = NESTED if kept is None else 0
    out: list[Message] = []
    for name, runs in endpoint_maps.items():
        pairs = itertools.chain.from_iterable(enumerate(eps, base) for base, eps in runs)
        elems = _endpoint_elems(ctx, pairs, flag)
        if kept is not None:
            kept.setdefault(name, []).extend(elems)
        out += _grouped(ctx, NEWSETELEM, F_CREATE, name, elems)
    elems = _pair_elems(ctx, addresses, flag)
    if kept is not None:
        kept.setdefault(pair_set, []).extend(elems)
    return out + _grouped(ctx, NEWSETELEM, F_CREATE, pair_set, elems)


# --- commands -------------------------------------------------------------------------------------

def _c_add_chain(ctx: _Ctx, c: AddChain) -> None:
    ctx.msgs.append((NEWCHAIN, F_CREATE, ctx.tbl + s(3, c.name)))


def _c_flush_chain(ctx: _Ctx, c: FlushChain) -> None:
    ctx.msgs.append((DELRULE, 0, ctx.tbl + s(2, c.name)))


def _c_delete_chain(ctx: _Ctx, c: DeleteChain) -> None:
    ctx.msgs.append((DELCHAIN, 0, ctx.tbl + s(3, c.name)))


def _c_add_rule(ctx: _Ctx, c: AddRule) -> None:
    body = rule_body(ctx, c.rule)  # (may add an anonymous map's messages first)
    ctx.msgs.append((NEWRULE, F_CREATE | F_APPEND, ctx.tbl + s(2, c.chain) + body))


def _c_add_elements(ctx: _Ctx, c: AddElements) -> None:
    ctx.msgs += _grouped(ctx, NEWSETELEM, F_CREATE, c.set, encoded_elements(ctx, c.keys, c.values))


def _c_delete_elements(ctx: _Ctx, c: DeleteElements) -> None:
    ctx.msgs += _grouped(ctx, DELSETELEM, 0, c.set, encoded_elements(ctx, c.keys, None))


def _c_flush_set(ctx: _Ctx, c: FlushSet) -> None:
    ctx.msgs.append((DELSETELEM, 0, ctx.tbl + s(2, c.name)))  # no element list: every element


def _c_delete_set(ctx: _Ctx, c: DeleteSet) -> None:
    ctx.msgs.append((DELSET, 0, ctx.tbl + s(2, c.name)))


def _c_declaration(ctx: _Ctx, c: AddAffinitySet) -> None:
    # set declarations are left to nft: it records the set's properties in ways the listing depends on
    raise Unsupported(c.text(f"{ctx.family} {ctx.table}", ctx.family))


_COMMAND: dict[type, Callable[[_Ctx, Command], None]] = {  # type: ignore[dict-item]
    AddChain: _c_add_chain, FlushChain: _c_flush_chain, DeleteChain: _c_delete_chain, AddRule: _c_add_rule,
    AddElements: _c_add_elements, DeleteElements: _c_delete_elements, FlushSet: _c_flush_set,
    DeleteSet: _c_delete_set, AddAffinitySet: _c_declaration,
}

_NLMSG = struct.Struct("=IHHII")
_NFGEN = struct.Struct("=BBH")


def nfmsg(kind: int, flags: int, seq: int, family: int, body: bytes, res_id: int = 0) -> bytes:
    """One netlink message with the nfgenmsg header."""
    payload_ = _NFGEN.pack(family, 0, socket.htons(res_id)) + body
    return _NLMSG.pack(16 + len(payload_), kind, flags, seq, 0) + payload_


def encode(cmds: Iterable[Command], family: str = "ip", table: str = "kube-proxy", seq: int = 1,
           extra: Iterable[Message] = ()) -> tuple[bytes, list[int]]:
    """One netlink batch for ``cmds`` (then ``extra``); returns it and the sequence numbers of its
    messages. Raises :class:`Unsupported` for a command left to ``nft``.

    The messages ask for no ACK: the kernel reports only errors.
    """
    if family not in FAMILIES:
        raise Unsupported(f"family {family}")
    ctx = _Ctx(family, table)
    table_cmds = _COMMAND
    for c in cmds:
        table_cmds[type(c)](ctx, c)
    ctx.msgs.extend(extra)
    head = _NFGEN.pack(FAMILIES[family], 0, 0)
    out = [nfmsg(BATCH_BEGIN, F_REQUEST, seq, 0, b"", res_id=NFNL_SUBSYS_NFTABLES)]
    pack = _NLMSG.pack
    n = len(ctx.msgs)
    for i, (kind, flags, body) in enumerate(ctx.msgs, start=seq + 1):
        out.append(pack(20 + len(body), (NFNL_SUBSYS_NFTABLES << 8) | kind, F_REQUEST | flags, i, 0) + head + body)
    out.append(nfmsg(BATCH_END, F_REQUEST, seq + n + 1, 0, b"", res_id=NFNL_SUBSYS_NFTABLES))
    return b"".join(out), list(range(seq + 1, seq + n + 1))
