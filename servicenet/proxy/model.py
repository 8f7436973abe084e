"""Pure core of the service proxy: Services + EndpointSlices -> desired proxy state.

No I/O here. The input is a snapshot of Kubernetes JSON dicts; the output is a
:class:`DesiredState` holding, per service port, the endpoint sets that survive the
upstream selection pipeline:

1. only slices labelled ``kubernetes.io/service-name`` of the right address family;
2. "cluster" endpoints: ready (and topology-eligible) endpoints, or, when there are none,
   the serving+terminating ones;
3. "local" endpoints (only when a traffic policy is ``Local``): ready endpoints on this
   node, or serving+terminating local ones when none is ready.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
ZONE_LABEL = "topology.kubernetes.io/zone"
DEFAULT_AFFINITY_TIMEOUT = 10800


_LOWER = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}  # (the renderers ask for this ~10^5 times a sync)


@dataclass(frozen=True, slots=True, order=True)
class ServicePortName:
    """Identity of one service port: ``namespace/name:port`` (``namespace/name`` if unnamed)."""

    namespace: str
    name: str
    port: str
    protocol: str  # upper case: TCP, UDP, SCTP

    def __str__(self) -> str:
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port}" if self.port else base

    @property
    def proto(self) -> str:
        return _LOWER.get(self.protocol) or self.protocol.lower()


@dataclass(frozen=True, slots=True)
class Endpoint:
    ip: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    is_local: bool = False
    node_name: str = ""
    zone_hints: tuple[str, ...] = ()
    node_hints: tuple[str, ...] = ()

    @property
    def addr(self) -> str:
        """``ip:port`` as upstream prints it (``[ip6]:port`` for IPv6)."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"

    def sort_key(self) -> str:
        return self.addr


@dataclass(frozen=True, slots=True)
class ServicePort:
    """The proxy-relevant part of one port of one Service."""

    name: ServicePortName
    cluster_ip: str
    port: int
    node_port: int = 0
    external_ips: tuple[str, ...] = ()
    lb_ips: tuple[str, ...] = ()
    lb_source_ranges: tuple[str, ...] = ()
    affinity_timeout: int | None = None  # None = no ClientIP affinity
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0

    @property
    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.external_ips) or bool(self.lb_ips)

    @property
    def uses_cluster_endpoints(self) -> bool:
        return not self.internal_policy_local or (self.externally_accessible and not self.external_policy_local)

    @property
    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (self.externally_accessible and self.external_policy_local)


@dataclass(frozen=True, slots=True)
class ServiceState:
    """A service port plus its endpoint sets after selection."""

    port: ServicePort
    endpoints: tuple[Endpoint, ...]  # every endpoint known for the port (sorted by addr)
    cluster: tuple[Endpoint, ...]  # endpoints for Cluster policy (empty if not used)
    local: tuple[Endpoint, ...]  # endpoints for Local policy (empty if not used)
    has_any: bool = False  # usable (ready, or serving+terminating) endpoints on any node

    @property
    def reachable(self) -> tuple[Endpoint, ...]:
        """Union of cluster and local endpoints, in address order (upstream allLocallyReachable)."""
        if not self.local:
            return self.cluster
        if not self.cluster:
            return self.local
        seen = {e.addr: e for e in self.cluster}
        for e in self.local:
            seen.setdefault(e.addr, e)
        return tuple(sorted(seen.values(), key=Endpoint.sort_key))

    @property
    def internal(self) -> tuple[Endpoint, ...]:
        return self.local if self.port.internal_policy_local else self.cluster

    @property
    def external(self) -> tuple[Endpoint, ...]:
        return self.local if self.port.external_policy_local else self.cluster


@dataclass(frozen=True, slots=True)
class DesiredState:
    node_name: str
    node_ips: tuple[str, ...]
    services: Mapping[ServicePortName, ServiceState] = field(default_factory=dict)

    def sorted_names(self) -> list[ServicePortName]:
        return sorted(self.services, key=str)


class ModelError(ValueError):
    """A Service or EndpointSlice dict is malformed beyond what the proxy can ignore."""


def _family(ip: str) -> int:
    try:
        return ipaddress.ip_address(ip).version
    except ValueError:
        return 0


def parse_service(svc: Mapping[str, Any], family: int = 4) -> list[ServicePort]:
    """The proxyable ports of a Service dict (none for headless / ExternalName)."""
    meta = svc.get("metadata") or {}
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return []
    ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP") or ""]) if ip]
    cluster_ip = next((ip for ip in ips if ip != "None" and _family(ip) == family), "")
    if not cluster_ip:
        return []
    ns, name = meta.get("namespace") or "default", meta.get("name") or ""
    affinity: int | None = None
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {})
        affinity = int(cfg.get("timeoutSeconds") or DEFAULT_AFFINITY_TIMEOUT)
    svc_type = spec.get("type") or "ClusterIP"
    ext_ips = tuple(ip for ip in spec.get("externalIPs") or () if _family(ip) == family)
    lb_ips: tuple[str, ...] = ()
    if svc_type == "LoadBalancer":
        ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        lb_ips = tuple(i["ip"] for i in ingress
                       if i.get("ip") and i.get("ipMode") != "Proxy" and _family(i["ip"]) == family)
    ext_local = spec.get("externalTrafficPolicy") == "Local"
    int_local = spec.get("internalTrafficPolicy") == "Local"
    out = []
    for p in spec.get("ports") or []:
        try:
            port = int(p["port"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"service {ns}/{name}: bad port {p!r}") from exc
        spn = ServicePortName(ns, name, p.get("name") or "", (p.get("protocol") or "TCP").upper())
        node_port = int(p.get("nodePort") or 0) if svc_type in ("NodePort", "LoadBalancer") else 0
        sp = ServicePort(
            name=spn, cluster_ip=cluster_ip, port=port, node_port=node_port, external_ips=ext_ips,
            lb_ips=lb_ips, lb_source_ranges=tuple(spec.get("loadBalancerSourceRanges") or ()),
            affinity_timeout=affinity, internal_policy_local=int_local,
            external_policy_local=False, health_check_node_port=0)
        if ext_local and sp.externally_accessible:
            hcnp = int(spec.get("healthCheckNodePort") or 0) if svc_type == "LoadBalancer" else 0
            sp = replace(sp, external_policy_local=True, health_check_node_port=hcnp)
        out.append(sp)
    return out


def parse_slice(es: Mapping[str, Any], node_name: str,
                family: int = 4) -> tuple[tuple[str, str], list[tuple[str, str, int, Endpoint]]]:
    """``((ns, service), [(portName, PROTOCOL, port, Endpoint), ...])`` for one EndpointSlice.

    Slices without the service-name label or of another address family give no endpoints.
    """
    meta = es.get("metadata") or {}
    svc = (meta.get("labels") or {}).get(SERVICE_NAME_LABEL)
    key = (meta.get("namespace") or "default", svc or "")
    want = "IPv4" if family == 4 else "IPv6"
    if not svc or es.get("addressType", want) != want:
        return key, []
    out: list[tuple[str, str, int, Endpoint]] = []
    for ep in es.get("endpoints") or []:
        cond = ep.get("conditions") or {}
        ready = cond.get("ready") is not False  # unset means ready
        serving = cond.get("serving") if cond.get("serving") is not None else ready
        terminating = bool(cond.get("terminating"))
        hints = ep.get("hints") or {}
        node = ep.get("nodeName") or ""
        for addr in (ep.get("addresses") or [])[:1]:  # upstream uses the first address
            for p in es.get("ports") or []:
                if p.get("port") is None:
                    continue
                e = Endpoint(ip=addr, port=int(p["port"]), ready=ready, serving=bool(serving),
                             terminating=terminating, is_local=bool(node) and node == node_name,
                             node_name=node,
                             zone_hints=tuple(z["name"] for z in hints.get("forZones") or ()),
                             node_hints=tuple(n["name"] for n in hints.get("forNodes") or ()))
                out.append((p.get("name") or "", (p.get("protocol") or "TCP").upper(), int(p["port"]), e))
    return key, out


def _topology_filter(ready: list[Endpoint], node_name: str, zone: str) -> list[Endpoint]:
    """PreferSameNode, then PreferSameZone hints; all endpoints unless every one is hinted."""
    if not ready:
        return ready
    if all(e.node_hints for e in ready):
        mine = [e for e in ready if node_name in e.node_hints]
        if mine:
            return mine
    if zone and all(e.zone_hints for e in ready):
        mine = [e for e in ready if zone in e.zone_hints]
        if mine:
            return mine
    return ready


def categorize(sp: ServicePort, endpoints: Iterable[Endpoint], node_name: str = "",
               zone: str = "") -> ServiceState:
    """Apply the selection pipeline to the endpoints of one service port."""
    eps = tuple(sorted(endpoints, key=Endpoint.sort_key))
    cluster: list[Endpoint] = []
    local: list[Endpoint] = []
    if sp.uses_cluster_endpoints:
        cluster = _topology_filter([e for e in eps if e.ready], node_name, zone)
        if not cluster:
            cluster = [e for e in eps if e.serving and e.terminating]
    if sp.uses_local_endpoints:
        local = [e for e in eps if e.ready and e.is_local]
        if not local:
            local = [e for e in eps if e.serving and e.terminating and e.is_local]
    has_any = any(e.ready or (e.serving and e.terminating) for e in eps)
    return ServiceState(port=sp, endpoints=eps, cluster=tuple(cluster), local=tuple(local), has_any=has_any)


def compute(services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]],
            node_name: str, node_ips: Iterable[str] = (), *, zone: str = "",
            family: int = 4) -> DesiredState:
    """The desired proxy state for this node from a snapshot of Services and EndpointSlices."""
    by_svc: dict[tuple[str, str], dict[tuple[str, str], dict[str, Endpoint]]] = {}
    for es in slices:
        key, eps = parse_slice(es, node_name, family)
        if not eps:
            continue
        ports = by_svc.setdefault(key, {})
        for pname, proto, _port, ep in eps:
            ports.setdefault((pname, proto), {}).setdefault(ep.addr, ep)
    out: dict[ServicePortName, ServiceState] = {}
    for svc in services:
        for sp in parse_service(svc, family):
            n = sp.name
            eps = by_svc.get((n.namespace, n.name), {}).get((n.port, n.protocol), {})
            out[n] = categorize(sp, eps.values(), node_name, zone)
    return DesiredState(node_name=node_name, node_ips=tuple(node_ips), services=out)


def changed_services(old: DesiredState | None, new: DesiredState) -> set[ServicePortName]:
    """Service ports whose rules may differ between ``old`` and ``new`` (added, removed or changed)."""
    if old is None:
        return set(new.services)
    changed = {n for n, st in new.services.items() if old.services.get(n) != st}
    changed.update(n for n in old.services if n not in new.services)
    return changed
