"""Typed nftables commands: what the nftables renderer emits, as immutable values.

Rules are tuples of expressions (:class:`Addr`, :class:`L4Proto`, :class:`DnatMap`, ...),
set and map elements are typed keys (an address, :class:`AddrPair`, :class:`PortKey`, an
endpoint-map index) with typed values (:class:`Verdict`, :class:`Target`), and a transaction
is a sequence of commands (:class:`AddChain`, :class:`AddRule`, :class:`AddElements`, ...).

Two writers take the same commands and never parse each other's output: :func:`render` makes
``nft -f`` text (golden tests, the ``nft -f`` path) and :mod:`nft_encode` makes one netlink
batch. The table skeleton (table, set and map declarations, base chains, fixed rules) is
written as text only: it always goes through ``nft -f``.

The values are named tuples, not frozen dataclasses: a full sync of 10,000 services builds
~10^5 of them, and a tuple is built, hashed and compared several times faster (immutable
alike). Calling a class checks what it can (a verdict code, a protocol, keys against values);
:func:`make` builds one without the check, for a writer's hot loop whose fields are its own
(``make(Verdict, ("goto", chain))``). A :class:`Rule` equals another only when every
expression is of the same class too (named tuples alone compare by their fields).

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

make: Callable[..., Any] = tuple.__new__  # make(Cls, (field, ...)): every field, in order, unchecked

PROTOS = ("tcp", "udp", "sctp")


def _ipx(family: str) -> str:
    return "ip" if family == "ip" else "ip6"


# --- rule expressions ----------------------------------------------------------------------------

class Addr(NamedTuple):
    """``ip saddr 10.0.0.1`` or ``ip saddr != 10.0.0.0/8``: an address or prefix match."""

    which: str  # "saddr" | "daddr"
    value: str  # an address or a CIDR
    neq: bool = False

    def text(self, ipx: str) -> str:
        return f"{ipx} {self.which} {'!= ' if self.neq else ''}{self.value}"


class AddrInSet(NamedTuple):
    """``ip saddr @set``."""

    which: str
    set: str

    def text(self, ipx: str) -> str:
        return f"{ipx} {self.which} @{self.set}"


class AddrNotInRanges(NamedTuple):
    """``ip saddr != { 10.0.0.0/8, ... }`` (an anonymous interval set: left to ``nft``)."""

    which: str
    ranges: tuple[str, ...]

    def text(self, ipx: str) -> str:
        return f"{ipx} {self.which} != {{ {', '.join(self.ranges)} }}"


class _L4Proto(NamedTuple):
    proto: str


class L4Proto(_L4Proto):
    """``meta l4proto tcp``."""

    __slots__ = ()

    def __new__(cls, proto: str) -> L4Proto:
        if proto not in PROTOS:
            raise ValueError(f"unknown layer 4 protocol {proto!r}")
        return make(cls, (proto,))  # type: ignore[no-any-return]

    def text(self, ipx: str) -> str:
        return f"meta l4proto {self.proto}"


class FibLocal(NamedTuple):
    """``fib saddr type local``: the address is one of this host's."""

    which: str

    def text(self, ipx: str) -> str:
        return f"fib {self.which} type local"


VERDICT_CODES = ("drop", "accept", "jump", "goto", "return")


class _Verdict(NamedTuple):
    code: str
    chain: str | None = None


class Verdict(_Verdict):
    """``drop``, ``goto chain``, ``jump chain``: a rule's last expression or a map value."""

    __slots__ = ()

    def __new__(cls, code: str, chain: str | None = None) -> Verdict:
        if code not in VERDICT_CODES or (chain is None) != (code not in ("jump", "goto")):
            raise ValueError(f"bad verdict {code} {chain}")
        return make(cls, (code, chain))  # type: ignore[no-any-return]

    def text(self, ipx: str = "") -> str:
        return f"{self.code} {self.chain}" if self.chain else self.code


class Dnat(NamedTuple):
    """``dnat to 10.0.0.1:80`` (after an :class:`L4Proto` match)."""

    ip: str
    port: int

    def text(self, ipx: str) -> str:
        return f"dnat to [{self.ip}]:{self.port}" if ":" in self.ip else f"dnat to {self.ip}:{self.port}"


class DnatMap(NamedTuple):
    """``dnat ip addr . port to numgen random mod N offset B map @M``: one of N endpoints,
    those under keys ``B .. B+N-1`` of the endpoint map ``M``."""

    mod: int
    offset: int
    map: str

    def text(self, ipx: str) -> str:
        return f"dnat {ipx} addr . port to numgen random mod {self.mod} offset {self.offset} map @{self.map}"


class UpdateSet(NamedTuple):
    """``update @set { ip saddr }``: remember the client (session affinity)."""

    set: str

    def text(self, ipx: str) -> str:
        return f"update @{self.set} {{ {ipx} saddr }}"


class NumgenVmap(NamedTuple):
    """``numgen random mod N vmap { 0 : goto a , 1 : goto b }`` (an anonymous verdict map)."""

    targets: tuple[Verdict, ...]

    def text(self, ipx: str) -> str:
        elems = " , ".join(f"{i} : {v.text()}" for i, v in enumerate(self.targets))
        return f"numgen random mod {len(self.targets)} vmap {{ {elems} }}"


Expr = Addr | AddrInSet | AddrNotInRanges | L4Proto | FibLocal | Verdict | Dnat | DnatMap | UpdateSet | NumgenVmap


class Rule(NamedTuple):
    exprs: tuple[Expr, ...]
    comment: str = ""

    def __eq__(self, other: object) -> bool:
        # the same fields and, position by position, expressions of the same class
        return (other.__class__ is Rule and tuple.__eq__(self, other)  # type: ignore[operator]
                and all(a.__class__ is b.__class__ for a, b in zip(self.exprs, other.exprs, strict=True)))  # type: ignore[attr-defined]

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    __hash__ = tuple.__hash__  # (equal rules are equal tuples)

    def text(self, ipx: str) -> str:
        body = " ".join([e.text(ipx) for e in self.exprs])
        return f'{body} comment "{self.comment}"' if self.comment else body


L4 = {p: L4Proto(p) for p in PROTOS}  # shared: one per protocol
JUMP_MASQ = Verdict("jump", "mark-for-masquerade")


# --- set and map elements ------------------------------------------------------------------------

class PortKey(NamedTuple):
    """``10.96.0.1 . tcp . 80`` (dispatch maps by address) or ``tcp . 30080`` (NodePorts)."""

    addr: str | None
    proto: str
    port: int

    def text(self) -> str:
        if self.addr is None:
            return f"{self.proto} . {self.port}"
        return f"{self.addr} . {self.proto} . {self.port}"


class AddrPair(NamedTuple):
    """``10.0.0.1 . 10.0.0.1`` (the hairpin set)."""

    first: str
    second: str

    def text(self) -> str:
        return f"{self.first} . {self.second}"


class Target(NamedTuple):
    """``10.0.0.1 . 80``: an endpoint map value."""

    ip: str
    port: int

    def text(self, ipx: str = "") -> str:
        return f"{self.ip} . {self.port}"


Key = str | int | PortKey | AddrPair  # an address, an endpoint map index, ...
Value = Verdict | Target


def key_text(k: Key) -> str:
    return k if isinstance(k, str) else str(k) if isinstance(k, int) else k.text()


# --- commands ------------------------------------------------------------------------------------

class AddChain(NamedTuple):
    name: str

    def text(self, t: str, ipx: str) -> str:
        return f"add chain {t} {self.name}"


class FlushChain(NamedTuple):
    name: str

    def text(self, t: str, ipx: str) -> str:
        return f"flush chain {t} {self.name}"


class DeleteChain(NamedTuple):
    name: str

    def text(self, t: str, ipx: str) -> str:
        return f"delete chain {t} {self.name}"


class AddRule(NamedTuple):
    chain: str
    rule: Rule

    def text(self, t: str, ipx: str) -> str:
        return f"add rule {t} {self.chain} {self.rule.text(ipx)}"


class _AddElements(NamedTuple):
    set: str
    keys: tuple[Key, ...]
    values: tuple[Value, ...] | None = None


class AddElements(_AddElements):
    """``add element <set> { k, ... }`` or, with ``values``, ``{ k : v, ... }`` (a map)."""

    __slots__ = ()

    def __new__(cls, set: str, keys: tuple[Key, ...], values: tuple[Value, ...] | None = None) -> AddElements:
        if values is not None and len(values) != len(keys):
            raise ValueError(f"{set}: {len(keys)} keys but {len(values)} values")
        return make(cls, (set, keys, values))  # type: ignore[no-any-return]

    def text(self, t: str, ipx: str) -> str:
        if self.values is None:
            items = ", ".join(map(key_text, self.keys))
        else:
            items = ", ".join([f"{key_text(k)} : {v.text(ipx)}" for k, v in zip(self.keys, self.values, strict=True)])
        return f"add element {t} {self.set} {{ {items} }}"


class DeleteElements(NamedTuple):
    set: str
    keys: tuple[Key, ...]

    def text(self, t: str, ipx: str) -> str:
        return f"delete element {t} {self.set} {{ {', '.join(map(key_text, self.keys))} }}"


class FlushSet(NamedTuple):
    """Every element of a set (``is_map``: of a map) removed."""

    name: str
    is_map: bool = False

    def text(self, t: str, ipx: str) -> str:
        return f"flush {'map' if self.is_map else 'set'} {t} {self.name}"


class DeleteSet(NamedTuple):
    name: str
    is_map: bool = False

    def text(self, t: str, ipx: str) -> str:
        return f"delete {'map' if self.is_map else 'set'} {t} {self.name}"


class AddAffinitySet(NamedTuple):
    """A session-affinity set: client addresses that expire after ``timeout`` seconds.

    Declarations are left to ``nft`` (it records set properties the listing depends on)."""

    name: str
    timeout: int

    def text(self, t: str, ipx: str) -> str:
        at = "ipv4_addr" if ipx == "ip" else "ipv6_addr"
        return f"add set {t} {self.name} {{ type {at} ; flags dynamic,timeout ; timeout {self.timeout}s ; }}"


Command = (AddChain | FlushChain | DeleteChain | AddRule | AddElements | DeleteElements | FlushSet | DeleteSet
           | AddAffinitySet)


def render(cmds: Iterable[Command], family: str = "ip", table: str = "kube-proxy") -> str:
    """``nft -f`` text for ``cmds`` ('' for none)."""
    t, ipx = f"{family} {table}", _ipx(family)
    lines = [c.text(t, ipx) for c in cmds]
    return "\n".join(lines) + "\n" if lines else ""
