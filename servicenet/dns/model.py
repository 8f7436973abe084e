"""Frozen views of the Kubernetes objects the cluster DNS reads, and the DNS config.

Everything here is pure: the shared views of :mod:`servicenet.api.views` (or plain Kubernetes
JSON dicts, parsed through them) in, DNS-shaped frozen dataclasses out (names lower-cased,
addresses canonical).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from servicenet.api.views import (
    EndpointSliceView,
    ServicePortView,
    ServiceView,
    SlicePortView,
    name_of,
    ns_of,
    pod_ips,
)

PodsMode = Literal["disabled", "insecure", "verified"]
ServiceKind = Literal["ClusterIP", "Headless", "ExternalName"]
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


def canonical_ip(text: str) -> str | None:
    """``text`` as :mod:`ipaddress` prints it, or None if it is no address."""
    if _CANONICAL_V4(text):  # the common case, without ipaddress: already in that form
        return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_V4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}").fullmatch  # (ASCII digits, no leading zeros)


def _ports(raw: Iterable[ServicePortView | SlicePortView]) -> tuple[Port, ...]:
    out: list[Port] = []
    for p in raw:
        number = p.port
        if number is None or not 0 <= number <= 65535:
            number = -1  # EndpointSlice ports may leave the number unset
        out.append(Port(p.name.lower(), p.protocol.lower(), number))
    return tuple(out)


def service_from_view(v: ServiceView) -> Service | None:
    if not v.name:
        return None
    ports = _ports(v.ports)
    if v.type == "ExternalName":
        target = v.external_name.strip().rstrip(".").lower()
        return Service(v.namespace, v.name.lower(), "ExternalName", (), ports, target)
    if v.headless:
        return Service(v.namespace, v.name.lower(), "Headless", (), ports)
    ips = tuple(dict.fromkeys(ip for ip in (canonical_ip(str(x)) for x in v.cluster_ips) if ip))
    return Service(v.namespace, v.name.lower(), "ClusterIP", ips, ports)


def service_from_obj(obj: dict[str, Any]) -> Service | None:
    return service_from_view(ServiceView.parse(obj))


def slice_from_view(v: EndpointSliceView) -> Slice | None:
    """An EndpointSlice that names its Service; FQDN slices and unlabelled slices give None."""
    if not v.service or not v.name or v.address_type == "FQDN":
        return None
    eps: list[Endpoint] = []
    for ep in v.endpoints:
        addrs = tuple([a for a in map(canonical_ip, ep.addresses) if a])  # (the view's addresses are strings)
        if not addrs:
            continue
        eps.append(Endpoint(addrs, ep.hostname.lower() if ep.hostname else None, ep.ready,
                            ep.pod_name.lower() if ep.pod_name else None))
    return Slice(v.namespace, v.name, v.service.lower(), tuple(eps), _ports(v.ports), v.trigger_time)


def slice_from_obj(obj: dict[str, Any]) -> Slice | None:
    return slice_from_view(EndpointSliceView.parse(obj))


def pod_from_obj(obj: dict[str, Any]) -> Pod | None:
    name = name_of(obj)
    if not name:
        return None
    ips = tuple(dict.fromkeys(ip for ip in (canonical_ip(str(x)) for x in pod_ips(obj)) if ip))
    return Pod(ns_of(obj) or "default", name, ips)


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
