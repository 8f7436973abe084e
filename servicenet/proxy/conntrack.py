"""Pure core of UDP conntrack cleanup: which flows to delete after a sync.

UDP has no connection teardown, so a conntrack entry DNATed to an endpoint that went
away keeps black-holing the client. After a successful sync we delete:

* flows to a service IP/NodePort whose reply source is an endpoint no longer serving;
* all flows to a service IP/NodePort that gained endpoints after having none (entries
  created while traffic was rejected would otherwise stick).
"""

from __future__ import annotations

from dataclasses import dataclass

from servicenet.proxy.model import DesiredState, ServicePort


@dataclass(frozen=True, slots=True, order=True)
class FlowFilter:
    """One ``conntrack -D`` invocation: orig dst ip (or any) / orig dst port / reply src."""

    dst: str | None
    port: int
    reply_src: str | None = None

    def argv(self) -> list[str]:
        out = ["conntrack", "-D", "-p", "udp"]
        if self.dst is not None:
            out += ["--orig-dst", self.dst]
        out += ["--orig-port-dst", str(self.port)]
        if self.reply_src is not None:
            out += ["--reply-src", self.reply_src]
        return out


def _targets(sp: ServicePort) -> list[tuple[str | None, int]]:
    out: list[tuple[str | None, int]] = [(sp.cluster_ip, sp.port)]
    out += [(ip, sp.port) for ip in (*sp.external_ips, *sp.lb_ips)]
    if sp.node_port:
        out.append((None, sp.node_port))
    return out


def stale_udp_flows(old: DesiredState | None, new: DesiredState) -> list[FlowFilter]:
    if old is None:
        return []
    out: set[FlowFilter] = set()
    for spn, ost in old.services.items():
        if spn.protocol != "UDP":
            continue
        nst = new.services.get(spn)
        now_ips = {e.ip for e in nst.reachable} if nst is not None else set()
        gone = {e.ip for e in ost.reachable} - now_ips
        for dst, port in _targets(ost.port):
            out.update(FlowFilter(dst, port, ip) for ip in gone)
    for spn, nst in new.services.items():
        if spn.protocol != "UDP" or not nst.reachable:
            continue
        ost = old.services.get(spn)
        if ost is None or not ost.reachable:
            out.update(FlowFilter(dst, port) for dst, port in _targets(nst.port))
    return sorted(out, key=lambda f: (f.dst or "", f.port, f.reply_src or ""))
