"""Pure iptables renderer: :class:`DesiredState` -> ``iptables-restore --noflush`` payload.

Reproduces the kube-proxy chain layout and write order (filter: KUBE-SERVICES,
KUBE-EXTERNAL-SERVICES, KUBE-FORWARD, KUBE-NODEPORTS, KUBE-PROXY-FIREWALL[, KUBE-FIREWALL];
nat: KUBE-SERVICES, KUBE-NODEPORTS, KUBE-POSTROUTING, KUBE-MARK-MASQ and the per-service
KUBE-EXT/FW/SVC/SVL/SEP chains). A partial sync (``changed`` given) rewrites the fixed
chains but leaves out the per-service chains of unchanged services, which
``iptables-restore --noflush`` then keeps untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from servicenet.proxy import names
from servicenet.proxy.model import DesiredState, Endpoint, ServicePortName, ServiceState

SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")


@dataclass(frozen=True, slots=True)
class IptablesConfig:
    cluster_cidr: str | None = None  # "local detector": traffic from outside is masqueraded
    masquerade_bit: int = 14
    masquerade_all: bool = False
    localhost_nodeports: bool = True
    random_fully: bool = True
    conntrack_tcp_liberal: bool = False
    large_cluster_threshold: int = 1000
    ipv6: bool = False

    @property
    def mark(self) -> str:
        # Go's "%#08x": the eight digits are zero-padded, then "0x" is prefixed.
        return f"0x{1 << self.masquerade_bit:08x}"


@dataclass(frozen=True, slots=True)
class IptablesRender:
    payload: str
    active_nat_chains: frozenset[str]  # per-service chains that must exist after this sync
    nat_rules: int
    filter_rules: int


@dataclass(frozen=True, slots=True)
class JumpRule:
    table: str
    chain: str  # the built-in chain the jump lives in
    target: str
    spec: tuple[str, ...]  # match arguments, comment included

    def args(self) -> list[str]:
        return [*self.spec, "-j", self.target]


def _q(s: str) -> str:
    return f'"{s}"' if " " in s else s


def jump_rules(cfg: IptablesConfig) -> list[JumpRule]:
    """The jumps from built-in chains into kube-proxy's chains (ensured on full syncs)."""
    new = ("-m", "conntrack", "--ctstate", "NEW")

    def c(comment: str, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
        return ("-m", "comment", "--comment", comment, *extra)

    out = [
        JumpRule("filter", "INPUT", "KUBE-EXTERNAL-SERVICES", c("kubernetes externally-visible service portals", new)),
        JumpRule("filter", "FORWARD", "KUBE-EXTERNAL-SERVICES", c("kubernetes externally-visible service portals", new)),
        JumpRule("filter", "INPUT", "KUBE-NODEPORTS", c("kubernetes health check service ports")),
        JumpRule("filter", "FORWARD", "KUBE-SERVICES", c("kubernetes service portals", new)),
        JumpRule("filter", "OUTPUT", "KUBE-SERVICES", c("kubernetes service portals", new)),
        JumpRule("filter", "FORWARD", "KUBE-FORWARD", c("kubernetes forwarding rules")),
        JumpRule("filter", "INPUT", "KUBE-PROXY-FIREWALL", c("kubernetes load balancer firewall", new)),
        JumpRule("filter", "OUTPUT", "KUBE-PROXY-FIREWALL", c("kubernetes load balancer firewall", new)),
        JumpRule("filter", "FORWARD", "KUBE-PROXY-FIREWALL", c("kubernetes load balancer firewall", new)),
        JumpRule("nat", "OUTPUT", "KUBE-SERVICES", c("kubernetes service portals")),
        JumpRule("nat", "PREROUTING", "KUBE-SERVICES", c("kubernetes service portals")),
        JumpRule("nat", "POSTROUTING", "KUBE-POSTROUTING", c("kubernetes postrouting rules")),
    ]
    if not cfg.ipv6 and cfg.localhost_nodeports:
        out += [JumpRule("filter", "INPUT", "KUBE-FIREWALL", ()), JumpRule("filter", "OUTPUT", "KUBE-FIREWALL", ())]
    return out


def fixed_chains(cfg: IptablesConfig) -> dict[str, list[str]]:
    filt = ["KUBE-SERVICES", "KUBE-EXTERNAL-SERVICES", "KUBE-FORWARD", "KUBE-NODEPORTS", "KUBE-PROXY-FIREWALL"]
    if not cfg.ipv6 and cfg.localhost_nodeports:
        filt.append("KUBE-FIREWALL")
    return {"filter": filt, "nat": ["KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ"]}


class _Buf:
    __slots__ = ("lines",)

    def __init__(self) -> None:
        self.lines: list[str] = []

    def w(self, *parts: str) -> None:
        self.lines.append(" ".join(p for p in parts if p))


def _write_service(st: ServiceState, cfg: IptablesConfig, large: bool, nat: _Buf, filt: _Buf,
                   nat_top: _Buf, chains: _Buf, active: set[str], skip: bool) -> None:
    sp = st.port
    spn = sp.name
    s = str(spn)
    proto = spn.proto
    m = f"-m {proto} -p {proto}"
    svc_chain, svl_chain = names.ipt_svc(spn), names.ipt_svl(spn)
    ext_chain, fw_chain = names.ipt_ext(spn), names.ipt_fw(spn)
    cluster, local, reachable = st.cluster, st.local, st.reachable
    uses_cluster = bool(cluster) and sp.uses_cluster_endpoints
    uses_local = bool(local) and sp.uses_local_endpoints
    has_endpoints = st.has_any
    internal_chain = svl_chain if sp.internal_policy_local else svc_chain
    external_chain = svl_chain if sp.external_policy_local else svc_chain
    has_internal = bool(st.internal)
    has_external = bool(st.external)
    uses_ext = has_endpoints and sp.externally_accessible
    uses_fw = uses_ext and bool(sp.lb_ips) and bool(sp.lb_source_ranges)
    lb_chain = fw_chain if uses_fw else ext_chain

    int_target, ext_target = "REJECT", "REJECT"
    int_comment = ext_comment = _q(f"{s} has no endpoints")
    if has_endpoints:
        if not has_internal:
            int_target, int_comment = "DROP", _q(f"{s} has no local endpoints")
        if not has_external:
            ext_target, ext_comment = "DROP", _q(f"{s} has no local endpoints")

    for ch, used in ((ext_chain, uses_ext), (fw_chain, uses_fw), (svc_chain, uses_cluster),
                     (svl_chain, uses_local)):
        if used:
            active.add(ch)
    for ep in reachable:
        active.add(names.ipt_sep(spn, ep))

    # Capture the ClusterIP.
    if has_internal:
        nat_top.w("-A KUBE-SERVICES -m comment --comment", _q(f"{s} cluster IP"), m,
                  f"-d {sp.cluster_ip} --dport {sp.port} -j {internal_chain}")
    else:
        filt.w("-A KUBE-SERVICES -m comment --comment", int_comment, m,
               f"-d {sp.cluster_ip} --dport {sp.port} -j {int_target}")
    for ip in sp.external_ips:
        if has_endpoints:
            nat_top.w("-A KUBE-SERVICES -m comment --comment", _q(f"{s} external IP"), m,
                      f"-d {ip} --dport {sp.port} -j {ext_chain}")
        if not has_external:
            filt.w("-A KUBE-EXTERNAL-SERVICES -m comment --comment", ext_comment, m,
                   f"-d {ip} --dport {sp.port} -j {ext_target}")
    for ip in sp.lb_ips:
        if has_endpoints:
            nat_top.w("-A KUBE-SERVICES -m comment --comment", _q(f"{s} loadbalancer IP"), m,
                      f"-d {ip} --dport {sp.port} -j {lb_chain}")
        if uses_fw:
            filt.w("-A KUBE-PROXY-FIREWALL -m comment --comment", _q(f"{s} traffic not accepted by {fw_chain}"),
                   m, f"-d {ip} --dport {sp.port} -j DROP")
    if not has_external:
        for ip in sp.lb_ips:
            filt.w("-A KUBE-EXTERNAL-SERVICES -m comment --comment", ext_comment, m,
                   f"-d {ip} --dport {sp.port} -j {ext_target}")
    if sp.node_port:
        if has_endpoints:
            nat_top.w(f"-A KUBE-NODEPORTS -m comment --comment {_q(s)}", m,
                      f"--dport {sp.node_port} -j {ext_chain}")
        if not has_external:
            filt.w("-A KUBE-EXTERNAL-SERVICES -m comment --comment", ext_comment,
                   "-m addrtype --dst-type LOCAL", m, f"--dport {sp.node_port} -j {ext_target}")
    if sp.health_check_node_port:
        filt.w("-A KUBE-NODEPORTS -m comment --comment", _q(f"{s} health check node port"),
               f"-m tcp -p tcp --dport {sp.health_check_node_port} -j ACCEPT")

    if skip:  # partial sync: this service's own chains are already in the kernel
        return

    if has_internal:
        head = f"-m comment --comment {_q(f'{s} cluster IP')} {m} -d {sp.cluster_ip} --dport {sp.port}"
        if cfg.masquerade_all:
            nat.w(f"-A {internal_chain}", head, "-j KUBE-MARK-MASQ")
        elif cfg.cluster_cidr:
            nat.w(f"-A {internal_chain}", head, f"! -s {cfg.cluster_cidr} -j KUBE-MARK-MASQ")
    if uses_ext:
        chains.w(f":{ext_chain} - [0:0]")
        if not sp.external_policy_local:
            nat.w(f"-A {ext_chain} -m comment --comment", _q(f"masquerade traffic for {s} external destinations"),
                  "-j KUBE-MARK-MASQ")
        else:
            if cfg.cluster_cidr:
                nat.w(f"-A {ext_chain} -m comment --comment", _q(f"pod traffic for {s} external destinations"),
                      f"-s {cfg.cluster_cidr} -j {svc_chain}")
            nat.w(f"-A {ext_chain} -m comment --comment",
                  _q(f"masquerade LOCAL traffic for {s} external destinations"),
                  "-m addrtype --src-type LOCAL -j KUBE-MARK-MASQ")
            nat.w(f"-A {ext_chain} -m comment --comment",
                  _q(f"route LOCAL traffic for {s} external destinations"),
                  f"-m addrtype --src-type LOCAL -j {svc_chain}")
        if has_external:
            nat.w(f"-A {ext_chain} -j {external_chain}")
    if uses_fw:
        chains.w(f":{fw_chain} - [0:0]")
        head = f"-A {fw_chain} -m comment --comment {_q(f'{s} loadbalancer IP')}"
        for cidr in sp.lb_source_ranges:
            nat.w(head, f"-s {cidr} -j {ext_chain}")
        nat.w(head, "-m comment --comment", _q(f"other traffic to {s} will be dropped by KUBE-PROXY-FIREWALL"))
    if uses_cluster:
        chains.w(f":{svc_chain} - [0:0]")
        _write_lb(nat, s, st, svc_chain, cluster, large)
    if uses_local:
        chains.w(f":{svl_chain} - [0:0]")
        _write_lb(nat, s, st, svl_chain, local, large)
    for ep in reachable:
        sep = names.ipt_sep(spn, ep)
        chains.w(f":{sep} - [0:0]")
        head = f"-A {sep}" + ("" if large else f" -m comment --comment {_q(s)}")
        nat.w(head, f"-s {ep.ip} -j KUBE-MARK-MASQ")
        aff = f"-m recent --name {sep} --set" if sp.affinity_timeout is not None else ""
        nat.w(head, aff, m, f"-j DNAT --to-destination {ep.addr}")


def probability(n: int) -> str:
    return f"{1.0 / n:0.10f}"


def _write_lb(nat: _Buf, s: str, st: ServiceState, chain: str, eps: tuple[Endpoint, ...], large: bool) -> None:
    spn = st.port.name

    def comment(ep: Endpoint) -> str:
        return "" if large else f"-m comment --comment {_q(f'{s} -> {ep.addr}')}"

    if st.port.affinity_timeout is not None:
        for ep in eps:
            sep = names.ipt_sep(spn, ep)
            nat.w(f"-A {chain}", comment(ep),
                  f"-m recent --name {sep} --rcheck --seconds {st.port.affinity_timeout} --reap -j {sep}")
    n = len(eps)
    for i, ep in enumerate(eps):
        stat = f"-m statistic --mode random --probability {probability(n - i)}" if i < n - 1 else ""
        nat.w(f"-A {chain}", comment(ep), stat, f"-j {names.ipt_sep(spn, ep)}")


def render(state: DesiredState, cfg: IptablesConfig, *, changed: Iterable[ServicePortName] | None = None,
           existing_nat_chains: Iterable[str] = ()) -> IptablesRender:
    """Build the restore payload. ``changed=None`` is a full sync.

    ``existing_nat_chains`` are per-service chains believed to be in the kernel; those not
    needed any more are flushed and deleted (``:CHAIN`` + ``-X CHAIN``).
    """
    changed_set = None if changed is None else set(changed)
    mark = cfg.mark
    fixed = fixed_chains(cfg)
    filt_chains, filt = _Buf(), _Buf()
    nat_chains, nat_top, nat = _Buf(), _Buf(), _Buf()
    for ch in fixed["filter"]:
        filt_chains.w(f":{ch} - [0:0]")
    for ch in fixed["nat"]:
        nat_chains.w(f":{ch} - [0:0]")
    if "KUBE-FIREWALL" in fixed["filter"]:
        filt.w('-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections"',
               "-d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP")
    nat_top.w(f"-A KUBE-POSTROUTING -m mark ! --mark {mark}/{mark} -j RETURN")
    nat_top.w(f"-A KUBE-POSTROUTING -j MARK --xor-mark {mark}")
    nat_top.w('-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT"',
              "-j MASQUERADE" + (" --random-fully" if cfg.random_fully else ""))
    nat_top.w(f"-A KUBE-MARK-MASQ -j MARK --or-mark {mark}")

    total_eps = sum(len(st.reachable) for st in state.services.values())
    large = total_eps > cfg.large_cluster_threshold
    active: set[str] = set()
    for spn in state.sorted_names():
        st = state.services[spn]
        skip = changed_set is not None and spn not in changed_set
        # Rules of one service go to the top buffer (fixed chains) and the service buffer;
        # the fixed-chain rules are interleaved per service exactly like upstream.
        svc_rules = _Buf()
        _write_service(st, cfg, large, svc_rules, filt, nat_top, nat_chains, active, skip)
        nat_top.lines.extend(svc_rules.lines)

    nodeport_dst = "-m addrtype --dst-type LOCAL"
    if cfg.ipv6:
        nodeport_dst += " ! -d ::1/128"
    elif not cfg.localhost_nodeports:
        nodeport_dst += " ! -d 127.0.0.0/8"
    nat_top.w('-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the '
              'last rule in this chain"', nodeport_dst, "-j KUBE-NODEPORTS")
    if not cfg.conntrack_tcp_liberal:
        filt.w("-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP")
    filt.w('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules"',
           f"-m mark --mark {mark}/{mark} -j ACCEPT")
    filt.w('-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule"',
           "-m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT")

    stale = sorted(c for c in set(existing_nat_chains) - active if c.startswith(SERVICE_CHAIN_PREFIXES))
    for ch in stale:
        nat_chains.w(f":{ch} - [0:0]")
        nat.w(f"-X {ch}")

    lines = ["*filter", *filt_chains.lines, *filt.lines, "COMMIT",
             "*nat", *nat_chains.lines, *nat_top.lines, *nat.lines, "COMMIT", ""]
    nat_rules = sum(1 for ln in nat_top.lines if ln.startswith("-A"))
    return IptablesRender(payload="\n".join(lines), active_nat_chains=frozenset(active),
                          nat_rules=nat_rules, filter_rules=sum(1 for ln in filt.lines if ln.startswith("-A")))


def render_cleanup(existing: dict[str, Iterable[str]]) -> str:
    """A restore payload that flushes and deletes kube-proxy's chains (jumps removed first)."""
    lines: list[str] = []
    for table in ("filter", "nat"):
        chains = sorted(c for c in existing.get(table, ()) if c.startswith("KUBE-"))
        if not chains:
            continue
        lines.append(f"*{table}")
        lines += [f":{c} - [0:0]" for c in chains]
        lines += [f"-X {c}" for c in chains]
        lines.append("COMMIT")
    return "\n".join(lines) + "\n" if lines else ""
