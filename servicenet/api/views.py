"""Frozen views of the objects every component reads, parsed once with upstream's defaults.

Components receive Kubernetes wire dicts from the informer. Instead of each core re-reading the
same fields (and re-deciding the same fallbacks), a core calls one ``*.parse`` here and works on
the frozen, slotted result. The views are read-only projections: they never go back on the
wire, and they keep only what some component reads. Parsing never raises on odd input; a
malformed field reads as its default.

Every view is a ``NamedTuple``: immutable and slotted (no ``__dict__``) like a frozen slotted
dataclass, and several times cheaper to build — which matters on the DNS and proxy update paths,
where every watch event is parsed. Compare views by field, not against plain tuples.

The API (kept small on purpose):

* ``Obj`` — the wire-dict type alias (``dict[str, Any]``).
* ``meta(o)``, ``name_of(o)``, ``ns_of(o)``, ``uid_of(o)``, ``labels_of(o)``,
  ``annotations_of(o)`` — tolerant metadata accessors on wire dicts (``{}``/``""`` when absent).
* ``service_cluster_ips(spec)`` — upstream's ``clusterIPs``-else-``[clusterIP]`` fallback;
  ``pod_ips(pod)`` — ``status.podIPs``, else ``[status.podIP]``.
* ``ServiceView.parse(obj)`` — type (default ``ClusterIP``), ``cluster_ips`` (the fallback
  above, ``"None"`` kept), ``headless``, ``ports`` (:class:`ServicePortView`, protocol upper
  case, default TCP), selector, traffic policies, session affinity, LoadBalancer ingress.
* ``EndpointSliceView.parse(obj)`` — ``service`` (the ``kubernetes.io/service-name`` label or
  ``""``), ``address_type`` (``""`` when unset), ``ports`` (:class:`SlicePortView`, ``port`` may
  be ``None``) and ``endpoints`` (:class:`EndpointView`: ``ready`` is True when unset,
  ``serving`` defaults to ``ready``, ``terminating`` to False).
* ``PodView.parse(obj)`` — ``ips`` (``podIPs``, else ``[podIP]``), phase, node, readiness.
* ``NodeView.parse(obj)`` — addresses, ``ready``, zone, unschedulable, netns annotation.
* ``selector_matches`` / ``equality_selector_matches`` are re-exported from
  :mod:`servicenet.api.selectors` (the one selector implementation).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from servicenet.api import wellknown as wk
from servicenet.api.selectors import equality_selector_matches, selector_matches
from servicenet.api.wire import Obj, meta

__all__ = [
    "EndpointSliceView", "EndpointView", "NodeView", "Obj", "PodView", "ServicePortView", "ServiceView",
    "SlicePortView", "annotations_of", "equality_selector_matches", "labels_of", "meta", "name_of", "ns_of",
    "pod_ips", "selector_matches", "service_cluster_ips", "uid_of",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})
_NO_FIELDS: Mapping[str, Any] = MappingProxyType({})


# -- metadata accessors --------------------------------------------------------------------------

def name_of(o: Mapping[str, Any] | None) -> str:
    return meta(o).get("name") or ""


def ns_of(o: Mapping[str, Any] | None) -> str:
    return meta(o).get("namespace") or ""


def uid_of(o: Mapping[str, Any] | None) -> str:
    return meta(o).get("uid") or ""


def labels_of(o: Mapping[str, Any] | None) -> dict[str, str]:
    return meta(o).get("labels") or {}


def annotations_of(o: Mapping[str, Any] | None) -> dict[str, str]:
    return meta(o).get("annotations") or {}


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _int(v: Any, default: int = 0) -> int:
    try:
        return int(v) if v is not None and v != "" else default
    except (TypeError, ValueError):
        return default


# -- Service -------------------------------------------------------------------------------------

def service_cluster_ips(spec: Mapping[str, Any] | None) -> list[str]:
    """``spec.clusterIPs``, or ``[spec.clusterIP]`` for a client that set only the singular field."""
    if not spec:
        return []
    ips = spec.get("clusterIPs")
    if ips:
        return list(ips)
    one = spec.get("clusterIP")
    return [one] if one else []


class ServicePortView(NamedTuple):
    name: str
    protocol: str  # upper case: TCP, UDP, SCTP
    port: int | None  # None when the wire value is missing or not an integer
    target_port: int | str | None = None
    node_port: int = 0
    app_protocol: str | None = None


class ServiceView(NamedTuple):
    namespace: str
    name: str
    uid: str
    type: str  # ClusterIP (default), NodePort, LoadBalancer, ExternalName
    cluster_ips: tuple[str, ...]  # clusterIPs-else-[clusterIP]; may hold "None" (headless)
    ports: tuple[ServicePortView, ...]
    selector: Mapping[str, str] | None  # None = selector-less
    external_name: str = ""
    external_ips: tuple[str, ...] = ()
    lb_ingress: tuple[tuple[str, str], ...] = ()  # (ip, ipMode) of status.loadBalancer.ingress
    lb_source_ranges: tuple[str, ...] = ()
    affinity_timeout: int | None = None  # None unless sessionAffinity is ClientIP
    external_policy_local: bool = False
    internal_policy_local: bool = False
    health_check_node_port: int = 0
    publish_not_ready: bool = False
    labels: Mapping[str, str] = _EMPTY

    @property
    def headless(self) -> bool:
        return "None" in self.cluster_ips

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    @staticmethod
    def parse(obj: Mapping[str, Any]) -> ServiceView:
        # (hot: DNS and the proxy parse every Service event; keep the common case to plain lookups)
        m = meta(obj)
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            spec = _NO_FIELDS
        ports = []
        for p in spec.get("ports") or ():
            if isinstance(p, dict):
                num, node_port = p.get("port"), p.get("nodePort")
                ports.append(ServicePortView(
                    p.get("name") or "", (p.get("protocol") or "TCP").upper(), num if isinstance(num, int) else None,
                    p.get("targetPort"), node_port if isinstance(node_port, int) else _int(node_port),
                    p.get("appProtocol")))
        affinity = None
        if spec.get("sessionAffinity") == "ClientIP":
            cfg = _dict(_dict(spec.get("sessionAffinityConfig")).get("clientIP"))
            affinity = _int(cfg.get("timeoutSeconds")) or wk.DEFAULT_SESSION_AFFINITY_TIMEOUT
        lb_ingress: tuple[tuple[str, str], ...] = ()
        status = obj.get("status")
        if status:
            ingress = _dict(_dict(status).get("loadBalancer")).get("ingress") or ()
            lb_ingress = tuple((i["ip"], i.get("ipMode") or "VIP") for i in ingress if isinstance(i, dict) and i.get("ip"))
        sel = spec.get("selector")
        ips = spec.get("clusterIPs")
        hcnp = spec.get("healthCheckNodePort")
        return ServiceView(
            m.get("namespace") or "default", m.get("name") or "", m.get("uid") or "", spec.get("type") or "ClusterIP",
            tuple(ips) if ips else tuple(service_cluster_ips(spec)), tuple(ports),
            sel if isinstance(sel, dict) and sel else None, str(spec.get("externalName") or ""),
            tuple(spec.get("externalIPs") or ()), lb_ingress, tuple(spec.get("loadBalancerSourceRanges") or ()),
            affinity, spec.get("externalTrafficPolicy") == "Local", spec.get("internalTrafficPolicy") == "Local",
            hcnp if isinstance(hcnp, int) else _int(hcnp), bool(spec.get("publishNotReadyAddresses")),
            m.get("labels") or _EMPTY)


# -- EndpointSlice -------------------------------------------------------------------------------

class SlicePortView(NamedTuple):
    name: str
    protocol: str  # upper case
    port: int | None  # EndpointSlice ports may leave the number unset
    app_protocol: str | None = None


class EndpointView(NamedTuple):
    """One endpoint of a slice. A NamedTuple, not a frozen dataclass: the proxy and DNS parse
    100,000 of these on a cold start, and a tuple is built several times faster (immutable alike)."""

    addresses: tuple[str, ...]
    ready: bool = True  # upstream: unset means ready
    serving: bool = True  # unset: same as ready
    terminating: bool = False
    hostname: str | None = None
    node_name: str = ""
    zone: str = ""
    pod_name: str | None = None  # targetRef.name when the ref is a Pod (kind defaults to Pod)
    zone_hints: tuple[str, ...] = ()
    node_hints: tuple[str, ...] = ()

    @staticmethod
    def parse(ep: Mapping[str, Any]) -> EndpointView:
        cond = ep.get("conditions")
        if cond.__class__ is not dict:
            cond = {}
        ready = cond.get("ready") is not False
        serving = cond.get("serving")
        ref = ep.get("targetRef")
        if ref.__class__ is dict:
            pod_name = (ref.get("name") or None) if ref.get("kind", "Pod") == "Pod" else None
        else:
            pod_name = None
        hints = ep.get("hints")
        if hints.__class__ is dict:
            zone_hints = tuple(z["name"] for z in hints.get("forZones") or ()
                               if isinstance(z, dict) and "name" in z)
            node_hints = tuple(n["name"] for n in hints.get("forNodes") or ()
                               if isinstance(n, dict) and "name" in n)
        else:
            zone_hints = node_hints = ()
        addrs = ep.get("addresses") or ()
        if addrs.__class__ is list and len(addrs) == 1 and addrs[0].__class__ is str:
            addresses = (addrs[0],)  # (the usual case, without a loop)
        else:
            addresses = tuple([a if a.__class__ is str else str(a) for a in addrs])
        return _new_endpoint(EndpointView, (
            addresses,
            ready, ready if serving is None else bool(serving), bool(cond.get("terminating")),
            ep.get("hostname") or None, ep.get("nodeName") or "", ep.get("zone") or "",
            pod_name, zone_hints, node_hints))


_new_endpoint = tuple.__new__


class EndpointSliceView(NamedTuple):
    namespace: str
    name: str
    service: str  # the kubernetes.io/service-name label ("" when unlabelled)
    address_type: str  # IPv4, IPv6, FQDN, or "" when unset
    ports: tuple[SlicePortView, ...]
    endpoints: tuple[EndpointView, ...]
    managed_by: str = ""
    trigger_time: str | None = None

    @staticmethod
    def parse(obj: Mapping[str, Any]) -> EndpointSliceView:
        m = meta(obj)
        labels = m.get("labels") or {}
        ports = tuple(
            SlicePortView(str(p.get("name") or ""), str(p.get("protocol") or "TCP").upper(),
                          p["port"] if isinstance(p.get("port"), int) else None, p.get("appProtocol"))
            for p in obj.get("ports") or () if isinstance(p, dict))
        parse = EndpointView.parse
        eps = tuple([parse(e) for e in obj.get("endpoints") or () if isinstance(e, dict)])
        return EndpointSliceView(
            namespace=m.get("namespace") or "default", name=m.get("name") or "",
            service=labels.get(wk.SERVICE_NAME_LABEL) or "", address_type=obj.get("addressType") or "",
            ports=ports, endpoints=eps, managed_by=labels.get(wk.MANAGED_BY_LABEL) or "",
            trigger_time=(m.get("annotations") or {}).get(wk.TRIGGER_TIME_ANNOTATION))


# -- Pod -----------------------------------------------------------------------------------------

def pod_ips(obj: Mapping[str, Any]) -> list[str]:
    """``status.podIPs[*].ip``, else ``[status.podIP]``."""
    status = _dict(obj.get("status"))
    ips = [p["ip"] for p in status.get("podIPs") or () if isinstance(p, dict) and p.get("ip")]
    if not ips and status.get("podIP"):
        ips = [status["podIP"]]
    return ips


class PodView(NamedTuple):
    namespace: str
    name: str
    uid: str
    ips: tuple[str, ...]
    node_name: str = ""
    phase: str = ""
    ready: bool = False  # the Ready condition is "True"
    terminating: bool = False  # metadata.deletionTimestamp is set
    hostname: str = ""
    subdomain: str = ""
    labels: Mapping[str, str] = _EMPTY

    @staticmethod
    def parse(obj: Mapping[str, Any]) -> PodView:
        m = meta(obj)
        spec = _dict(obj.get("spec"))
        status = _dict(obj.get("status"))
        ready = any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or ())
        return PodView(
            namespace=m.get("namespace") or "default", name=m.get("name") or "", uid=m.get("uid") or "",
            ips=tuple(pod_ips(obj)), node_name=spec.get("nodeName") or "", phase=status.get("phase") or "",
            ready=ready, terminating=bool(m.get("deletionTimestamp")),
            hostname=spec.get("hostname") or "", subdomain=spec.get("subdomain") or "",
            labels=m.get("labels") or _EMPTY)


# -- Node ----------------------------------------------------------------------------------------

class NodeView(NamedTuple):
    name: str
    addresses: tuple[tuple[str, str], ...]  # (type, address) of status.addresses
    ready: bool = False  # the Ready condition is "True"
    unschedulable: bool = False
    zone: str = ""
    netns: str = ""  # the servicenet.dev/netns annotation
    labels: Mapping[str, str] = _EMPTY

    def addresses_of(self, kind: str = "InternalIP") -> tuple[str, ...]:
        return tuple(a for t, a in self.addresses if t == kind)

    @staticmethod
    def parse(obj: Mapping[str, Any]) -> NodeView:
        m = meta(obj)
        status = _dict(obj.get("status"))
        labels = m.get("labels") or _EMPTY
        ready = any(isinstance(c, dict) and c.get("type") == "Ready" and c.get("status") == "True"
                    for c in status.get("conditions") or ())
        return NodeView(
            name=m.get("name") or "",
            addresses=tuple((str(a.get("type") or ""), str(a.get("address") or ""))
                            for a in status.get("addresses") or () if isinstance(a, dict)),
            ready=ready, unschedulable=bool(_dict(obj.get("spec")).get("unschedulable")),
            zone=labels.get(wk.ZONE_LABEL) or "", netns=(m.get("annotations") or {}).get(wk.NETNS_ANNOTATION) or "",
            labels=labels)
