"""The fixed part of the nftables table ``ip kube-proxy``, as ``nft -f`` text (pure).

The table, its sets and maps, the base chains at upstream's hooks and priorities, the helper
chains and their fixed rules. This part is always written with ``nft -f``: declarations are
idempotent, so re-running :func:`skeleton_transaction` on a populated table changes nothing
but repairs drift in the fixed rules. The per-service part is :mod:`render_nftables`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from servicenet.proxy.nft_commands import AddAffinitySet

ENDPOINT_MAP = "service-endpoints"  # prefix of the shard maps "service-endpoints-<k>"
HAIRPIN_SET = "hairpin-connections"
MAPS = ("service-ips", "service-nodeports", "no-endpoint-services", "no-endpoint-nodeports", "firewall-ips")
SETS = ("cluster-ips", "nodeport-ips", HAIRPIN_SET)
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
FIXED_CHAINS = (*(n for n, *_ in BASE_CHAINS), *AUX_CHAINS, "reject-chain")


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


def base_objects(cfg: NftConfig) -> list[str]:
    """Table, maps, sets, base and helper chains and their fixed rules."""
    t = f"{cfg.family} {cfg.table}"
    at, ipx, lo = cfg.addr_type, cfg.ipx, cfg.loopback
    out = [f'add table {t} {{ comment "rules for kube-proxy" ; }}',
           f'add set {t} cluster-ips {{ type {at} ; comment "Active ClusterIPs" ; }}']
    if cfg.nodeport_primary:
        out.append(f'add set {t} nodeport-ips {{ type {at} ; comment "IPs that accept NodePort traffic" ; }}')
    out += [
        f'add set {t} {HAIRPIN_SET} {{ type {at} . {at} ; comment "endpoint . endpoint: a pod calling itself" ; }}',
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
    # Traffic to a ClusterIP from outside the pod network is masqueraded (upstream writes this
    # check into every service chain; one rule against @cluster-ips does the same job).
    masq = []
    if cfg.masquerade_all:
        masq.append(f"{r} services {ipx} daddr @cluster-ips jump mark-for-masquerade")
    elif cfg.cluster_cidr:
        masq.append(f"{r} services {ipx} daddr @cluster-ips {ipx} saddr != {cfg.cluster_cidr} jump mark-for-masquerade")
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
        f'{r} masquerading ct status dnat {ipx} saddr . {ipx} daddr @{HAIRPIN_SET} jump mark-for-masquerade '
        'comment "hairpin"',
        f"{r} masquerading mark and {cfg.mark} == 0 return",
        f"{r} masquerading mark set mark xor {cfg.mark}",
        f"{r} masquerading masquerade fully-random",
        *masq,
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


def _endpoint_map_decl(t: str, name: str, cfg: NftConfig) -> str:
    return (f"add map {t} {name} {{ typeof numgen random mod 1 : {cfg.ipx} daddr . tcp dport ; "
            'comment "service endpoints: each service chain reads its own key range" ; }')


def skeleton_transaction(cfg: NftConfig, endpoint_maps: Iterable[str] = (f"{ENDPOINT_MAP}-0",),
                         affinity_sets: Mapping[str, int] | None = None, *, fresh: bool = False) -> str:
    """Table, maps, sets and fixed chains declared, and the fixed chains' rules rewritten.

    Re-running it on a populated table changes nothing but repairs drift in the fixed
    rules: declaring existing objects is a no-op and the fixed chains are flushed before
    their rules are re-added. ``fresh`` drops the table first. Service content (per-service
    chains, map and set elements) is left alone; :func:`content_transaction` writes it.
    """
    t = f"{cfg.family} {cfg.table}"
    lines = [f"add table {t}", f"delete table {t}"] if fresh else []
    base = base_objects(cfg)
    first_rule = next(i for i, ln in enumerate(base) if ln.startswith("add rule"))
    lines += base[:first_rule]
    lines += [_endpoint_map_decl(t, m, cfg) for m in endpoint_maps]
    lines += [AddAffinitySet(n, to).text(t, cfg.ipx) for n, to in (affinity_sets or {}).items()]
    if not fresh:
        lines += [f"flush chain {t} {n}" for n in FIXED_CHAINS]
    lines += base[first_rule:]
    return "\n".join(lines) + "\n"


def cleanup_transaction(cfg: NftConfig) -> str:
    t = f"{cfg.family} {cfg.table}"
    return f"add table {t}\ndelete table {t}\n"
