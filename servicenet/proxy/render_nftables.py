"""Pure nftables renderer: :class:`DesiredState` -> ``nft -f -`` transactions.

Layout of the upstream nftables proxier (GA-era format with per-endpoint chains): table
``ip kube-proxy`` with the ``service-ips`` / ``service-nodeports`` verdict maps, the
no-endpoint maps, per-service ``service-<H>-ns/name/proto/port`` chains that pick an
endpoint chain with ``numgen random mod N vmap``, and per-endpoint affinity sets.

:func:`build` computes an :class:`NftRuleset` (the per-service part as data);
:func:`full_transaction` renders everything, :func:`incremental_transaction` renders only
the difference between two rulesets (changed chains, element adds/deletes, stale objects).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from servicenet.proxy import names
from servicenet.proxy.model import DesiredState, Endpoint, ServicePortName, ServiceState

MAPS = ("service-ips", "service-nodeports", "no-endpoint-services", "no-endpoint-nodeports", "firewall-ips")
SETS = ("cluster-ips", "nodeport-ips")
BASE_CHAINS = (
    ("nat-prerouting", "nat", "prerouting", -100), ("nat-output", "nat", "output", -100),
    ("nat-postrouting", "nat", "postrouting", 100),
    ("filter-prerouting-pre-dnat", "filter", "prerouting", -110),
    ("filter-output-pre-dnat", "filter", "output", -110),
    ("filter-input", "filter", "input", 0), ("filter-forward", "filter", "forward", 0),
    ("filter-output", "filter", "output", 0),
)
AUX_CHAINS = ("services", "masquerading", "mark-for-masquerade", "service-endpoints-check",
              "nodeport-endpoints-check", "cluster-ips-check", "firewall-check")


@dataclass(frozen=True, slots=True)
class NftConfig:
    family: str = "ip"  # "ip" or "ip6"
    table: str = "kube-proxy"
    cluster_cidr: str | None = None
    service_cidrs: tuple[str, ...] = ()
    masquerade_all: bool = False
    masquerade_bit: int = 14
    nodeport_primary: bool = True  # NodePorts on the node's own IPs (else: any local address)

    @property
    def ipx(self) -> str:
        return "ip" if self.family == "ip" else "ip6"

    @property
    def addr_type(self) -> str:
        return "ipv4_addr" if self.family == "ip" else "ipv6_addr"

    @property
    def loopback(self) -> str:
        return "127.0.0.0/8" if self.family == "ip" else "::1"

    @property
    def mark(self) -> str:
        return hex(1 << self.masquerade_bit)


@dataclass(frozen=True, slots=True)
class NftRuleset:
    """The per-service part of the table, as data."""

    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # name -> rules, in order
    affinity_sets: Mapping[str, int] = field(default_factory=dict)  # name -> timeout seconds
    maps: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # map -> key -> verdict
    sets: Mapping[str, frozenset[str]] = field(default_factory=dict)


def _service(st: ServiceState, cfg: NftConfig, chains: dict[str, tuple[str, ...]],
             aff: dict[str, int], maps: dict[str, dict[str, str]], cluster_ips: set[str]) -> None:
    sp, spn = st.port, st.port.name
    ipx, proto = cfg.ipx, spn.proto
    svc_chain, local_chain = names.nft_service(spn), names.nft_local(spn)
    ext_chain, fw_chain = names.nft_external(spn), names.nft_firewall(spn)
    cluster, local, reachable = st.cluster, st.local, st.reachable
    uses_cluster = bool(cluster) and sp.uses_cluster_endpoints
    uses_local = bool(local) and sp.uses_local_endpoints
    has_endpoints = st.has_any
    internal_chain = local_chain if sp.internal_policy_local else svc_chain
    external_chain = local_chain if sp.external_policy_local else svc_chain
    has_internal, has_external = bool(st.internal), bool(st.external)
    uses_ext = has_endpoints and sp.externally_accessible
    uses_fw = uses_ext and bool(sp.lb_ips) and bool(sp.lb_source_ranges)
    affinity = sp.affinity_timeout is not None

    int_verdict = ext_verdict = "goto reject-chain"
    if has_endpoints:
        int_verdict = "" if has_internal else "drop"
        ext_verdict = "" if has_external else "drop"

    cluster_ips.add(sp.cluster_ip)
    key = f"{proto} . {sp.port}"
    if has_internal:
        maps["service-ips"][f"{sp.cluster_ip} . {key}"] = f"goto {internal_chain}"
    else:
        maps["no-endpoint-services"][f"{sp.cluster_ip} . {key}"] = int_verdict
    for ip in sp.external_ips:
        if has_endpoints:
            maps["service-ips"][f"{ip} . {key}"] = f"goto {ext_chain}"
        if not has_external:
            maps["no-endpoint-services"][f"{ip} . {key}"] = ext_verdict
    for ip in sp.lb_ips:
        if has_endpoints:
            maps["service-ips"][f"{ip} . {key}"] = f"goto {ext_chain}"
        if uses_fw:
            maps["firewall-ips"][f"{ip} . {key}"] = f"goto {fw_chain}"
        if not has_external:
            maps["no-endpoint-services"][f"{ip} . {key}"] = ext_verdict
    if sp.node_port:
        if has_endpoints:
            maps["service-nodeports"][f"{proto} . {sp.node_port}"] = f"goto {ext_chain}"
        if not has_external:
            maps["no-endpoint-nodeports"][f"{proto} . {sp.node_port}"] = ext_verdict

    # Endpoint chains first: a transaction must create a chain before a rule references it.
    for ep in reachable:
        ep_chain = names.nft_endpoint(spn, ep)
        rules = [f"{ipx} saddr {ep.ip} jump mark-for-masquerade"]
        if affinity:
            aset = names.nft_affinity(spn, ep)
            aff[aset] = int(sp.affinity_timeout or 0)
            rules.append(f"update @{aset} {{ {ipx} saddr }}")
        rules.append(f"meta l4proto {proto} dnat to {ep.addr}")
        chains[ep_chain] = tuple(rules)

    svc_rules: dict[str, list[str]] = {}
    if uses_cluster:
        svc_rules[svc_chain] = []
    if uses_local:
        svc_rules[local_chain] = []
    if has_internal:
        if cfg.masquerade_all:
            svc_rules[internal_chain].append(
                f"{ipx} daddr {sp.cluster_ip} {proto} dport {sp.port} jump mark-for-masquerade")
        elif cfg.cluster_cidr:
            svc_rules[internal_chain].append(
                f"{ipx} daddr {sp.cluster_ip} {ipx} saddr != {cfg.cluster_cidr} jump mark-for-masquerade")
    for ch, eps in ((svc_chain, cluster), (local_chain, local)):
        if ch in svc_rules:
            svc_rules[ch] += _lb_rules(st, eps, cfg)
    for ch, rules in svc_rules.items():
        chains[ch] = tuple(rules)
    if uses_ext:
        rules = []
        if not sp.external_policy_local:
            rules.append("jump mark-for-masquerade")
        else:
            if cfg.cluster_cidr:
                rules.append(f'{ipx} saddr {cfg.cluster_cidr} goto {svc_chain} comment "short-circuit pod traffic"')
            rules.append('fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"')
            rules.append(f'fib saddr type local goto {svc_chain} comment "short-circuit local traffic"')
        if has_external:
            rules.append(f"goto {external_chain}")
        chains[ext_chain] = tuple(rules)
    if uses_fw:
        ranges = ", ".join(sp.lb_source_ranges)
        chains[fw_chain] = (f"{ipx} saddr != {{ {ranges} }} drop",)


def _lb_rules(st: ServiceState, eps: tuple[Endpoint, ...], cfg: NftConfig) -> list[str]:
    spn = st.port.name
    out = []
    if st.port.affinity_timeout is not None:
        out += [f"{cfg.ipx} saddr @{names.nft_affinity(spn, ep)} goto {names.nft_endpoint(spn, ep)}" for ep in eps]
    elems = " , ".join(f"{i} : goto {names.nft_endpoint(spn, ep)}" for i, ep in enumerate(eps))
    out.append(f"numgen random mod {len(eps)} vmap {{ {elems} }}")
    return out


@dataclass(frozen=True, slots=True)
class _Fragment:
    """The objects one service port contributes (cached between syncs)."""

    state: ServiceState
    chains: dict[str, tuple[str, ...]]
    aff: dict[str, int]
    maps: dict[str, dict[str, str]]


FragmentCache = dict[Any, _Fragment]


def _fragment(st: ServiceState, cfg: NftConfig) -> _Fragment:
    fc: dict[str, tuple[str, ...]] = {}
    fa: dict[str, int] = {}
    fm: dict[str, dict[str, str]] = {m: {} for m in MAPS}
    _service(st, cfg, fc, fa, fm, set())
    return _Fragment(st, fc, fa, fm)


def build(state: DesiredState, cfg: NftConfig, cache: FragmentCache | None = None) -> NftRuleset:
    """The per-service objects of ``state``.

    With ``cache`` (kept by the caller between syncs) services whose :class:`ServiceState`
    did not change reuse their previous fragment, so a sync renders O(changed) rules.
    """
    chains: dict[str, tuple[str, ...]] = {}
    aff: dict[str, int] = {}
    maps: dict[str, dict[str, str]] = {m: {} for m in MAPS}
    cluster_ips: set[str] = set()
    fresh: FragmentCache = {}
    for spn in state.sorted_names():
        st = state.services[spn]
        frag = cache.get(spn) if cache is not None else None
        if frag is None or frag.state != st:
            frag = _fragment(st, cfg)
        fresh[spn] = frag
        chains.update(frag.chains)
        aff.update(frag.aff)
        for m, elems in frag.maps.items():
            if elems:
                maps[m].update(elems)
        cluster_ips.add(st.port.cluster_ip)
    if cache is not None:
        cache.clear()
        cache.update(fresh)
    sets = {"cluster-ips": frozenset(cluster_ips)}
    if cfg.nodeport_primary:
        sets["nodeport-ips"] = frozenset(state.node_ips)
    return NftRuleset(chains=chains, affinity_sets=aff, maps=maps, sets=sets)


@dataclass(frozen=True, slots=True)
class Programmed:
    """What a sync left in the kernel, per service: the input of the next partial sync."""

    fragments: Mapping[ServicePortName, _Fragment]
    cluster_ips: Counter[str]  # ClusterIP -> number of service ports using it
    node_ips: frozenset[str]

    @classmethod
    def of(cls, state: DesiredState, cfg: NftConfig, cache: FragmentCache) -> Programmed:
        """After a full sync of ``state`` whose :func:`build` filled ``cache``."""
        frags = {spn: cache.get(spn) or _fragment(st, cfg) for spn, st in state.services.items()}
        ips = Counter(st.port.cluster_ip for st in state.services.values())
        return cls(frags, ips, frozenset(state.node_ips) if cfg.nodeport_primary else frozenset())


def _mini(frags: Iterable[_Fragment], cluster_ips: frozenset[str], node_ips: frozenset[str],
          cfg: NftConfig) -> NftRuleset:
    chains: dict[str, tuple[str, ...]] = {}
    aff: dict[str, int] = {}
    maps: dict[str, dict[str, str]] = {m: {} for m in MAPS}
    for f in frags:
        chains.update(f.chains)
        aff.update(f.aff)
        for m, elems in f.maps.items():
            maps[m].update(elems)
    sets = {"cluster-ips": cluster_ips}
    if cfg.nodeport_primary:
        sets["nodeport-ips"] = node_ips
    return NftRuleset(chains=chains, affinity_sets=aff, maps=maps, sets=sets)


def partial_transaction(prog: Programmed, state: DesiredState, changed: Iterable[ServicePortName],
                        cfg: NftConfig) -> tuple[str, Programmed]:
    """The transaction for the services in ``changed`` only, and the new :class:`Programmed`.

    Costs O(changed services), not O(all services): only the fragments of those services
    are rendered and compared. ClusterIPs are reference-counted because the ports of one
    Service share theirs. Raises :class:`NeedFullSync` like :func:`incremental_transaction`.
    """
    names_ = set(changed)
    old = [prog.fragments[n] for n in names_ if n in prog.fragments]
    new: dict[ServicePortName, _Fragment] = {}
    for n in names_:
        st = state.services.get(n)
        if st is not None:
            f = prog.fragments.get(n)
            new[n] = f if f is not None and f.state == st else _fragment(st, cfg)
    refs = prog.cluster_ips.copy()
    refs.subtract(f.state.port.cluster_ip for f in old)
    refs.update(f.state.port.cluster_ip for f in new.values())
    touched = {f.state.port.cluster_ip for f in old} | {f.state.port.cluster_ip for f in new.values()}
    before = frozenset(ip for ip in touched if prog.cluster_ips.get(ip, 0) > 0)
    after = frozenset(ip for ip in touched if refs.get(ip, 0) > 0)
    node_ips = frozenset(state.node_ips) if cfg.nodeport_primary else frozenset()
    tx = incremental_transaction(_mini(old, before, prog.node_ips, cfg), _mini(new.values(), after, node_ips, cfg), cfg)
    frags = dict(prog.fragments)
    for n in names_:
        frags.pop(n, None)
    frags.update(new)
    return tx, Programmed(frags, +refs, node_ips)


def base_objects(cfg: NftConfig) -> list[str]:
    """Table, maps, sets, base and helper chains and their fixed rules."""
    t = f"{cfg.family} {cfg.table}"
    at, ipx, lo = cfg.addr_type, cfg.ipx, cfg.loopback
    out = [f'add table {t} {{ comment "rules for kube-proxy" ; }}',
           f'add set {t} cluster-ips {{ type {at} ; comment "Active ClusterIPs" ; }}']
    if cfg.nodeport_primary:
        out.append(f'add set {t} nodeport-ips {{ type {at} ; comment "IPs that accept NodePort traffic" ; }}')
    out += [
        f'add map {t} service-ips {{ type {at} . inet_proto . inet_service : verdict ; '
        'comment "ClusterIP, ExternalIP and LoadBalancer IP traffic" ; }',
        f'add map {t} service-nodeports {{ type inet_proto . inet_service : verdict ; comment "NodePort traffic" ; }}',
        f'add map {t} no-endpoint-services {{ type {at} . inet_proto . inet_service : verdict ; '
        'comment "vmap to drop or reject packets to services with no endpoints" ; }',
        f'add map {t} no-endpoint-nodeports {{ type inet_proto . inet_service : verdict ; '
        'comment "vmap to drop or reject packets to service nodeports with no endpoints" ; }',
        f'add map {t} firewall-ips {{ type {at} . inet_proto . inet_service : verdict ; '
        'comment "destinations that are subject to LoadBalancerSourceRanges" ; }',
    ]
    out += [f"add chain {t} {n} {{ type {ty} hook {h} priority {p} ; }}" for n, ty, h, p in BASE_CHAINS]
    out += [f"add chain {t} {n}" for n in AUX_CHAINS]
    out.append(f'add chain {t} reject-chain {{ comment "helper for @no-endpoint-services / @no-endpoint-nodeports" ; }}')
    r = f"add rule {t}"
    np_match = f"{ipx} daddr @nodeport-ips" if cfg.nodeport_primary else f"fib daddr type local {ipx} daddr != {lo}"
    np_check = f"{ipx} daddr @nodeport-ips" if cfg.nodeport_primary else f"{ipx} daddr != {lo}"
    out += [
        f"{r} nat-prerouting jump services", f"{r} nat-output jump services",
        f"{r} nat-postrouting jump masquerading",
        f"{r} filter-prerouting-pre-dnat ct state new jump firewall-check",
        f"{r} filter-output-pre-dnat ct state new jump firewall-check",
        f"{r} filter-input ct state new jump nodeport-endpoints-check",
        f"{r} filter-input ct state new jump service-endpoints-check",
        f"{r} filter-forward ct state new jump service-endpoints-check",
        f"{r} filter-forward ct state new jump cluster-ips-check",
        f"{r} filter-output ct state new jump service-endpoints-check",
        f"{r} filter-output ct state new jump cluster-ips-check",
        f"{r} mark-for-masquerade mark set mark or {cfg.mark}",
        f"{r} masquerading mark and {cfg.mark} == 0 return",
        f"{r} masquerading mark set mark xor {cfg.mark}",
        f"{r} masquerading masquerade fully-random",
        f"{r} services {ipx} daddr . meta l4proto . th dport vmap @service-ips",
        f"{r} services {np_match} meta l4proto . th dport vmap @service-nodeports",
        f"{r} service-endpoints-check {ipx} daddr . meta l4proto . th dport vmap @no-endpoint-services",
        f"{r} nodeport-endpoints-check {np_check} meta l4proto . th dport vmap @no-endpoint-nodeports",
        f"{r} firewall-check {ipx} daddr . meta l4proto . th dport vmap @firewall-ips",
        f"{r} reject-chain reject",
        f'{r} cluster-ips-check {ipx} daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"',
    ]
    if cfg.service_cidrs:
        out.append(f'{r} cluster-ips-check {ipx} daddr {{ {", ".join(cfg.service_cidrs)} }} drop '
                   'comment "Drop traffic to unallocated ClusterIPs"')
    return out


def _affinity_set(t: str, name: str, timeout: int, cfg: NftConfig) -> str:
    return f"add set {t} {name} {{ type {cfg.addr_type} ; flags dynamic,timeout ; timeout {timeout}s ; }}"


def _elements(t: str, rs: NftRuleset) -> list[str]:
    out = []
    for s in SETS:
        for e in sorted(rs.sets.get(s, ())):
            out.append(f"add element {t} {s} {{ {e} }}")
    for m in MAPS:
        for k, v in rs.maps.get(m, {}).items():
            out.append(f"add element {t} {m} {{ {k} : {v} }}")
    return out


def full_transaction(rs: NftRuleset, cfg: NftConfig, *, existing_chains: Iterable[str] | None = None,
                     existing_sets: Iterable[str] | None = None) -> str:
    """Everything, as one transaction.

    With ``existing_*`` unknown (None) the table is dropped and recreated. Otherwise base
    chains, maps and sets are flushed and refilled, every service chain is flushed and
    rewritten, and kernel chains/affinity sets not in ``rs`` are deleted; affinity sets
    that stay keep their entries.
    """
    t = f"{cfg.family} {cfg.table}"
    lines: list[str] = []
    if existing_chains is None:
        lines += [f"add table {t}", f"delete table {t}"]
    base = base_objects(cfg)
    lines += base
    if existing_chains is not None:
        # flush after (re)declaring so the fixed rules are not duplicated
        flushes = [f"flush chain {t} {n}" for n, *_ in BASE_CHAINS] + [f"flush chain {t} {n}" for n in AUX_CHAINS]
        flushes += [f"flush chain {t} reject-chain"]
        flushes += [f"flush set {t} {s}" for s in SETS if s in rs.sets]
        flushes += [f"flush map {t} {m}" for m in MAPS]
        first_rule = next(i for i, ln in enumerate(lines) if ln.startswith("add rule"))
        lines[first_rule:first_rule] = flushes
    lines += [_affinity_set(t, n, to, cfg) for n, to in rs.affinity_sets.items()]
    lines += [f"add chain {t} {c}" for c in rs.chains]
    if existing_chains is not None:
        lines += [f"flush chain {t} {c}" for c in rs.chains]
    for c, rules in rs.chains.items():
        lines += [f"add rule {t} {c} {r}" for r in rules]
    lines += _elements(t, rs)
    if existing_chains is not None:
        stale = sorted(c for c in existing_chains if "/" in c and c not in rs.chains)
        lines += [f"flush chain {t} {c}" for c in stale]
        lines += [f"delete chain {t} {c}" for c in stale]
        lines += [f"delete set {t} {s}" for s in sorted(existing_sets or ())
                  if s.startswith("affinity-") and s not in rs.affinity_sets]
    return "\n".join(lines) + "\n"


def _chunk_chains(rs: NftRuleset, names_: list[str]) -> list[str]:
    """Chains of one chunk, those holding an anonymous map (``numgen ... vmap { }``) first."""
    with_map = [c for c in names_ if any(" vmap { " in r for r in rs.chains[c])]
    first = set(with_map)
    return with_map + [c for c in names_ if c not in first]


def full_transactions(rs: NftRuleset, cfg: NftConfig, *, existing_chains: Iterable[str] | None = None,
                      existing_sets: Iterable[str] | None = None, chunk_chains: int = 20000) -> list[str]:
    """The full sync as a short sequence of transactions (same end state as :func:`full_transaction`).

    Why: the kernel binds every anonymous set (the per-service ``numgen`` vmap) by walking the
    whole pending transaction, so one transaction with 10k services costs O(services x
    objects). Splitting keeps that walk short. Each step leaves the kernel consistent:

    1. table, maps, sets, base chains (rewritten), affinity sets and every service chain
       (created empty, or left as they are when they already exist);
    2. per chunk of services: their chains flushed and rewritten, one service never split;
    3. map and set contents replaced (one statement per map), stale chains and sets deleted.

    Packets keep using the old per-service rules until step 2 rewrites that service; the
    dispatch maps switch over in step 3, atomically.
    """
    t = f"{cfg.family} {cfg.table}"
    head: list[str] = []
    if existing_chains is None:
        head += [f"add table {t}", f"delete table {t}"]
    base = base_objects(cfg)
    head += base
    if existing_chains is not None:
        flushes = [f"flush chain {t} {n}" for n, *_ in BASE_CHAINS] + [f"flush chain {t} {n}" for n in AUX_CHAINS]
        flushes += [f"flush chain {t} reject-chain"]
        first_rule = next(i for i, ln in enumerate(head) if ln.startswith("add rule"))
        head[first_rule:first_rule] = flushes
    head += [_affinity_set(t, n, to, cfg) for n, to in rs.affinity_sets.items()]
    head += [f"add chain {t} {c}" for c in rs.chains]
    out = ["\n".join(head) + "\n"]

    # group chains by service (a service's chains share the "ns/name/proto/port" part)
    groups: dict[str, list[str]] = {}
    for c in rs.chains:
        groups.setdefault(c.split("-", 2)[2].split("__")[0], []).append(c)
    chunk: list[str] = []
    n_chains = 0

    def emit() -> None:
        if not chunk:
            return
        lines = [f"flush chain {t} {c}" for c in chunk] if existing_chains is not None else []
        for c in _chunk_chains(rs, chunk):
            lines += [f"add rule {t} {c} {r}" for r in rs.chains[c]]
        out.append("\n".join(lines) + "\n")

    for members in groups.values():
        if n_chains + len(members) > chunk_chains and chunk:
            emit()
            chunk, n_chains = [], 0
        chunk += members
        n_chains += len(members)
    emit()

    tail: list[str] = []
    if existing_chains is not None:
        tail += [f"flush set {t} {s}" for s in SETS if s in rs.sets]
        tail += [f"flush map {t} {m}" for m in MAPS]
    for s in SETS:
        if rs.sets.get(s):
            tail.append(f"add element {t} {s} {{ {', '.join(sorted(rs.sets[s]))} }}")
    for m in MAPS:
        elems = rs.maps.get(m, {})
        if elems:
            tail.append(f"add element {t} {m} {{ {', '.join(f'{k} : {v}' for k, v in elems.items())} }}")
    if existing_chains is not None:
        stale = sorted(c for c in existing_chains if "/" in c and c not in rs.chains)
        tail += [f"flush chain {t} {c}" for c in stale]
        tail += [f"delete chain {t} {c}" for c in stale]
        tail += [f"delete set {t} {s}" for s in sorted(existing_sets or ())
                 if s.startswith("affinity-") and s not in rs.affinity_sets]
    if tail:
        out.append("\n".join(tail) + "\n")
    return out


class NeedFullSync(Exception):
    """An incremental transaction cannot express this change."""


def incremental_transaction(old: NftRuleset, new: NftRuleset, cfg: NftConfig) -> str:
    """Only what changed between ``old`` (programmed) and ``new`` ('' if nothing)."""
    t = f"{cfg.family} {cfg.table}"
    for s, to in new.affinity_sets.items():
        if s in old.affinity_sets and old.affinity_sets[s] != to:
            raise NeedFullSync(f"affinity timeout of {s} changed")
    lines = [_affinity_set(t, n, to, cfg) for n, to in new.affinity_sets.items() if n not in old.affinity_sets]
    added = [c for c in new.chains if c not in old.chains]
    changed = [c for c, r in new.chains.items() if c in old.chains and old.chains[c] != r]
    lines += [f"add chain {t} {c}" for c in added]
    lines += [f"flush chain {t} {c}" for c in changed]
    for c in (*added, *changed):
        lines += [f"add rule {t} {c} {r}" for r in new.chains[c]]
    dels, adds = [], []
    for s in SETS:
        o, n = old.sets.get(s, frozenset()), new.sets.get(s, frozenset())
        dels += [f"delete element {t} {s} {{ {e} }}" for e in sorted(o - n)]
        adds += [f"add element {t} {s} {{ {e} }}" for e in sorted(n - o)]
    for m in MAPS:
        o, n = old.maps.get(m, {}), new.maps.get(m, {})
        for k, v in o.items():
            if n.get(k) != v:
                dels.append(f"delete element {t} {m} {{ {k} }}")
        for k, v in n.items():
            if o.get(k) != v:
                adds.append(f"add element {t} {m} {{ {k} : {v} }}")
    lines += dels + adds
    stale = [c for c in old.chains if c not in new.chains]
    lines += [f"flush chain {t} {c}" for c in stale]
    lines += [f"delete chain {t} {c}" for c in stale]
    lines += [f"delete set {t} {s}" for s in old.affinity_sets if s not in new.affinity_sets]
    return "\n".join(lines) + "\n" if lines else ""


def cleanup_transaction(cfg: NftConfig) -> str:
    t = f"{cfg.family} {cfg.table}"
    return f"add table {t}\ndelete table {t}\n"
