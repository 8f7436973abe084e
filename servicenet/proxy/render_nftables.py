"""Pure nftables renderer: :class:`DesiredState` -> ``nft -f`` transactions.

The table is upstream's ``ip kube-proxy``: the ``service-ips`` / ``service-nodeports`` verdict
maps, the no-endpoint maps, the firewall map, ``cluster-ips`` and ``nodeport-ips`` and one
``service-<H>-ns/name/proto/port`` chain (``local-``, ``external-``, ``firewall-``) per service
port. Load balancing follows upstream's newer compact form (v1.36+: no per-endpoint chains
for services without affinity, the service chain DNATs straight away, hairpin detected by a
set), except where the endpoints live. Upstream gives every service an anonymous map; here
they live in a few shared named maps, ``service-endpoints-<k>``, and each service chain reads
its own key range of one of them::

    meta l4proto tcp dnat ip addr . port to numgen random mod 3 offset 48 map @service-endpoints-5
    service-endpoints-5: { 48 : 10.180.0.1 . 80, 49 : 10.180.0.2 . 80, 50 : 10.180.0.3 . 80 }

Why (measured on Linux 6.18, 10k services x 10 endpoints in one transaction): the kernel finds
sets by walking the table's list of sets and, for each anonymous set, walks the whole pending
transaction, so 10k per-service sets cost tens of seconds; and it checks every element of a
data map against every rule that reads the map, so one map read by 10k chains is quadratic
too. About sqrt(elements) maps balance the two (:func:`shards_for`); a full sync stays linear.

A service with one endpoint DNATs to it directly. Services with ClientIP affinity keep the GA
layout: per-endpoint chains, per-endpoint ``affinity-`` sets and ``numgen ... vmap``. Hairpin
traffic (a pod reaching itself through a service) is recognised after DNAT by the
``hairpin-connections`` set of ``ip . ip`` pairs and masqueraded.

The key ranges are handed out by :class:`nft_blocks.Blocks` (state as data, kept by the caller
between syncs). :func:`build` computes an :class:`NftRuleset` (the per-service part as data);
:func:`content_transaction` writes every service's objects, :func:`incremental_transaction`
only the difference between two rulesets, :func:`partial_transaction` the difference for a few
services: as typed commands (:mod:`nft_commands`), which :func:`nft_commands.render` writes as
``nft -f`` text and :mod:`nft_encode` as a netlink batch. The fixed part of the table (base
chains, sets, maps) is :mod:`nft_skeleton`.
"""
from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from servicenet.proxy import names
from servicenet.proxy.model import DesiredState, Endpoint, ServicePortName, ServiceState
from servicenet.proxy.nft_blocks import Blocks, NeedFullSync, shards_for  # noqa: F401 (shards_for: for callers)
from servicenet.proxy.nft_commands import (
    JUMP_MASQ,
    L4,
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
    FibLocal,
    FlushChain,
    FlushSet,
    Key,
    NumgenVmap,
    PortKey,
    Rule,
    Target,
    UpdateSet,
    Value,
    Verdict,
    make,
    render,
)
from servicenet.proxy.nft_skeleton import (
    ENDPOINT_MAP,
    HAIRPIN_SET,
    MAPS,
    SETS,
    NftConfig,
    skeleton_transaction,
)

Chains = dict[str, tuple[Rule, ...]]
ElementMap = dict[Key, Value]
GOTO_REJECT, DROP = Verdict("goto", "reject-chain"), Verdict("drop")


@dataclass(frozen=True, slots=True)
class NftRuleset:
    """The per-service part of the table, as data."""

    chains: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)  # name -> rules, in order
    affinity_sets: Mapping[str, int] = field(default_factory=dict)  # name -> timeout seconds
    maps: Mapping[str, Mapping[Key, Value]] = field(default_factory=dict)  # map -> key -> value
    sets: Mapping[str, frozenset[str]] = field(default_factory=dict)  # (hairpin: addresses, not pairs)
    endpoint_maps: tuple[str, ...] = (f"{ENDPOINT_MAP}-0",)  # every shard map the table needs
    fragments: tuple[Fragment, ...] = field(default=(), compare=False, repr=False)  # what it was made from
    endpoints: bool = field(default=True, compare=False, repr=False)  # whether ``maps`` has the endpoint maps

    def bulk(self) -> tuple[dict[str, list[tuple[int, tuple[Endpoint, ...]]]], frozenset[str]]:
        """The endpoint map elements as ``(base, endpoints)`` runs per map, and the hairpin addresses.

        The same content as ``maps[service-endpoints-*]`` (endpoint ``i`` of a run has key
        ``base + i``) and ``sets[hairpin-connections]`` (each address ``a`` is the pair ``a . a``),
        for a writer that encodes it straight from the model's data.
        """
        return endpoint_runs(self.fragments), self.sets.get(HAIRPIN_SET, frozenset())


@dataclass(slots=True, eq=False)
class Fragment:
    """The objects one service port contributes (cached between syncs; never modified).

    Endpoint map entries are kept as data (``lbs``) and hairpin entries as plain addresses;
    their element values are made only when a transaction lists them one by one.
    """

    state: ServiceState
    chains: Chains
    aff: dict[str, int]
    maps: dict[str, ElementMap]
    sets: dict[str, tuple[str, ...]]  # contributions to the shared (reference-counted) sets
    lbs: tuple[tuple[str, str, int, tuple[Endpoint, ...]], ...] = ()  # (chain, map, base, endpoints)
    shards: int = 1

    def current(self, st: ServiceState, blocks: Blocks) -> bool:
        if not (self.state is st or self.state == st) or self.shards != blocks.shards:
            return False
        owned = blocks.owned  # (inline Blocks.holds: 10^4 calls per full sync)
        for c, _, b, _ in self.lbs:
            cur = owned.get(c)
            if cur is None or cur[0] != b:
                return False
        return True


FragmentCache = dict[Any, Fragment]


def render_fragment(st: ServiceState, cfg: NftConfig, blocks: Blocks) -> Fragment:
    sp, spn = st.port, st.port.name
    proto = spn.proto
    sfx = names.nft_suffix(spn)
    svc_chain, local_chain = "service-" + sfx, "local-" + sfx
    ext_chain, fw_chain = "external-" + sfx, "firewall-" + sfx
    chains: Chains = {}
    aff: dict[str, int] = {}
    maps: dict[str, ElementMap] = {}
    has_endpoints = st.has_any
    internal, external = st.internal, st.external
    internal_chain = local_chain if sp.internal_policy_local else svc_chain
    external_chain = local_chain if sp.external_policy_local else svc_chain
    exposed = sp.externally_accessible
    uses_ext = has_endpoints and exposed
    uses_fw = uses_ext and bool(sp.lb_ips) and bool(sp.lb_source_ranges)
    affinity = sp.affinity_timeout is not None

    int_verdict = ext_verdict = GOTO_REJECT
    if has_endpoints:
        int_verdict = ext_verdict = DROP  # (used only when the policy's endpoints are missing)

    # (the values are built with make(): the hot loop of a full sync, fields all generated here)
    if internal:
        maps["service-ips"] = {make(PortKey, (sp.cluster_ip, proto, sp.port)): make(Verdict, ("goto", internal_chain))}
    else:
        maps["no-endpoint-services"] = {make(PortKey, (sp.cluster_ip, proto, sp.port)): int_verdict}
    if exposed:
        to_ext, to_fw = make(Verdict, ("goto", ext_chain)), make(Verdict, ("goto", fw_chain))
        for ip in (*sp.external_ips, *sp.lb_ips):
            key = make(PortKey, (ip, proto, sp.port))
            if has_endpoints:
                maps.setdefault("service-ips", {})[key] = to_ext
            if uses_fw and ip in sp.lb_ips:
                maps.setdefault("firewall-ips", {})[key] = to_fw
            if not external:
                maps.setdefault("no-endpoint-services", {})[key] = ext_verdict
        if sp.node_port:
            key = make(PortKey, (None, proto, sp.node_port))
            if has_endpoints:
                maps["service-nodeports"] = {key: to_ext}
            if not external:
                maps["no-endpoint-nodeports"] = {key: ext_verdict}

    reachable = st.reachable
    if affinity:
        # Endpoint chains first: a transaction must create a chain before a rule references it.
        for ep in reachable:
            aset = names.nft_affinity(spn, ep)
            aff[aset] = int(sp.affinity_timeout or 0)
            chains[names.nft_endpoint(spn, ep)] = (Rule((Addr("saddr", ep.ip), JUMP_MASQ)),
                                                   Rule((UpdateSet(aset),)),
                                                   Rule((L4[proto], Dnat(ep.ip, ep.port))))

    lbs: list[tuple[str, str, int, tuple[Endpoint, ...]]] = []
    lb: list[tuple[str, tuple[Endpoint, ...]]] = []
    if st.cluster and sp.uses_cluster_endpoints:
        lb.append((svc_chain, st.cluster))
    if st.local and sp.uses_local_endpoints:
        lb.append((local_chain, st.local))
    for ch, eps in lb:
        n = len(eps)
        if affinity:
            targets = tuple(Verdict("goto", names.nft_endpoint(spn, ep)) for ep in eps)
            chains[ch] = (*(Rule((AddrInSet("saddr", names.nft_affinity(spn, ep)), t))
                            for ep, t in zip(eps, targets, strict=True)),
                          Rule((NumgenVmap(targets),)))
        elif n == 1:
            chains[ch] = (make(Rule, ((L4[proto], make(Dnat, (eps[0].ip, eps[0].port))), "")),)
        else:
            base = blocks.fit(ch, n)
            mname = blocks.map_for(ch)
            lbs.append((ch, mname, base, eps))
            chains[ch] = (make(Rule, ((L4[proto], make(DnatMap, (n, base, mname))), "")),)

    if uses_ext:
        rules: list[Rule] = []
        to_svc = Verdict("goto", svc_chain)
        if not sp.external_policy_local:
            rules.append(Rule((JUMP_MASQ,)))
        else:
            if cfg.cluster_cidr:
                rules.append(Rule((Addr("saddr", cfg.cluster_cidr), to_svc), "short-circuit pod traffic"))
            rules.append(Rule((FibLocal("saddr"), JUMP_MASQ), "masquerade local traffic"))
            rules.append(Rule((FibLocal("saddr"), to_svc), "short-circuit local traffic"))
        if external:
            rules.append(Rule((Verdict("goto", external_chain),)))
        chains[ext_chain] = tuple(rules)
    if uses_fw:
        chains[fw_chain] = (Rule((AddrNotInRanges("saddr", sp.lb_source_ranges), DROP)),)
    sets = {"cluster-ips": (sp.cluster_ip,), HAIRPIN_SET: tuple([ep.ip for ep in reachable])}
    return Fragment(st, chains, aff, maps, sets, tuple(lbs), blocks.shards)


def _release(frag: Fragment, blocks: Blocks) -> None:
    for c, _, b, _ in frag.lbs:
        if blocks.holds(c, b):
            blocks.release(c)


def assemble(frags: Sequence[Fragment], node_ips: Iterable[str], cfg: NftConfig,
             endpoint_maps: tuple[str, ...], endpoints: bool = True) -> NftRuleset:
    """The ruleset made of ``frags``; with ``endpoints=False`` the endpoint maps' elements are
    left out of ``maps`` (see :meth:`NftRuleset.bulk`)."""
    chains: Chains = {}
    aff: dict[str, int] = {}
    maps: dict[str, ElementMap] = {m: {} for m in MAPS}
    sets: dict[str, set[str]] = {"cluster-ips": set(), HAIRPIN_SET: set()}
    for f in frags:
        chains.update(f.chains)
        if f.aff:
            aff.update(f.aff)
        for m, elems in f.maps.items():
            if elems:
                maps[m].update(elems)
        for s, elems in f.sets.items():
            sets[s].update(elems)
        if endpoints:
            for _, mname, base, eps in f.lbs:
                maps.setdefault(mname, {}).update({i: make(Target, (ep.ip, ep.port)) for i, ep in enumerate(eps, base)})
    out = {s: frozenset(v) for s, v in sets.items()}
    if cfg.nodeport_primary:
        out["nodeport-ips"] = frozenset(node_ips)
    return NftRuleset(chains=chains, affinity_sets=aff, maps=maps, sets=out, endpoint_maps=endpoint_maps,
                      fragments=tuple(frags), endpoints=endpoints)


def _same_assembly(rs: NftRuleset, frags: Sequence[Fragment], node_ips: Iterable[str], cfg: NftConfig,
                   endpoint_maps: tuple[str, ...], endpoints: bool) -> bool:
    """Whether ``assemble(frags, node_ips, cfg, endpoint_maps, endpoints)`` would give ``rs``
    (assembled from the very same fragment objects, in the same order)."""
    if rs.endpoints != endpoints or rs.endpoint_maps != endpoint_maps or len(rs.fragments) != len(frags):
        return False
    if cfg.nodeport_primary and rs.sets.get("nodeport-ips") != frozenset(node_ips):
        return False
    return all(map(operator.is_, rs.fragments, frags))


def build(state: DesiredState, cfg: NftConfig, cache: FragmentCache | None = None,
          blocks: Blocks | None = None, *, endpoints: bool = True, previous: NftRuleset | None = None) -> NftRuleset:
    """The per-service objects of ``state``.

    With ``cache`` (kept by the caller between syncs, with its ``blocks``) services whose
    :class:`ServiceState` did not change reuse their previous fragment, so a sync renders
    O(changed) rules. Without ``blocks`` the key ranges are allocated afresh. With
    ``endpoints=False`` the endpoint maps are left out of ``maps`` (see :meth:`NftRuleset.bulk`).
    ``previous`` (an earlier result for this ``cfg``, never modified) is returned as it is when
    it was assembled from exactly the fragments this build ends with: a resync over an
    unchanged world does not assemble 10^4 fragments again.
    """
    if blocks is None:
        blocks, cache = Blocks(), None
    fresh: FragmentCache = {}
    names_ = state.sorted_names()
    # release the ranges of everything that is not reused before handing out new ones
    old = cache or {}
    for spn, frag in old.items():
        st = state.services.get(spn)
        if st is None or not frag.current(st, blocks):
            _release(frag, blocks)
    for spn in names_:
        st = state.services[spn]
        frag = old.get(spn)
        if frag is None or not frag.current(st, blocks):
            frag = render_fragment(st, cfg, blocks)
        fresh[spn] = frag
    used = {lb[0] for f in fresh.values() for lb in f.lbs}
    for c in [c for c in blocks.owned if c not in used]:
        blocks.release(c)
    if cache is not None:
        cache.clear()
        cache.update(fresh)
    frags = [fresh[n] for n in names_]
    if previous is not None and _same_assembly(previous, frags, state.node_ips, cfg, blocks.maps, endpoints):
        return previous
    return assemble(frags, state.node_ips, cfg, blocks.maps, endpoints)


@dataclass(slots=True)
class Programmed:
    """What a sync left in the kernel, per service: the input of the next partial sync.

    :func:`partial_transaction` updates it in place (a full copy per sync would cost
    O(services)); after a failed sync the caller drops it and does a full sync.
    """

    fragments: dict[ServicePortName, Fragment]
    refs: dict[str, Counter[str]]  # shared set -> element -> number of service ports holding it
    node_ips: frozenset[str]

    @property
    def cluster_ips(self) -> Counter[str]:
        return self.refs["cluster-ips"]

    @classmethod
    def of(cls, state: DesiredState, cfg: NftConfig, cache: FragmentCache) -> Programmed:
        """After a full sync of ``state`` whose :func:`build` filled ``cache``."""
        frags = {spn: cache[spn] for spn in state.services}
        refs = {s: Counter(chain.from_iterable(f.sets[s] for f in frags.values())) for s in ("cluster-ips", HAIRPIN_SET)}
        return cls(frags, refs, frozenset(state.node_ips) if cfg.nodeport_primary else frozenset())


def partial_transaction(prog: Programmed, state: DesiredState, changed: Iterable[ServicePortName],
                        cfg: NftConfig, blocks: Blocks) -> tuple[list[Command], Programmed]:
    """The commands for the services in ``changed`` only; ``prog`` updated to match.

    Costs O(changed services), not O(all services): only the fragments of those services
    are rendered and compared. Shared set elements (ClusterIPs, hairpin pairs) are
    reference-counted. Raises :class:`NeedFullSync` like :func:`incremental_transaction`
    (``prog`` is then left as it was, but the caller should do a full sync anyway).
    """
    names_ = set(changed)
    old = [prog.fragments[n] for n in names_ if n in prog.fragments]
    for f in old:
        if state.services.get(f.state.port.name) != f.state:
            _release(f, blocks)
    new: dict[ServicePortName, Fragment] = {}
    for n in names_:
        st = state.services.get(n)
        if st is not None:
            f = prog.fragments.get(n)
            new[n] = f if f is not None and f.current(st, blocks) else render_fragment(st, cfg, blocks)
    before: dict[str, frozenset[str]] = {}
    after: dict[str, frozenset[str]] = {}
    deltas: dict[str, Counter[str]] = {}
    for s, cnt in prog.refs.items():
        d: Counter[str] = Counter(e for f in new.values() for e in f.sets.get(s, ()))
        d.subtract(e for f in old for e in f.sets.get(s, ()))
        before[s] = frozenset(e for e in d if cnt.get(e, 0) > 0)
        after[s] = frozenset(e for e in d if cnt.get(e, 0) + d[e] > 0)
        deltas[s] = d
    node_ips = frozenset(state.node_ips) if cfg.nodeport_primary else frozenset()
    tx = incremental_transaction(_mini(old, before, prog.node_ips, cfg, blocks.maps),
                                 _mini(new.values(), after, node_ips, cfg, blocks.maps), cfg)
    for s, d in deltas.items():
        cnt = prog.refs[s]
        for e, k in d.items():
            if k:
                v = cnt.get(e, 0) + k
                if v > 0:
                    cnt[e] = v
                else:
                    cnt.pop(e, None)
    for n in names_:
        prog.fragments.pop(n, None)
    prog.fragments.update(new)
    prog.node_ips = node_ips
    return tx, prog


def _mini(frags: Iterable[Fragment], sets: Mapping[str, frozenset[str]], node_ips: frozenset[str],
          cfg: NftConfig, endpoint_maps: tuple[str, ...]) -> NftRuleset:
    rs = assemble(list(frags), node_ips, cfg, endpoint_maps)
    return NftRuleset(rs.chains, rs.affinity_sets, rs.maps, {**rs.sets, **sets}, endpoint_maps)


def _set_key(name: str, e: str) -> Key:
    return AddrPair(e, e) if name == HAIRPIN_SET else e


def _elements(rs: NftRuleset, which: Iterable[str]) -> list[Command]:
    """One command per map or set of ``which`` with all its elements (none if it is empty)."""
    out: list[Command] = []
    for m in which:
        if m in rs.maps:
            elems = rs.maps[m]
            if elems:
                out.append(AddElements(m, tuple(elems), tuple(elems.values())))
        else:
            keys = sorted(rs.sets.get(m, ()))
            if keys:
                out.append(AddElements(m, tuple(keys) if m != HAIRPIN_SET else tuple(AddrPair(e, e) for e in keys)))
    return out


def _is_endpoint_map(name: str) -> bool:
    return name.startswith(ENDPOINT_MAP + "-")


def content_transaction(rs: NftRuleset, cfg: NftConfig, existing_chains: Iterable[str] | None = None,
                        existing_sets: Iterable[str] = (), *, bulk: bool = True) -> list[Command]:
    """Every service's objects, replacing whatever the table held before (one transaction).

    Needs the skeleton declared with ``rs.endpoint_maps`` and the affinity sets of ``rs``.
    Maps and shared sets are flushed and refilled; every service chain is created or flushed
    and rewritten; service chains, affinity sets and endpoint maps in ``existing_*`` but not in
    ``rs`` are deleted after the rules that used them. Affinity sets that stay keep their
    entries. With ``bulk=False`` the elements of the endpoint maps and of the hairpin set are
    left out: the caller adds them (from :meth:`NftRuleset.bulk`) after the rest.
    """
    existing, sets_before = set(existing_chains or ()), set(existing_sets)
    emaps = [m for m in rs.endpoint_maps if m in rs.maps]
    out: list[Command] = []
    if existing_chains is not None:  # (None: a table just created, nothing to flush)
        out += [FlushSet(s) for s in SETS if s in rs.sets]
        out += [FlushSet(m, is_map=True) for m in (*MAPS, *rs.endpoint_maps)]
    out += [make(AddChain, (c,)) for c in rs.chains if c not in existing]
    out += [make(FlushChain, (c,)) for c in rs.chains if c in existing]
    out += [make(AddRule, (c, r)) for c, rules in rs.chains.items() for r in rules]
    # endpoint maps after the rules that read them: checking each new element against the
    # (few) rules of its shard is cheaper than walking the shard once per binding rule
    if bulk:
        out += _elements(rs, (*SETS, *MAPS, *emaps))
    else:
        out += _elements(rs, (*(s for s in SETS if s != HAIRPIN_SET), *MAPS))
    stale = sorted(c for c in existing if "/" in c and c not in rs.chains)
    out += [FlushChain(c) for c in stale]
    out += [DeleteChain(c) for c in stale]
    out += [DeleteSet(s) for s in sorted(sets_before) if s.startswith("affinity-") and s not in rs.affinity_sets]
    out += [DeleteSet(m, is_map=True) for m in sorted(sets_before)
            if _is_endpoint_map(m) and m not in rs.endpoint_maps]
    return out


def full_transaction(rs: NftRuleset, cfg: NftConfig, *, existing_chains: Iterable[str] | None = None,
                     existing_sets: Iterable[str] | None = None) -> str:
    """Everything, as one ``nft -f`` transaction (text).

    With ``existing_*`` unknown (None) the table is dropped and recreated. Otherwise the
    skeleton is re-declared and its fixed rules rewritten, then :func:`content_transaction`.
    """
    skeleton = skeleton_transaction(cfg, rs.endpoint_maps, rs.affinity_sets, fresh=existing_chains is None)
    content = content_transaction(rs, cfg, existing_chains, existing_sets or ())
    return skeleton + render(content, cfg.family, cfg.table)


def affinity_sets(state: DesiredState) -> dict[str, int]:
    """The affinity sets ``state`` needs (name -> timeout), without rendering anything else."""
    out: dict[str, int] = {}
    for spn in state.sorted_names():  # the order build() declares them in
        st = state.services[spn]
        if st.port.affinity_timeout is not None:
            for ep in st.reachable:
                out[names.nft_affinity(st.port.name, ep)] = int(st.port.affinity_timeout)
    return out


def endpoint_runs(frags: Iterable[Fragment]) -> dict[str, list[tuple[int, tuple[Endpoint, ...]]]]:
    """Endpoint map content of ``frags`` as ``(base, endpoints)`` runs per map (see :meth:`NftRuleset.bulk`)."""
    emaps: dict[str, list[tuple[int, tuple[Endpoint, ...]]]] = {}
    for f in frags:
        for _, mname, base, eps in f.lbs:
            emaps.setdefault(mname, []).append((base, eps))
    return emaps


def prepare_transaction(frags: Sequence[Fragment], cfg: NftConfig) -> list[Command]:
    """The chains and rules of ``frags``, for a table that does not have them yet.

    Nothing reaches these chains before :func:`switch_transaction` fills the dispatch maps,
    so this can go out in pieces, ahead of the switch. (Their endpoint map elements go with
    them, from :func:`endpoint_runs`.)
    """
    out: list[Command] = [make(AddChain, (c,)) for f in frags for c in f.chains]
    out += [make(AddRule, (c, r)) for f in frags for c, rules in f.chains.items() for r in rules]
    return out


def switch_transaction(rs: NftRuleset, cfg: NftConfig) -> list[Command]:
    """After :func:`prepare_transaction` of every fragment of ``rs`` into a fresh table: the
    dispatch maps and shared sets that make it all live, in one transaction (the hairpin
    pairs are left to the caller, as with ``content_transaction(bulk=False)``)."""
    return _elements(rs, (*(s for s in SETS if s != HAIRPIN_SET), *MAPS))


def _touched_maps(old: NftRuleset, new: NftRuleset) -> list[str]:
    """The maps of ``(*MAPS, *new.endpoint_maps)`` either side has elements for, in that order: a
    partial sync touches a few of the ~sqrt(2 x endpoints) endpoint maps and skips the rest."""
    have = old.maps.keys() | new.maps.keys()
    out = [m for m in MAPS if m in have]
    if len(have) > len(out):
        order = _ORDERS.get(new.endpoint_maps)
        if order is None:
            if len(_ORDERS) > 8:
                _ORDERS.clear()
            order = _ORDERS[new.endpoint_maps] = {m: i for i, m in enumerate(new.endpoint_maps) if m not in MAPS}
        out += sorted((m for m in have if m in order), key=order.__getitem__)
    return out


_ORDERS: dict[tuple[str, ...], dict[str, int]] = {}  # endpoint maps -> position (one entry per sharding)


def incremental_transaction(old: NftRuleset, new: NftRuleset, cfg: NftConfig) -> list[Command]:
    """Only what changed between ``old`` (programmed) and ``new`` (empty if nothing).

    Both must use the same endpoint maps (a new sharding needs a full sync).
    """
    if old.endpoint_maps != new.endpoint_maps:
        raise NeedFullSync("endpoint maps changed")
    for s, to in new.affinity_sets.items():
        if s in old.affinity_sets and old.affinity_sets[s] != to:
            raise NeedFullSync(f"affinity timeout of {s} changed")
    out: list[Command] = [AddAffinitySet(n, to) for n, to in new.affinity_sets.items() if n not in old.affinity_sets]
    added = [c for c in new.chains if c not in old.chains]
    changed = [c for c, r in new.chains.items() if c in old.chains and old.chains[c] != r]
    out += [AddChain(c) for c in added]
    out += [FlushChain(c) for c in changed]
    dels: list[Command] = []
    adds: list[Command] = []
    for s in SETS:
        o, n = old.sets.get(s, frozenset()), new.sets.get(s, frozenset())
        dels += [DeleteElements(s, (_set_key(s, e),)) for e in sorted(o - n)]
        adds += [AddElements(s, (_set_key(s, e),)) for e in sorted(n - o)]
    for m in _touched_maps(old, new):
        om, nm = old.maps.get(m, {}), new.maps.get(m, {})
        dels += [DeleteElements(m, (k,)) for k, v in om.items() if nm.get(k) != v]
        adds += [AddElements(m, (k,), (v,)) for k, v in nm.items() if om.get(k) != v]
    # (verdict elements may point at chains added above: those are declared first)
    for c in (*added, *changed):
        out += [AddRule(c, r) for r in new.chains[c]]
    out += dels + adds
    stale = [c for c in old.chains if c not in new.chains]
    out += [FlushChain(c) for c in stale]
    out += [DeleteChain(c) for c in stale]
    out += [DeleteSet(s) for s in old.affinity_sets if s not in new.affinity_sets]
    return out
