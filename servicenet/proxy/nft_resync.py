"""A resync over a populated table: the repairs that turn what the kernel holds into what is
wanted, and nothing when it already holds it (pure).

A full sync over an existing table used to flush and rewrite every service chain and refill
every map (10,000 services x 10 endpoints: ~1 s of kernel time). :func:`repair_transaction`
compares a dump of the table (:class:`nft_live.LiveTable`) with the wanted
:class:`render_nftables.NftRuleset` and returns only the commands that repair drift:

- chains missing are added with their rules; chains whose rules differ are flushed and
  rewritten; stale service chains (``/`` in the name, not wanted) are flushed and deleted;
- elements missing from a set or map are added, stray elements deleted (a map element whose
  value changed is both); a set whose stray elements cannot be read is flushed and refilled;
- stale affinity sets and endpoint maps are deleted (after the rules that used them).

The fixed part of the table (declarations, base chains and their rules) is the skeleton's
business: :func:`skeleton_intact` says whether it has to be re-applied.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from servicenet.proxy import nft_live
from servicenet.proxy.nft_commands import (
    AddChain,
    AddElements,
    AddrPair,
    AddRule,
    Command,
    DeleteChain,
    DeleteElements,
    DeleteSet,
    FlushChain,
    FlushSet,
    Key,
    Target,
    Value,
)
from servicenet.proxy.nft_encode import EndpointLike
from servicenet.proxy.nft_live import LiveRule, LiveTable, RuleMatcher, element_key, element_set
from servicenet.proxy.nft_skeleton import ENDPOINT_MAP, FIXED_CHAINS, HAIRPIN_SET, MAPS, SETS, NftConfig
from servicenet.proxy.render_nftables import NftRuleset


def element_sets(cfg: NftConfig, endpoint_maps: Iterable[str]) -> list[str]:
    """The sets and maps whose elements a resync compares."""
    sets = [s for s in SETS if s != "nodeport-ips" or cfg.nodeport_primary]
    return [*sets, *MAPS, *endpoint_maps]


def skeleton_intact(live: LiveTable, rs: NftRuleset, cfg: NftConfig,
                    fixed_rules: Mapping[str, Sequence[LiveRule]] | None) -> bool:
    """Whether the fixed part needs no ``nft -f``: every declaration ``rs`` needs is there and
    the fixed chains hold ``fixed_rules`` (what they held right after this process last wrote
    them; None: unknown)."""
    if fixed_rules is None:
        return False
    if any(c not in live.chains for c in FIXED_CHAINS):
        return False
    if any(s not in live.sets for s in (*element_sets(cfg, rs.endpoint_maps), *rs.affinity_sets)):
        return False
    return all(live.rules.get(c, []) == list(fixed_rules.get(c, ())) for c in FIXED_CHAINS)


Picker = Callable[[Sequence[int]], AddElements]  # wanted elements by position -> the command adding them


def _picker(name: str, keys: Sequence[Key], values: Sequence[Value] | None) -> Picker:
    def pick(idx: Sequence[int]) -> AddElements:
        return AddElements(name, tuple(keys[i] for i in idx), None if values is None else tuple(values[i] for i in idx))
    return pick


def _endpoint_picker(name: str, pairs: Sequence[tuple[int, EndpointLike]]) -> Picker:
    def pick(idx: Sequence[int]) -> AddElements:
        sel = [pairs[i] for i in idx]
        return AddElements(name, tuple(k for k, _ in sel), tuple(Target(ep.ip, ep.port) for _, ep in sel))
    return pick


def _map_elements(family: str, name: str, elems: Mapping[Key, Value]) -> tuple[list[bytes], Picker]:
    keys, values = list(elems), list(elems.values())
    return nft_live.kernel_elements(family, keys, values), _picker(name, keys, values)


def _address_elements(family: str, name: str, addrs: Iterable[str]) -> tuple[list[bytes], Picker]:
    keys = list(addrs)
    return nft_live.kernel_elements(family, keys, None), _picker(name, keys, None)


def _pair_elements(family: str, name: str, addrs: Iterable[str]) -> tuple[list[bytes], Picker]:
    keys = list(addrs)
    return nft_live.kernel_pair_elements(family, keys), _pairs_picker(name, keys)


def _runs_picker(name: str, runs: Sequence[tuple[int, Sequence[EndpointLike]]]) -> Picker:
    def pick(idx: Sequence[int]) -> AddElements:
        pairs = list(itertools.chain.from_iterable(enumerate(eps, base) for base, eps in runs))
        return _endpoint_picker(name, pairs)(idx)
    return pick


def _endpoint_elements(family: str, name: str, runs: Sequence[tuple[int, Sequence[EndpointLike]]]
                       ) -> tuple[list[bytes], Picker]:
    items = itertools.chain.from_iterable(enumerate(eps, base) for base, eps in runs)
    return nft_live.kernel_endpoint_elements(family, items), _runs_picker(name, runs)


def _pairs_picker(name: str, keys: Sequence[str]) -> Picker:
    def pick(idx: Sequence[int]) -> AddElements:
        return AddElements(name, tuple(AddrPair(keys[i], keys[i]) for i in idx))
    return pick


class WantedElements:
    """The wanted elements of each set and map in the kernel's dump form, kept between
    resyncs: a set whose source data (the renderer's cached objects) compare equal to last
    time's reuses its encoding instead of encoding 10^5 elements again."""

    def __init__(self) -> None:
        # set -> (source, wanted elements, the same as a frozenset (None: not made yet), picker)
        self._sets: dict[str, tuple[object, list[bytes], frozenset[bytes] | None, Picker]] = {}
        self._verified: dict[str, list[bytes]] = {}  # set -> the dump that matched its wanted elements
        self._last: tuple[NftRuleset, str, dict[str, tuple[list[bytes], frozenset[bytes], Picker, bool]]] | None = None

    def verified(self, name: str, blobs: list[bytes]) -> bool:
        """Whether ``blobs`` is byte for byte the dump of ``name`` that last matched its wanted
        elements (which have not changed since): then it still matches."""
        return self._verified.get(name) == blobs

    def mark_verified(self, name: str, blobs: list[bytes]) -> None:
        self._verified[name] = blobs

    def seed(self, rs: NftRuleset, kept: Mapping[str, list[bytes]], hairpin: Sequence[str]) -> None:
        """Take the endpoint map and hairpin elements a cold start of ``rs`` (built with
        ``endpoints=False``) sent in the dump's form (:func:`nft_encode.bulk_messages` with
        ``kept``), the hairpin set's in the order of the addresses ``hairpin``: the first
        resync then encodes only the other sets. Each endpoint map's elements must be in the
        order of its runs (:meth:`NftRuleset.bulk`), as a cold start in name order sends them."""
        runs, addrs = rs.bulk()
        for name in rs.endpoint_maps:
            want = kept.get(name, [])
            source = runs.get(name, [])
            if len(want) == sum(len(eps) for _, eps in source):
                self._sets[name] = (source, want, None, _runs_picker(name, source))
                self._verified.pop(name, None)
        want = kept.get(HAIRPIN_SET, [])
        if len(want) == len(hairpin) == len(addrs):
            keys = list(hairpin)
            self._sets[HAIRPIN_SET] = (addrs, want, None, _pairs_picker(HAIRPIN_SET, keys))
            self._verified.pop(HAIRPIN_SET, None)
        self._last = None

    def of(self, rs: NftRuleset, family: str) -> dict[str, tuple[list[bytes], frozenset[bytes], Picker, bool]]:
        """Per set or map: its wanted elements (list and set), how to add some of them (by
        position in the list), and whether it is a map (``rs`` built with ``endpoints=False``:
        endpoint maps from the runs). Asked again for the same ``rs`` (the same object), the
        same answer at once: the caller may make it ahead of :func:`repair_transaction`."""
        last = self._last
        if last is not None and last[0] is rs and last[1] == family:
            return last[2]
        runs, hairpin = rs.bulk()
        sources: list[tuple[str, object, Callable[[str, str, Any], tuple[list[bytes], Picker]], bool]] = []
        sources += [(m, rs.maps.get(m, {}), _map_elements, True) for m in MAPS]
        sources += [(s, hairpin, _pair_elements, False) if s == HAIRPIN_SET else (s, rs.sets[s], _address_elements, False)
                    for s in SETS if s == HAIRPIN_SET or s in rs.sets]
        sources += [(m, runs.get(m, []), _endpoint_elements, True) for m in rs.endpoint_maps]
        out: dict[str, tuple[list[bytes], frozenset[bytes], Picker, bool]] = {}
        for name, source, make, is_map in sources:
            hit = self._sets.get(name)
            if hit is None or hit[0] != source:
                want, pick = make(family, name, source)
                hit = self._sets[name] = (source, want, frozenset(want), pick)
                self._verified.pop(name, None)
            want_set = hit[2]
            if want_set is None:  # (seeded: the frozenset is made by the resync, not by the cold start)
                want_set = frozenset(hit[1])
                self._sets[name] = (hit[0], hit[1], want_set, hit[3])
            out[name] = (hit[1], want_set, hit[3], is_map)
        for gone in [n for n in self._sets if n not in out]:
            del self._sets[gone]
            self._verified.pop(gone, None)
        self._last = (rs, family, out)
        return out


def repair_transaction(live: LiveTable, rs: NftRuleset, cfg: NftConfig, matcher: RuleMatcher,
                       wanted: WantedElements | None = None) -> list[Command]:
    """The commands (one transaction) that make the table ``live`` hold exactly ``rs``'s service
    content; empty when it does. ``rs`` is built with ``endpoints=False``. Needs the skeleton
    in place (every map, set and affinity set of ``rs`` declared)."""
    matcher.trim()
    added: list[str] = []
    rewritten: list[str] = []
    for c, rules in rs.chains.items():
        if c not in live.chains:
            added.append(c)
        elif not matcher.same_chain(c, live.rules.get(c, []), rules, live.anonymous):
            rewritten.append(c)
    stale = sorted(c for c in live.chains if "/" in c and c not in rs.chains)

    dels: list[Command] = []
    adds: list[Command] = []
    flushed: list[Command] = []
    wanted = wanted or WantedElements()
    for name, (want, want_set, pick, is_map) in wanted.of(rs, cfg.family).items():
        blobs = live.elements.get(name, [])
        if (not want and not blobs) or wanted.verified(name, blobs):
            continue
        have_set = element_set(blobs, want_set)
        if have_set == want_set:
            wanted.mark_verified(name, blobs)
            continue
        missing = [] if want_set <= have_set else [i for i, e in enumerate(want) if e not in have_set]
        stray = sorted(have_set - want_set)
        stray_keys = [element_key(e, name, cfg.family) for e in stray]
        if any(k is None for k in stray_keys):  # unreadable: start that set afresh
            flushed.append(FlushSet(name, is_map=is_map))
            missing = list(range(len(want)))
        elif stray_keys:
            dels.append(DeleteElements(name, tuple(k for k in stray_keys if k is not None)))
        if missing:
            adds.append(pick(missing))

    out: list[Command] = [AddChain(c) for c in added]
    out += [FlushChain(c) for c in (*rewritten, *stale)]
    out += flushed + dels
    out += [AddRule(c, r) for c in (*added, *rewritten) for r in rs.chains[c]]
    out += adds
    out += [DeleteChain(c) for c in stale]
    out += [DeleteSet(s) for s in sorted(live.sets) if s.startswith("affinity-") and s not in rs.affinity_sets]
    out += [DeleteSet(m, is_map=True) for m in sorted(live.sets)
            if m.startswith(ENDPOINT_MAP + "-") and m not in rs.endpoint_maps]
    return out
