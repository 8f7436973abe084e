"""Frozen views of the Kubernetes objects the cluster DNS reads, and the DNS config.

Everything here is pure: plain Kubernetes JSON dicts in, frozen dataclasses out.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Literal

PodsMode = Literal["disabled", "insecure", "verified"]
ServiceKind = Literal["ClusterIP", "Headless", "ExternalName"]
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
TRIGGER_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
SCHEMA_VERSION = "1.1.0"


@dataclass(frozen=True, slots=True)
class DnsConfig:
    zone: str = "cluster.local"
    ttl: int = 5
    pods: PodsMode = "disabled"
    endpoint_pod_names: bool = False
    ignore_empty_service: bool = False
    namespaces: frozenset[str] | None = None  # None = every namespace is exposed
    forward: bool = True  # names outside the zone go to the forwarder (else REFUSED)
    axfr: bool = False
    ns_ips: tuple[str, ...] = ()  # glue for ns.dns.<zone>
    max_udp: int = 1232

    def __post_init__(self) -> None:
        if not 0 <= self.ttl <= 3600:
            raise ValueError(f"ttl {self.ttl} outside 0..3600")
        if self.pods not in ("disabled", "insecure", "verified"):
            raise ValueError(f"pods mode {self.pods!r}")
        if not self.zone.strip("."):
            raise ValueError("empty zone")

    @property
    def zone_labels(self) -> tuple[str, ...]:
        return tuple(self.zone.strip(".").lower().split("."))


@dataclass(frozen=True, slots=True)
class Port:
    name: str
    protocol: str  # lowercase: tcp / udp / sctp
    port: int


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    kind: ServiceKind
    cluster_ips: tuple[str, ...] = ()
    ports: tuple[Port, ...] = ()
    external_name: str = ""


@dataclass(frozen=True, slots=True)
class Endpoint:
    addresses: tuple[str, ...]
    hostname: str | None = None
    ready: bool = True
    pod_name: str | None = None


@dataclass(frozen=True, slots=True)
class Slice:
    namespace: str
    name: str
    service: str
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[Port, ...] = ()
    trigger_time: str | None = None


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    ips: tuple[str, ...] = field(default=())


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def canonical_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _ports(raw: Any) -> tuple[Port, ...]:
    out: list[Port] = []
    for p in raw or ():
        if not isinstance(p, dict):
            continue
        number = p.get("port")
        if not isinstance(number, int) or not 0 <= number <= 65535:
            number = -1  # EndpointSlice ports may leave the number unset
        out.append(Port(str(p.get("name") or "").lower(), str(p.get("protocol") or "TCP").lower(), number))
    return tuple(out)


def service_from_obj(obj: dict[str, Any]) -> Service | None:
    meta = _meta(obj)
    ns, name = meta.get("namespace") or "default", meta.get("name")
    if not name:
        return None
    spec = obj.get("spec") or {}
    ports = _ports(spec.get("ports"))
    if spec.get("type") == "ExternalName":
        target = str(spec.get("externalName") or "").strip().rstrip(".").lower()
        return Service(ns, name.lower(), "ExternalName", (), ports, target)
    ips_raw = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    if spec.get("clusterIP") == "None" or "None" in ips_raw:
        return Service(ns, name.lower(), "Headless", (), ports)
    ips = tuple(dict.fromkeys(ip for ip in (canonical_ip(str(x)) for x in ips_raw) if ip))
    return Service(ns, name.lower(), "ClusterIP", ips, ports)


def slice_from_obj(obj: dict[str, Any]) -> Slice | None:
    """An EndpointSlice that names its Service; FQDN slices and unlabelled slices give None."""
    meta = _meta(obj)
    labels = meta.get("labels") or {}
    svc = labels.get(SERVICE_NAME_LABEL)
    if not svc or not meta.get("name") or obj.get("addressType") == "FQDN":
        return None
    eps: list[Endpoint] = []
    for ep in obj.get("endpoints") or ():
        if not isinstance(ep, dict):
            continue
        addrs = tuple(a for a in (canonical_ip(str(x)) for x in ep.get("addresses") or ()) if a)
        if not addrs:
            continue
        cond = ep.get("conditions") or {}
        ready = cond.get("ready")
        ref = ep.get("targetRef") or {}
        pod = ref.get("name") if ref.get("kind", "Pod") == "Pod" else None
        host = ep.get("hostname")
        eps.append(Endpoint(addrs, host.lower() if host else None, ready is not False,
                            pod.lower() if pod else None))
    trig = (meta.get("annotations") or {}).get(TRIGGER_ANNOTATION)
    return Slice(meta.get("namespace") or "default", meta["name"], svc.lower(), tuple(eps),
                 _ports(obj.get("ports")), trig)


def pod_from_obj(obj: dict[str, Any]) -> Pod | None:
    meta = _meta(obj)
    if not meta.get("name"):
        return None
    status = obj.get("status") or {}
    raw = [p.get("ip") for p in status.get("podIPs") or () if isinstance(p, dict)]
    if not raw and status.get("podIP"):
        raw = [status["podIP"]]
    ips = tuple(dict.fromkeys(ip for ip in (canonical_ip(str(x)) for x in raw if x) if ip))
    return Pod(meta.get("namespace") or "default", meta["name"], ips)


def endpoint_name(ep: Endpoint, address: str, pod_names: bool) -> str:
    """The DNS label for one endpoint address (hostname, then pod name, then dashed IP)."""
    if ep.hostname:
        return ep.hostname
    if pod_names and ep.pod_name and len(ep.pod_name) < 64:
        return ep.pod_name
    if ":" in address:
        dashed = address.replace(":", "-")
        if dashed.endswith("-"):
            dashed += "0"
        if dashed.startswith("-"):
            dashed = "0" + dashed
        return dashed
    return address.replace(".", "-")
