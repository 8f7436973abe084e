"""Pure core of the service proxy: Services + EndpointSlices -> desired proxy state.

No I/O here. The input is a snapshot of Kubernetes JSON dicts, read through the shared views
(:mod:`servicenet.api.views`: the ``clusterIPs`` fallback, "ready when unset"); the output is a
:class:`DesiredState` holding, per service port, the endpoint sets that survive the upstream
selection pipeline:

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
from typing import Any, NamedTuple

from servicenet.api.views import EndpointSliceView, ServiceView, name_of, ns_of

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


class Endpoint(NamedTuple):
    """One endpoint of a service port. A NamedTuple, not a frozen dataclass: a cold start builds
    10^5 of these (immutable alike; :func:`parse_slice` builds them with ``tuple.__new__``)."""

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
    v = ServiceView.parse(svc)
    if v.type == "ExternalName":
        return []
    cluster_ip = next((ip for ip in v.cluster_ips if ip != "None" and _family(ip) == family), "")
    if not cluster_ip:
        return []
    ext_ips = tuple(ip for ip in v.external_ips if _family(ip) == family)
    lb_ips: tuple[str, ...] = ()
    if v.type == "LoadBalancer":
        lb_ips = tuple(ip for ip, mode in v.lb_ingress if mode != "Proxy" and _family(ip) == family)
    node_ports = v.type in ("NodePort", "LoadBalancer")
    out = []
    for p in v.ports:
        if p.port is None:
            raise ModelError(f"service {v.namespace}/{v.name}: bad port {p.name or '(unnamed)'}")
        sp = ServicePort(
            name=ServicePortName(v.namespace, v.name, p.name, p.protocol), cluster_ip=cluster_ip, port=p.port,
            node_port=p.node_port if node_ports else 0, external_ips=ext_ips, lb_ips=lb_ips,
            lb_source_ranges=v.lb_source_ranges, affinity_timeout=v.affinity_timeout,
            internal_policy_local=v.internal_policy_local, external_policy_local=False, health_check_node_port=0)
        if v.external_policy_local and sp.externally_accessible:
            hcnp = v.health_check_node_port if v.type == "LoadBalancer" else 0
            sp = replace(sp, external_policy_local=True, health_check_node_port=hcnp)
        out.append(sp)
    return out


_new = tuple.__new__


def parse_slice(es: Mapping[str, Any], node_name: str,
                family: int = 4) -> tuple[tuple[str, str], list[tuple[str, str, int, Endpoint]]]:
    """``((ns, service), [(portName, PROTOCOL, port, Endpoint), ...])`` for one EndpointSlice.

    Slices without the service-name label or of another address family give no endpoints.
    """
    v = EndpointSliceView.parse(es)
    key = (v.namespace, v.service)
    if not v.service or v.address_type not in ("", "IPv4" if family == 4 else "IPv6"):  # (unset: taken as ours)
        return key, []
    ports = [(p.name, p.protocol, p.port) for p in v.ports if p.port is not None]
    out: list[tuple[str, str, int, Endpoint]] = []
    for ep in v.endpoints:
        node = ep.node_name
        for addr in ep.addresses[:1]:  # upstream uses the first address
            for name, proto, port in ports:  # (positional: ~10^5 of these in a full sync)
                e = _new(Endpoint, (addr, port, ep.ready, ep.serving, ep.terminating, bool(node) and node == node_name,
                                    node, ep.zone_hints, ep.node_hints))
                out.append((name, proto, port, e))
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


SliceParse = tuple[tuple[str, str], list[tuple[str, str, int, Endpoint]]]


class ParseCache:
    """Parsed Services and EndpointSlices, reused while the same objects come back.

    An informer replaces an object's dict whenever the object changes, so while the same dict
    comes back, its parse still holds. One entry per object name (a new dict for the name
    replaces the entry); a full :func:`compute` drops the entries of objects it did not see.
    Memoisation only: :func:`compute` returns the same with or without a cache.
    """

    def __init__(self, node_name: str, family: int = 4) -> None:
        self.node_name, self.family = node_name, family
        self.services: dict[tuple[str, str], tuple[Mapping[str, Any], list[ServicePort]]] = {}
        self.slices: dict[tuple[str, str], tuple[Mapping[str, Any], SliceParse]] = {}

    def service(self, obj: Mapping[str, Any]) -> list[ServicePort]:
        k = (ns_of(obj), name_of(obj))
        hit = self.services.get(k)
        if hit is not None and hit[0] is obj:
            return hit[1]
        out = parse_service(obj, self.family)
        self.services[k] = (obj, out)
        return out

    def slice(self, obj: Mapping[str, Any]) -> SliceParse:
        k = (ns_of(obj), name_of(obj))
        hit = self.slices.get(k)
        if hit is not None and hit[0] is obj:
            return hit[1]
        out = parse_slice(obj, self.node_name, self.family)
        self.slices[k] = (obj, out)
        return out

    def keep_only(self, services: set[tuple[str, str]], slices: set[tuple[str, str]]) -> None:
        self.services = {k: v for k, v in self.services.items() if k in services}
        self.slices = {k: v for k, v in self.slices.items() if k in slices}


def compute(services: Iterable[Mapping[str, Any]], slices: Iterable[Mapping[str, Any]],
            node_name: str, node_ips: Iterable[str] = (), *, zone: str = "",
            family: int = 4, cache: ParseCache | None = None, full: bool = True) -> DesiredState:
    """The desired proxy state for this node from a snapshot of Services and EndpointSlices.

    With ``cache``, objects seen before are not parsed again; ``full`` says the snapshot is
    complete (the cache then forgets what it did not hold)."""
    if cache is not None and (cache.node_name, cache.family) != (node_name, family):
        raise ValueError("the parse cache is for another node or address family")
    p_slice = cache.slice if cache is not None else lambda es: parse_slice(es, node_name, family)
    p_service = cache.service if cache is not None else lambda svc: parse_service(svc, family)
    by_svc: dict[tuple[str, str], dict[tuple[str, str], dict[str, Endpoint]]] = {}
    slices = list(slices)
    for es in slices:
        key, eps = p_slice(es)
        if not eps:
            continue
        ports = by_svc.setdefault(key, {})
        for pname, proto, _port, ep in eps:
            ports.setdefault((pname, proto), {}).setdefault(ep.addr, ep)
    out: dict[ServicePortName, ServiceState] = {}
    services = list(services)
    for svc in services:
        for sp in p_service(svc):
            n = sp.name
            eps = by_svc.get((n.namespace, n.name), {}).get((n.port, n.protocol), {})
            out[n] = categorize(sp, eps.values(), node_name, zone)
    if cache is not None and full:
        cache.keep_only({(ns_of(s), name_of(s)) for s in services}, {(ns_of(s), name_of(s)) for s in slices})
    return DesiredState(node_name=node_name, node_ips=tuple(node_ips), services=out)


def changed_services(old: DesiredState | None, new: DesiredState) -> set[ServicePortName]:
    """Service ports whose rules may differ between ``old`` and ``new`` (added, removed or changed)."""
    if old is None:
        return set(new.services)
    changed = {n for n, st in new.services.items() if old.services.get(n) != st}
    changed.update(n for n in old.services if n not in new.services)
    return changed
