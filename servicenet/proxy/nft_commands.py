"""Typed nftables commands: what the nftables renderer emits, as immutable values.

Rules are tuples of expressions (:class:`Addr`, :class:`L4Proto`, :class:`DnatMap`, ...),
set and map elements are typed keys (an address, :class:`AddrPair`, :class:`PortKey`, an
endpoint-map index) with typed values (:class:`Verdict`, :class:`Target`), and a transaction
is a sequence of commands (:class:`AddChain`, :class:`AddRule`, :class:`AddElements`, ...).

Two writers take the same commands and never parse each other's output: :func:`render` makes
``nft -f`` text (golden tests, the ``nft -f`` path) and :mod:`nft_encode` makes one netlink
batch. The table skeleton (table, set and map declarations, base chains, fixed rules) is
written as text only: it always goes through ``nft -f``.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

PROTOS = ("tcp", "udp", "sctp")


def _ipx(family: str) -> str:
    return "ip" if family == "ip" else "ip6"


# --- rule expressions ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Addr:
    """``ip saddr 10.0.0.1`` or ``ip saddr != 10.0.0.0/8``: an address or prefix match."""

    which: str  # "saddr" | "daddr"
    value: str  # an address or a CIDR
    neq: bool = False

    def text(self, ipx: str) -> str:
        return f"{ipx} {self.which} {'!= ' if self.neq else ''}{self.value}"


@dataclass(frozen=True, slots=True)
class AddrInSet:
    """``ip saddr @set``."""

    which: str
    set: str

    def text(self, ipx: str) -> str:
        return f"{ipx} {self.which} @{self.set}"


@dataclass(frozen=True, slots=True)
class AddrNotInRanges:
    """``ip saddr != { 10.0.0.0/8, ... }`` (an anonymous interval set: left to ``nft``)."""

    which: str
    ranges: tuple[str, ...]

    def text(self, ipx: str) -> str:
        return f"{ipx} {self.which} != {{ {', '.join(self.ranges)} }}"


@dataclass(frozen=True, slots=True)
class L4Proto:
    """``meta l4proto tcp``."""

    proto: str

    def __post_init__(self) -> None:
        if self.proto not in PROTOS:
            raise ValueError(f"unknown layer 4 protocol {self.proto!r}")

    def text(self, ipx: str) -> str:
        return f"meta l4proto {self.proto}"


@dataclass(frozen=True, slots=True)
class FibLocal:
    """``fib saddr type local``: the address is one of this host's."""

    which: str

    def text(self, ipx: str) -> str:
        return f"fib {self.which} type local"


VERDICT_CODES = ("drop", "accept", "jump", "goto", "return")


@dataclass(frozen=True, slots=True)
class Verdict:
    """``drop``, ``goto chain``, ``jump chain``: a rule's last expression or a map value."""

    code: str
    chain: str | None = None

    def __post_init__(self) -> None:
        if self.code not in VERDICT_CODES or (self.chain is None) != (self.code not in ("jump", "goto")):
            raise ValueError(f"bad verdict {self.code} {self.chain}")

    def text(self, ipx: str = "") -> str:
        return f"{self.code} {self.chain}" if self.chain else self.code


@dataclass(frozen=True, slots=True)
class Dnat:
    """``dnat to 10.0.0.1:80`` (after an :class:`L4Proto` match)."""

    ip: str
    port: int

    def text(self, ipx: str) -> str:
        return f"dnat to [{self.ip}]:{self.port}" if ":" in self.ip else f"dnat to {self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class DnatMap:
    """``dnat ip addr . port to numgen random mod N offset B map @M``: one of N endpoints,
    those under keys ``B .. B+N-1`` of the endpoint map ``M``."""

    mod: int
    offset: int
    map: str

    def text(self, ipx: str) -> str:
        return f"dnat {ipx} addr . port to numgen random mod {self.mod} offset {self.offset} map @{self.map}"


@dataclass(frozen=True, slots=True)
class UpdateSet:
    """``update @set { ip saddr }``: remember the client (session affinity)."""

    set: str

    def text(self, ipx: str) -> str:
        return f"update @{self.set} {{ {ipx} saddr }}"


@dataclass(frozen=True, slots=True)
class NumgenVmap:
    """``numgen random mod N vmap { 0 : goto a , 1 : goto b }`` (an anonymous verdict map)."""

    targets: tuple[Verdict, ...]

    def text(self, ipx: str) -> str:
        elems = " , ".join(f"{i} : {v.text()}" for i, v in enumerate(self.targets))
        return f"numgen random mod {len(self.targets)} vmap {{ {elems} }}"


Expr = Addr | AddrInSet | AddrNotInRanges | L4Proto | FibLocal | Verdict | Dnat | DnatMap | UpdateSet | NumgenVmap


@dataclass(frozen=True, slots=True)
class Rule:
    exprs: tuple[Expr, ...]
    comment: str = ""

    def text(self, ipx: str) -> str:
        body = " ".join([e.text(ipx) for e in self.exprs])
        return f'{body} comment "{self.comment}"' if self.comment else body


L4 = {p: L4Proto(p) for p in PROTOS}  # shared: one per protocol
JUMP_MASQ = Verdict("jump", "mark-for-masquerade")


# --- set and map elements ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PortKey:
    """``10.96.0.1 . tcp . 80`` (dispatch maps by address) or ``tcp . 30080`` (NodePorts)."""

    addr: str | None
    proto: str
    port: int

    def text(self) -> str:
        if self.addr is None:
            return f"{self.proto} . {self.port}"
        return f"{self.addr} . {self.proto} . {self.port}"


@dataclass(frozen=True, slots=True)
class AddrPair:
    """``10.0.0.1 . 10.0.0.1`` (the hairpin set)."""

    first: str
    second: str

    def text(self) -> str:
        return f"{self.first} . {self.second}"


@dataclass(frozen=True, slots=True)
class Target:
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

@dataclass(frozen=True, slots=True)
class AddChain:
    name: str

    def text(self, t: str, ipx: str) -> str:
        return f"add chain {t} {self.name}"


@dataclass(frozen=True, slots=True)
class FlushChain:
    name: str

    def text(self, t: str, ipx: str) -> str:
        return f"flush chain {t} {self.name}"


@dataclass(frozen=True, slots=True)
class DeleteChain:
    name: str

    def text(self, t: str, ipx: str) -> str:
        return f"delete chain {t} {self.name}"


@dataclass(frozen=True, slots=True)
class AddRule:
    chain: str
    rule: Rule

    def text(self, t: str, ipx: str) -> str:
        return f"add rule {t} {self.chain} {self.rule.text(ipx)}"


@dataclass(frozen=True, slots=True)
class AddElements:
    """``add element <set> { k, ... }`` or, with ``values``, ``{ k : v, ... }`` (a map)."""

    set: str
    keys: tuple[Key, ...]
    values: tuple[Value, ...] | None = None

    def __post_init__(self) -> None:
        if self.values is not None and len(self.values) != len(self.keys):
            raise ValueError(f"{self.set}: {len(self.keys)} keys but {len(self.values)} values")

    def text(self, t: str, ipx: str) -> str:
        if self.values is None:
            items = ", ".join(map(key_text, self.keys))
        else:
            items = ", ".join([f"{key_text(k)} : {v.text(ipx)}" for k, v in zip(self.keys, self.values, strict=True)])
        return f"add element {t} {self.set} {{ {items} }}"


@dataclass(frozen=True, slots=True)
class DeleteElements:
    set: str
    keys: tuple[Key, ...]

    def text(self, t: str, ipx: str) -> str:
        return f"delete element {t} {self.set} {{ {', '.join(map(key_text, self.keys))} }}"


@dataclass(frozen=True, slots=True)
class FlushSet:
    """Every element of a set (``is_map``: of a map) removed."""

    name: str
    is_map: bool = False

    def text(self, t: str, ipx: str) -> str:
        return f"flush {'map' if self.is_map else 'set'} {t} {self.name}"


@dataclass(frozen=True, slots=True)
class DeleteSet:
    name: str
    is_map: bool = False

    def text(self, t: str, ipx: str) -> str:
        return f"delete {'map' if self.is_map else 'set'} {t} {self.name}"


@dataclass(frozen=True, slots=True)
class AddAffinitySet:
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
