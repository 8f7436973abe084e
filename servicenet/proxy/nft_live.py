"""What an nftables table holds, read from netlink dumps, and how to compare it (pure).

:class:`LiveTable` is parsed from the message bodies of GETCHAIN, GETSET, GETRULE and
GETSETELEM dumps (:meth:`nft_socket.NetlinkSession.table` fetches them). Rules are kept as
the kernel's bytes; :class:`RuleMatcher` decides whether a dumped rule is a wanted
:class:`~nft_commands.Rule`. Elements are kept as the dump's element lists and split into
one ``bytes`` per element, the form :func:`kernel_elements` writes (our encoding without
NLA_F_NESTED flags), so a set is compared as two sets of ``bytes``.

The kernel does not dump a rule exactly as it was sent: no NLA_F_NESTED flags, some
attributes added with their default or derived value (``lookup`` flags 0, ``numgen`` offset
0, ``dynset`` timeout and flags 0, ``nat`` max registers and range flags), some in another
order. :func:`expr_form` reduces both sides to one form. A lookup into an anonymous set
(ClientIP affinity's ``numgen ... vmap``) is reduced to that set's elements, dumped with the
table; a rule whose expressions the encoder leaves to ``nft`` (LoadBalancer source ranges)
has no form and never compares equal, so its chain is rewritten by every resync.
"""

from __future__ import annotations

import functools
import socket
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from servicenet.proxy.nft_commands import AddrPair, DnatMap, Expr, Key, PortKey, Rule, Target, Value, Verdict
from servicenet.proxy.nft_encode import (
    _EXPR,
    NEWSETELEM,
    PROTOS,
    EndpointLike,
    Unsupported,
    _address_elems,
    _Ctx,
    _endpoint_elems,
    _pair_elems,
    _verdict_elems,
    dnat_map_parts,
    element,
    rule_body,
    strip_nested,
)

_HDR = struct.Struct("=HH")
NESTED = 0x8000
SET_ANONYMOUS = 0x1  # NFT_SET_ANONYMOUS
LiveRule = tuple[bytes, bytes]  # (NFTA_RULE_EXPRESSIONS payload, NFTA_RULE_USERDATA payload or b"")


def attrs(data: bytes) -> list[tuple[int, bytes]]:
    """Netlink attributes of ``data``: (type without the nested flag, payload), in order."""
    out: list[tuple[int, bytes]] = []
    off, end = 0, len(data)
    unpack = _HDR.unpack_from
    while off + 4 <= end:
        ln, kind = unpack(data, off)
        if ln < 4:
            break
        out.append((kind & 0x3FFF, data[off + 4:off + ln]))
        off += (ln + 3) & ~3
    return out


def _text(b: bytes) -> str:
    return b.rstrip(b"\0").decode(errors="replace")


@dataclass(slots=True)
class LiveTable:
    """One table as dumped: chain names, set names (maps included) with their flags, every
    rule per chain in order, and the elements of the sets asked for (one ``bytes`` per
    element list of a dump message; :func:`split_elements` cuts them up)."""

    chains: set[str] = field(default_factory=set)
    sets: dict[str, int] = field(default_factory=dict)  # name -> NFTA_SET_FLAGS
    rules: dict[str, list[LiveRule]] = field(default_factory=dict)
    elements: dict[str, list[bytes]] = field(default_factory=dict)
    anonymous: dict[str, frozenset[bytes]] = field(default_factory=dict)  # anonymous set -> its elements


def parse_rules(table: str, bodies: Iterable[bytes]) -> list[tuple[str, LiveRule]]:
    """(chain, rule) of GETRULE dump messages, in dump order."""
    want = table.encode()
    out: list[tuple[str, LiveRule]] = []
    for body in bodies:
        a = dict(attrs(body))
        if a.get(1, b"").rstrip(b"\0") != want or 2 not in a:
            continue
        out.append((_text(a[2]), (a.get(4, b""), a.get(7, b""))))
    return out


def parse_table(table: str, chains: Iterable[bytes], sets: Iterable[bytes], rules: Iterable[bytes]) -> LiveTable:
    live = LiveTable()
    want = table.encode()
    for body in chains:
        a = dict(attrs(body))
        if a.get(1, b"").rstrip(b"\0") == want and 3 in a:
            live.chains.add(_text(a[3]))
    for body in sets:
        a = dict(attrs(body))
        if a.get(1, b"").rstrip(b"\0") == want and 2 in a:
            flags = a.get(3, b"\0\0\0\0")
            live.sets[_text(a[2])] = struct.unpack("!I", flags)[0] if len(flags) == 4 else 0
    for chain, rule in parse_rules(table, rules):
        live.rules.setdefault(chain, []).append(rule)
    return live


def element_blobs(bodies: Iterable[bytes]) -> list[bytes]:
    """The NFTA_SET_ELEM_LIST_ELEMENTS payload of each GETSETELEM dump message."""
    out: list[bytes] = []
    for body in bodies:
        for kind, payload in attrs(body):
            if kind == 3:
                out.append(payload)
    return out


@functools.lru_cache(maxsize=64)
def _cutter(size: int, count: int) -> Callable[[bytes], tuple[bytes, ...]]:
    """Cuts ``size * count`` bytes into ``count`` pieces in one call (a dump's 32 KiB messages
    mostly hold the same number of elements: a few formats serve them all; a set's last
    message may need its own, made in microseconds)."""
    return struct.Struct(f"{size}s" * count).unpack


def _stride(blob: bytes) -> int:
    """The size of the first element of ``blob`` if it divides the whole list, else 0."""
    if len(blob) < 4:
        return 0
    size = (_HDR.unpack_from(blob, 0)[0] + 3) & ~3
    return size if size >= 4 and len(blob) % size == 0 else 0


def _cut(blob: bytes, size: int) -> Sequence[bytes]:
    count = len(blob) // size
    return _cutter(size, count)(blob) if count <= 4096 else [blob[i:i + size] for i in range(0, len(blob), size)]


def split_elements(blobs: Sequence[bytes], probe: set[bytes] | frozenset[bytes] = frozenset()) -> list[bytes]:
    """Every element (a whole NFTA_LIST_ELEM attribute) of the element lists ``blobs``.

    When the first element's size divides a list it is cut at that stride (one slice per
    element); that is right when every piece is a known element (in ``probe``: a piece that
    is a valid element of size L can only start at a boundary of a walk of size-L elements),
    otherwise that list is walked attribute by attribute.
    """
    out: list[bytes] = []
    for blob in blobs:
        size = _stride(blob)
        if size:
            pieces = _cut(blob, size)
            if probe and probe.issuperset(pieces):
                out += pieces
                continue
        out += whole_attrs(blob)
    return out


def element_set(blobs: Sequence[bytes], probe: set[bytes] | frozenset[bytes]) -> set[bytes]:
    """The elements of the element lists ``blobs`` as a set: what :func:`split_elements` finds,
    made with fewer passes over them. Lists are cut at their stride first; when every piece
    of every cut list is in ``probe`` the cuts are right (as in :func:`split_elements`),
    otherwise every list is walked. The usual resync case, a set holding exactly ``probe``,
    costs one cut per message, one set and one comparison."""
    cut: set[bytes] = set()
    rest: list[bytes] = []
    for blob in blobs:
        size = _stride(blob)
        if size:
            cut.update(_cut(blob, size))
        elif len(blob) >= 4:
            rest.append(blob)
    if not rest and cut == probe:
        return cut
    if not cut <= probe:  # some cut was wrong (or a stray element): walk every list
        return {e for blob in blobs for e in whole_attrs(blob)}
    for blob in rest:
        cut.update(whole_attrs(blob))
    return cut


def element_key(element: bytes, set_name: str, family: str) -> Key | None:
    """The typed key of one dumped element of one of our sets or maps (None if it does not
    have the layout that set's name implies)."""
    top = attrs(element)
    if len(top) != 1:
        return None
    key = dict(attrs(top[0][1])).get(1)  # NFTA_SET_ELEM_KEY
    if key is None:
        return None
    data = dict(attrs(key)).get(1)  # NFTA_DATA_VALUE
    if data is None:
        return None
    af, n = (socket.AF_INET, 4) if family == "ip" else (socket.AF_INET6, 16)
    protos = {v: p for p, v in PROTOS.items()}
    try:
        if set_name.startswith("service-endpoints-"):
            return struct.unpack("=I", data)[0] if len(data) == 4 else None
        if set_name == "hairpin-connections":
            return AddrPair(socket.inet_ntop(af, data[:n]), socket.inet_ntop(af, data[n:])) if len(data) == 2 * n else None
        if set_name in ("cluster-ips", "nodeport-ips"):
            return socket.inet_ntop(af, data) if len(data) == n else None
        if set_name in ("service-nodeports", "no-endpoint-nodeports"):
            if len(data) != 8 or data[0] not in protos:
                return None
            return PortKey(None, protos[data[0]], int.from_bytes(data[4:6], "big"))
        if len(data) != n + 8 or data[n] not in protos:
            return None
        return PortKey(socket.inet_ntop(af, data[:n]), protos[data[n]], int.from_bytes(data[n + 4:n + 6], "big"))
    except (OSError, ValueError):
        return None


def kernel_elements(family: str, keys: Sequence[Key], values: Sequence[Value] | None) -> list[bytes]:
    """Each element as a dump from the kernel lists it (one NFTA_LIST_ELEM without NLA_F_NESTED
    flags): the same bytes as :func:`encoded_elements`, flags cleared. The kernel takes this
    form in a NEWSETELEM too."""
    ctx = _Ctx(family, "")
    if keys:
        k0 = keys[0]
        try:
            if values is not None:
                if type(k0) is PortKey and type(values[0]) is Verdict:
                    return _verdict_elems(ctx, keys, values, 0)  # type: ignore[arg-type]
                if type(k0) is int and type(values[0]) is Target:
                    return _endpoint_elems(ctx, zip(keys, values, strict=True), 0)  # type: ignore[arg-type]
            elif type(k0) is str:
                return _address_elems(ctx, keys, 0)  # type: ignore[arg-type]
        except (AttributeError, KeyError, TypeError, OSError):
            pass
    if values is None:
        return [strip_nested(element(ctx, k, None)) for k in keys]
    return [strip_nested(element(ctx, k, v)) for k, v in zip(keys, values, strict=True)]


def kernel_endpoint_elements(family: str, items: Iterable[tuple[int, EndpointLike]]) -> list[bytes]:
    """Endpoint map elements from ``(index, endpoint)`` pairs, in the kernel's dump form."""
    return _endpoint_elems(_Ctx(family, ""), items, 0)


def kernel_pair_elements(family: str, addresses: Iterable[str]) -> list[bytes]:
    """``addr . addr`` elements (the hairpin set), in the kernel's dump form."""
    return _pair_elems(_Ctx(family, ""), addresses, 0)


# --- rules ---------------------------------------------------------------------------------------

_ZERO32, _ZERO64 = b"\0" * 4, b"\0" * 8
_DEFAULTS: dict[str, dict[int, bytes]] = {  # attributes the kernel adds with a default value
    "lookup": {5: _ZERO32},  # NFTA_LOOKUP_FLAGS
    "numgen": {4: _ZERO32},  # NFTA_NG_OFFSET
    "dynset": {6: _ZERO64, 9: _ZERO32},  # NFTA_DYNSET_TIMEOUT, NFTA_DYNSET_FLAGS
}
_NAT_MAP_IPS, _NAT_PROTO_SPECIFIED = 1, 2


class _Anonymous(Exception):
    """A rule reads an anonymous set whose elements are not known."""


Anonymous = Mapping[str, frozenset[bytes]]  # anonymous set name -> its elements (dump form)


def expr_form(elem: bytes, anonymous: Anonymous | None = None) -> tuple[object, ...]:
    """One expression (an NFTA_LIST_ELEM payload, ours or the kernel's) in the form both
    reduce to. A lookup into an anonymous set is reduced to that set's elements (its name and
    transaction id are ours alone); raises :class:`_Anonymous` if they are not in ``anonymous``."""
    top = dict(attrs(elem))
    name = _text(top.get(1, b""))
    data: dict[int, object] = {k: strip_nested(v) if k_nested else v
                               for (k, v), k_nested in _with_nested(top.get(2, b""))}
    for k, dflt in _DEFAULTS.get(name, {}).items():
        if data.get(k) == dflt:
            del data[k]
    set_name = data.get(1)
    if name == "lookup" and isinstance(set_name, bytes) and set_name.startswith(b"__"):
        content = (anonymous or {}).get(_text(set_name))
        if content is None:
            raise _Anonymous
        data[1] = content
        data.pop(4, None)  # NFTA_LOOKUP_SET_ID: the id within the transaction that made it
    elif name == "dynset" and isinstance(set_name, bytes) and set_name.startswith(b"__"):
        raise _Anonymous
    if name == "nat":
        raw = data.pop(7, _ZERO32)
        flags = struct.unpack("!I", raw)[0] if isinstance(raw, bytes) and len(raw) == 4 else -1
        if 3 in data:
            flags |= _NAT_MAP_IPS
            if data.get(4) == data[3]:
                del data[4]
        if 5 in data:
            flags |= _NAT_PROTO_SPECIFIED
            if data.get(6) == data[5]:
                del data[6]
        if flags:
            data[7] = struct.pack("!I", flags)
    return (name, *sorted(data.items(), key=lambda kv: kv[0]))


def _with_nested(data: bytes) -> list[tuple[tuple[int, bytes], bool]]:
    out: list[tuple[tuple[int, bytes], bool]] = []
    off, end = 0, len(data)
    while off + 4 <= end:
        ln, kind = _HDR.unpack_from(data, off)
        if ln < 4:
            break
        out.append(((kind & 0x3FFF, data[off + 4:off + ln]), bool(kind & NESTED)))
        off += (ln + 3) & ~3
    return out


def whole_attrs(data: bytes) -> list[bytes]:
    """Each attribute of ``data`` whole (header, payload, padding)."""
    out: list[bytes] = []
    off, end = 0, len(data)
    unpack = _HDR.unpack_from
    while off + 4 <= end:
        ln = unpack(data, off)[0]
        if ln < 4:
            break
        nxt = off + ((ln + 3) & ~3)
        out.append(data[off:nxt])
        off = nxt
    return out


def _comment(text: str) -> bytes:
    """NFTA_RULE_USERDATA of a rule comment, as :func:`nft_encode.rule_body` writes it."""
    if not text:
        return b""
    b = text.encode() + b"\0"
    return bytes([0, len(b)]) + b


class RuleMatcher:
    """Whether dumped rules are the wanted :class:`Rule` values, with what it learnt.

    A wanted rule is encoded (:func:`nft_encode.rule_body`) and each of its expressions
    turned into the bytes the kernel is expected to list for it: learnt for that expression's
    bytes, or else our bytes without NLA_F_NESTED flags (what the kernel lists for most
    expressions). When the dumped bytes differ, both sides are reduced (:func:`expr_form`);
    if they agree, what the kernel listed for each expression is learnt. Once a rule
    matched, its dumped bytes are remembered, and so is each chain's rule tuple (the
    renderer's cached fragments hand the same tuple to the next resync), so a resync over
    an unchanged table compares bytes only. Kept by the caller between syncs; bounded.
    """

    def __init__(self, family: str = "ip", limit: int = 1 << 18) -> None:
        self.family = family
        self.limit = limit
        self._known: dict[Rule, LiveRule] = {}
        self._chains: dict[str, tuple[Sequence[Rule], list[LiveRule]]] = {}
        self._kform: dict[bytes, bytes] = {}  # one expression as we encode it -> as the kernel lists it
        self._kexpr: dict[tuple[type, Expr], bytes] = {}
        self._flats: dict[bytes, bytes] = {}  # an expression that repeats -> without nested flags  # one typed expression -> as the kernel is expected to list it
        self._exprs: dict[bytes, tuple[object, ...]] = {}

    def _form(self, elem: bytes, anonymous: Anonymous | None) -> tuple[object, ...]:
        f = self._exprs.get(elem)
        if f is None:
            try:
                f = self._exprs[elem] = expr_form(elem[4:])
            except _Anonymous:
                if not anonymous:
                    raise
                f = expr_form(elem[4:], anonymous)  # (not kept: an anonymous set's name may be reused)
        return f

    def _encoded(self, rule: Rule) -> tuple[list[bytes], bytes, dict[str, frozenset[bytes]]] | None:
        """Our expressions of ``rule`` (whole attributes), its user data and the elements of its
        anonymous sets; None when it is left to ``nft``."""
        ctx = _Ctx(self.family, "")
        try:
            body = rule_body(ctx, rule)
        except Unsupported:
            return None
        anonymous: dict[str, frozenset[bytes]] = {}
        for kind, _flags, msg in ctx.msgs:
            if kind == NEWSETELEM:
                a = dict(attrs(msg))
                anonymous[_text(a.get(2, b""))] = frozenset(strip_nested(e) for e in whole_attrs(a.get(3, b"")))
        a = dict(attrs(body))
        return whole_attrs(a.get(4, b"")), a.get(7, b""), anonymous

    def same_chain(self, chain: str, have: list[LiveRule], want: Sequence[Rule],
                   anonymous: Anonymous | None = None) -> bool:
        """Whether ``chain``, holding ``have`` (dumped, in order), holds exactly ``want``
        (``anonymous``: the elements of the table's anonymous sets)."""
        k = self._chains.get(chain)
        if k is not None and k[0] is want and k[1] == have:
            return True
        if not self.same(have, want, anonymous):
            return False
        self._chains[chain] = (want, have)
        return True

    def same(self, have: Sequence[LiveRule], want: Sequence[Rule], anonymous: Anonymous | None = None) -> bool:
        """Whether a chain holding ``have`` (dumped, in order) holds exactly ``want``."""
        if len(have) != len(want):
            return False
        known = self._known
        for h, r in zip(have, want, strict=True):
            if known.get(r) == h:
                continue
            if self._expected(r) != h:
                enc = self._encoded(r)
                if enc is None or enc[1] != h[1] or not self._learn(enc[0], h[0], enc[2], anonymous):
                    return False
            known[r] = h
        return True

    def _flat(self, x: bytes) -> bytes:
        f = self._flats.get(x)
        if f is None:
            f = self._flats[x] = strip_nested(x)
        return f

    def _expected(self, rule: Rule) -> LiveRule | None:
        """What the kernel is expected to list for ``rule``, expression by expression (None if
        an expression has an anonymous set or is left to ``nft``)."""
        kexpr, kform = self._kexpr, self._kform
        parts = []
        for e in rule.exprs:
            if e.__class__ is DnatMap:  # (one per service: its numgen is made flat directly)
                ng, lk, nat = dnat_map_parts(self.family, e, nested=False)  # type: ignore[arg-type]
                parts += [ng, kform.get(lk) or self._flat(lk), kform.get(nat) or self._flat(nat)]
                continue
            key = (e.__class__, e)  # (named tuples of different classes may compare equal)
            kb = kexpr.get(key)
            if kb is None:
                ctx = _Ctx(self.family, "")
                try:
                    ours = _EXPR[type(e)](ctx, e)
                except Unsupported:
                    return None
                if ctx.msgs:
                    return None
                kb = kexpr[key] = b"".join([kform.get(x) or strip_nested(x) for x in whole_attrs(ours)])
            parts.append(kb)
        return b"".join(parts), _comment(rule.comment)

    def _learn(self, ours: list[bytes], exprs: bytes, ours_anon: Anonymous, anonymous: Anonymous | None) -> bool:
        """Whether the kernel's ``exprs`` are our expressions ``ours``; if so, remember how the
        kernel lists each of them (those without anonymous sets)."""
        theirs = whole_attrs(exprs)
        if len(theirs) != len(ours):
            return False
        try:
            if any(self._form(o, ours_anon) != self._form(t, anonymous) for o, t in zip(ours, theirs, strict=True)):
                return False
        except _Anonymous:
            return False
        for o, t in zip(ours, theirs, strict=True):
            if o in self._exprs:  # (one whose form did not need an anonymous set)
                self._kform[o] = t
        self._kexpr.clear()  # (built from what was known before)
        return True

    def trim(self) -> None:
        """Forget what was learnt once it outgrows ``limit`` (call between resyncs)."""
        if len(self._known) > self.limit or len(self._chains) > self.limit:
            self._known.clear()
            self._chains.clear()
        if len(self._exprs) > self.limit or len(self._kform) > self.limit or len(self._kexpr) > self.limit:
            self._exprs.clear()
            self._kform.clear()
            self._kexpr.clear()
            self._flats.clear()
