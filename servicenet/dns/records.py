"""The record index: Services, EndpointSlices, Namespaces and Pods → DNS answers (pure).

``RecordIndex`` is updated one watch event at a time. Every update returns the set of
*dependency keys* whose answers may have changed; the responder keeps a cache of wire
answers tagged with the keys they were built from and drops exactly those.

``resolve(labels, qtype)`` answers one lowercased name in structured form (``Result``);
the wire encoding lives in ``responder.py``.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from servicenet.api.views import meta as meta_of

from .model import (
    SCHEMA_VERSION,
    DnsConfig,
    Endpoint,
    Pod,
    Service,
    Slice,
    endpoint_name,
    pod_from_obj,
    service_from_obj,
    slice_from_obj,
)

# RR types and rcodes used by the index
A, NS, CNAME, SOA, PTR, TXT, AAAA, SRV = 1, 2, 5, 6, 12, 16, 28, 33
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3
Labels = tuple[str, ...]
DepKey = tuple[str, ...]
GLOBAL: DepKey = ("global",)
V4_REV: Labels = ("in-addr", "arpa")
V6_REV: Labels = ("ip6", "arpa")
MAX_CHASE = 8


@dataclass(frozen=True, slots=True)
class SrvData:
    priority: int
    weight: int
    port: int
    target: Labels


@dataclass(frozen=True, slots=True)
class SoaData:
    mname: Labels
    rname: Labels
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


@dataclass(frozen=True, slots=True)
class RR:
    name: Labels
    rtype: int
    ttl: int
    rdata: str | Labels | SrvData | SoaData  # A/AAAA/TXT: str; PTR/CNAME/NS: labels


@dataclass(slots=True)
class Result:
    rcode: int = NOERROR
    answer: list[RR] = field(default_factory=list)
    authority: list[RR] = field(default_factory=list)
    additional: list[RR] = field(default_factory=list)
    deps: set[DepKey] = field(default_factory=set)
    forward_target: Labels | None = None  # ExternalName pointing outside the zone
    exists: bool = True


def reverse_name(ip: str) -> Labels:
    addr = ipaddress.ip_address(ip)
    return tuple(addr.reverse_pointer.lower().split("."))


def ip_from_reverse(labels: Labels) -> str | None:
    """``4.3.2.1.in-addr.arpa`` → ``1.2.3.4``; full nibble ip6.arpa names likewise; else None."""
    try:
        if labels[-2:] == V4_REV and len(labels) == 6:
            parts = labels[3::-1]
            if all(p.isdigit() and len(p) <= 3 and (p == "0" or not p.startswith("0")) for p in parts):
                return str(ipaddress.IPv4Address(".".join(parts)))
        elif labels[-2:] == V6_REV and len(labels) == 34:
            nib = labels[31::-1]
            if all(len(n) == 1 and n in "0123456789abcdef" for n in nib):
                h = "".join(nib)
                return str(ipaddress.IPv6Address(":".join(h[i:i + 4] for i in range(0, 32, 4))))
    except ValueError:
        return None
    return None


def _family(ip: str) -> int:
    return AAAA if ":" in ip else A


class RecordIndex:
    """Kubernetes objects indexed for DNS, updated incrementally per watch event."""

    def __init__(self, config: DnsConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config or DnsConfig()
        self.zone: Labels = self.config.zone_labels
        self._clock = clock
        self.serial = int(clock())
        self.synced = False
        self.services: dict[tuple[str, str], Service] = {}
        self.slices: dict[tuple[str, str], Slice] = {}
        self._slices_by_svc: dict[tuple[str, str], set[str]] = {}
        self.namespaces: set[str] = set()
        self._svc_count_by_ns: dict[str, int] = {}
        self.pods: dict[tuple[str, str], Pod] = {}
        self._pod_ips: dict[tuple[str, str], int] = {}  # (ns, ip) → number of pods
        # ip → owners, as small tuples (a set per address costs ~5x the memory)
        self._cluster_ip_owner: dict[str, tuple[tuple[str, str], ...]] = {}
        self._ep_ip_owner: dict[str, tuple[tuple[str, str], ...]] = {}  # ip → ((ns, slice), ...)
        self.listeners: list[Callable[[set[DepKey]], None]] = []

    # ---------------------------------------------------------------- updates
    def _changed(self, keys: set[DepKey]) -> set[DepKey]:
        if keys:
            self.serial = max(self.serial + 1, int(self._clock()))
            for fn in self.listeners:
                fn(keys)
        return keys

    def set_synced(self, synced: bool = True) -> None:
        if synced != self.synced:
            self.synced = synced
            self._changed({GLOBAL})

    def upsert_namespace(self, obj: dict[str, Any]) -> set[DepKey]:
        name = meta_of(obj).get("name")
        if not name or name in self.namespaces:
            return set()
        self.namespaces.add(name)
        return self._changed({("ns", name)})

    def delete_namespace(self, obj: dict[str, Any]) -> set[DepKey]:
        name = meta_of(obj).get("name")
        if name not in self.namespaces:
            return set()
        self.namespaces.discard(name)
        return self._changed({("ns", name)})

    def _svc_keys(self, svc: Service | None) -> set[DepKey]:
        if svc is None:
            return set()
        keys: set[DepKey] = {("svc", svc.namespace, svc.name)}
        keys.update(("ip", ip) for ip in svc.cluster_ips)
        return keys

    def upsert_service(self, obj: dict[str, Any]) -> set[DepKey]:
        svc = service_from_obj(obj)
        if svc is None:
            return set()
        key = (svc.namespace, svc.name)
        old = self.services.get(key)
        if old == svc:
            return set()
        keys = self._svc_keys(old) | self._svc_keys(svc)
        if old is None:
            n = self._svc_count_by_ns.get(svc.namespace, 0)
            self._svc_count_by_ns[svc.namespace] = n + 1
            if n == 0:
                keys.add(("ns", svc.namespace))
        else:
            self._unown_cluster_ips(old)
        self.services[key] = svc
        for ip in svc.cluster_ips:
            _own(self._cluster_ip_owner, ip, key)
        keys |= self._endpoint_ip_keys(key)  # PTR for endpoints carries the service name
        return self._changed(keys)

    def _unown_cluster_ips(self, svc: Service) -> None:
        for ip in svc.cluster_ips:
            _disown(self._cluster_ip_owner, ip, (svc.namespace, svc.name))

    def delete_service(self, obj: dict[str, Any]) -> set[DepKey]:
        meta = meta_of(obj)
        key = (meta.get("namespace") or "default", str(meta.get("name") or "").lower())
        old = self.services.pop(key, None)
        if old is None:
            return set()
        self._unown_cluster_ips(old)
        keys = self._svc_keys(old) | self._endpoint_ip_keys(key)
        n = self._svc_count_by_ns.get(old.namespace, 1) - 1
        if n <= 0:
            self._svc_count_by_ns.pop(old.namespace, None)
            keys.add(("ns", old.namespace))
        else:
            self._svc_count_by_ns[old.namespace] = n
        return self._changed(keys)

    def _endpoint_ip_keys(self, svc_key: tuple[str, str]) -> set[DepKey]:
        keys: set[DepKey] = set()
        for sl_name in self._slices_by_svc.get(svc_key, ()):
            sl = self.slices[(svc_key[0], sl_name)]
            keys.update(("ip", a) for ep in sl.endpoints for a in ep.addresses)
        return keys

    def upsert_slice(self, obj: dict[str, Any]) -> set[DepKey]:
        sl = slice_from_obj(obj)
        if sl is None:
            # a slice that lost its service label stops counting
            return self.delete_slice(obj)
        key = (sl.namespace, sl.name)
        old = self.slices.get(key)
        if old == sl:
            return set()
        keys = self._remove_slice(old) if old is not None else set()
        self.slices[key] = sl
        self._slices_by_svc.setdefault((sl.namespace, sl.service), set()).add(sl.name)
        for ep in sl.endpoints:
            for a in ep.addresses:
                _own(self._ep_ip_owner, a, key)
                keys.add(("ip", a))
        keys.add(("svc", sl.namespace, sl.service))
        return self._changed(keys)

    def _remove_slice(self, sl: Slice) -> set[DepKey]:
        key = (sl.namespace, sl.name)
        keys: set[DepKey] = {("svc", sl.namespace, sl.service)}
        names = self._slices_by_svc.get((sl.namespace, sl.service))
        if names is not None:
            names.discard(sl.name)
            if not names:
                del self._slices_by_svc[(sl.namespace, sl.service)]
        for ep in sl.endpoints:
            for a in ep.addresses:
                keys.add(("ip", a))
                _disown(self._ep_ip_owner, a, key)
        return keys

    def delete_slice(self, obj: dict[str, Any]) -> set[DepKey]:
        meta = meta_of(obj)
        old = self.slices.pop((meta.get("namespace") or "default", meta.get("name") or ""), None)
        if old is None:
            return set()
        return self._changed(self._remove_slice(old))

    def upsert_pod(self, obj: dict[str, Any]) -> set[DepKey]:
        pod = pod_from_obj(obj)
        if pod is None:
            return set()
        key = (pod.namespace, pod.name)
        old = self.pods.get(key)
        if old == pod:
            return set()
        keys = self._drop_pod(old) if old is not None else set()
        self.pods[key] = pod
        for ip in pod.ips:
            self._pod_ips[(pod.namespace, ip)] = self._pod_ips.get((pod.namespace, ip), 0) + 1
            keys.add(("podip", pod.namespace, ip))
        return self._changed(keys)

    def _drop_pod(self, pod: Pod) -> set[DepKey]:
        keys: set[DepKey] = set()
        for ip in pod.ips:
            n = self._pod_ips.get((pod.namespace, ip), 1) - 1
            if n <= 0:
                self._pod_ips.pop((pod.namespace, ip), None)
            else:
                self._pod_ips[(pod.namespace, ip)] = n
            keys.add(("podip", pod.namespace, ip))
        return keys

    def delete_pod(self, obj: dict[str, Any]) -> set[DepKey]:
        meta = meta_of(obj)
        old = self.pods.pop((meta.get("namespace") or "default", meta.get("name") or ""), None)
        return self._changed(self._drop_pod(old)) if old is not None else set()

    def apply(self, kind: str, event: str, obj: dict[str, Any]) -> set[DepKey]:
        """Apply one watch event: ``kind`` is services/endpointslices/namespaces/pods."""
        delete = event == "DELETED"
        fn = {
            "services": self.delete_service if delete else self.upsert_service,
            "endpointslices": self.delete_slice if delete else self.upsert_slice,
            "namespaces": self.delete_namespace if delete else self.upsert_namespace,
            "pods": self.delete_pod if delete else self.upsert_pod,
        }[kind]
        return fn(obj)

    def load(self, objects: Iterable[tuple[str, dict[str, Any]]]) -> None:
        for kind, obj in objects:
            self.apply(kind, "ADDED", obj)

    # ---------------------------------------------------------------- queries
    def ready_endpoints(self, ns: str, svc: str) -> list[tuple[Endpoint, Slice]]:
        out = []
        for sl_name in sorted(self._slices_by_svc.get((ns, svc), ())):
            sl = self.slices[(ns, sl_name)]
            out.extend((ep, sl) for ep in sl.endpoints if ep.ready)
        return out

    def namespace_exposed(self, ns: str) -> bool:
        allowed = self.config.namespaces
        if allowed is not None and ns not in allowed:
            return False
        return ns in self.namespaces or ns in self._svc_count_by_ns

    def soa(self, apex: Labels) -> RR:
        ttl, z = self.config.ttl, self.zone
        data = SoaData(("ns", "dns", *z), ("hostmaster", *z), self.serial & 0xFFFFFFFF, 7200, 1800, 86400, ttl)
        return RR(apex, SOA, min(ttl, 300), data)

    def resolve(self, labels: Labels, qtype: int, depth: int = 0) -> Result | None:
        """Answer ``labels`` (lowercased, no root) for ``qtype``; None = not ours (forward it)."""
        z = self.zone
        nz = len(z)
        if len(labels) >= nz and labels[len(labels) - nz:] == z:
            res = self._in_zone(labels[: len(labels) - nz], qtype, depth)
            apex = z
        elif labels[-2:] in (V4_REV, V6_REV):
            res = self._reverse(labels, qtype)
            if res is None:
                return None
            apex = labels[-2:]
        else:
            return None
        res.deps.add(GLOBAL)
        if res.rcode == NXDOMAIN or (res.rcode == NOERROR and not res.answer and res.forward_target is None):
            if not self.synced:
                res.rcode = SERVFAIL
            else:
                res.authority = [self.soa(apex)]
        return res

    def _reverse(self, labels: Labels, qtype: int) -> Result | None:
        ip = ip_from_reverse(labels)
        if ip is None:
            return None if self.config.forward else Result(NXDOMAIN, exists=False)
        targets: list[Labels] = []
        for ns, name in sorted(self._cluster_ip_owner.get(ip, ())):
            targets.append((name, ns, "svc", *self.zone))
        if not targets:
            for ns, sl_name in sorted(self._ep_ip_owner.get(ip, ())):
                sl = self.slices[(ns, sl_name)]
                if (ns, sl.service) not in self.services:
                    continue
                for ep in sl.endpoints:
                    if ep.ready and ip in ep.addresses:
                        host = endpoint_name(ep, ip, self.config.endpoint_pod_names)
                        targets.append((host, sl.service, ns, "svc", *self.zone))
        res = Result(deps={("ip", ip)})
        if not targets:
            if self.config.forward:
                return None  # not a cluster address: let the upstream answer it
            res.rcode, res.exists = NXDOMAIN, False
            return res
        if qtype == PTR:
            ttl = self.config.ttl
            res.answer = [RR(labels, PTR, ttl, t) for t in dict.fromkeys(targets)]
        return res

    def _in_zone(self, rel: Labels, qtype: int, depth: int) -> Result:
        n = len(rel)
        cfg = self.config
        if n == 0:
            res = Result()
            if qtype == SOA:
                res.answer = [self.soa(self.zone)]
            elif qtype == NS:
                ns_name = ("ns", "dns", *self.zone)
                res.answer = [RR(self.zone, NS, cfg.ttl, ns_name)]
                res.additional = [RR(ns_name, _family(ip), cfg.ttl, ip) for ip in cfg.ns_ips]
            return res
        if rel == ("dns-version",) and qtype == TXT:
            return Result(answer=[RR(("dns-version", *self.zone), TXT, 28800, SCHEMA_VERSION)])
        if rel == ("ns", "dns") and cfg.ns_ips:
            return Result(answer=[RR(("ns", "dns", *self.zone), qtype, cfg.ttl, ip)
                                  for ip in cfg.ns_ips if _family(ip) == qtype])
        last = rel[-1]
        if last not in ("svc", "pod"):
            return Result(NXDOMAIN, exists=False)
        if n == 1:
            return Result()
        ns = rel[-2]
        res = Result(deps={("ns", ns)})
        if not self.namespace_exposed(ns):
            res.rcode, res.exists = NXDOMAIN, False
            return res
        if n == 2:
            return res
        if last == "pod":
            return self._pod(rel, ns, qtype, res) if n == 3 else _nx(res)
        svc_name = rel[-3]
        res.deps.add(("svc", ns, svc_name))
        svc = self.services.get((ns, svc_name))
        if svc is None or n > 5:
            return _nx(res)
        full = rel + self.zone
        if n == 4:
            return self._endpoint(svc, rel[0], full, qtype, res)
        port, proto = rel[0].removeprefix("_"), rel[1].removeprefix("_")
        if n == 5 and svc.kind == "ExternalName":
            return _nx(res)
        if svc.kind == "ExternalName":
            return self._external(svc, full, qtype, res, depth)
        ports = [p for p in svc.ports if p.name == port and p.protocol == proto] if n == 5 else []
        if svc.kind == "Headless":
            return self._headless(svc, full, qtype, res, None if n == 3 else (port, proto))
        if cfg.ignore_empty_service and not self.ready_endpoints(ns, svc.name):
            return _nx(res)
        if n == 5 and not ports:
            return _nx(res)
        ttl = cfg.ttl
        if qtype in (A, AAAA):
            res.answer = [RR(full, qtype, ttl, ip) for ip in svc.cluster_ips if _family(ip) == qtype]
        elif qtype == SRV:
            chosen = svc.ports if n == 3 else ports
            target = (svc.name, ns, "svc", *self.zone)
            entries = [p for p in chosen for _ in svc.cluster_ips or ("",)]
            weight = _srv_weight(len(entries))
            seen: set[int] = set()
            for p in entries:
                if p.port < 0 or p.port in seen:
                    continue
                seen.add(p.port)
                res.answer.append(RR(full, SRV, ttl, SrvData(0, weight, p.port, target)))
            if res.answer:
                res.additional = [RR(target, _family(ip), ttl, ip) for ip in svc.cluster_ips]
        return res

    def _endpoint(self, svc: Service, label: str, full: Labels, qtype: int, res: Result) -> Result:
        if svc.kind == "ExternalName":
            return _nx(res)
        pod_names = self.config.endpoint_pod_names
        ips = [a for ep, _ in self.ready_endpoints(svc.namespace, svc.name) for a in ep.addresses
               if endpoint_name(ep, a, pod_names) == label]
        if not ips:
            return _nx(res)
        if qtype in (A, AAAA):
            ttl = self.config.ttl
            res.answer = [RR(full, qtype, ttl, ip) for ip in dict.fromkeys(ips) if _family(ip) == qtype]
        return res

    def _headless(self, svc: Service, full: Labels, qtype: int, res: Result,
                  port: tuple[str, str] | None) -> Result:
        eps = self.ready_endpoints(svc.namespace, svc.name)
        if not eps:
            return _nx(res)
        ttl = self.config.ttl
        if port is not None and not any(p.name == port[0] and p.protocol == port[1]
                                        for _, sl in eps for p in sl.ports):
            return _nx(res)
        if qtype in (A, AAAA):
            ips = dict.fromkeys(a for ep, _ in eps for a in ep.addresses if _family(a) == qtype)
            res.answer = [RR(full, qtype, ttl, ip) for ip in ips]
        elif qtype == SRV:
            pod_names = self.config.endpoint_pod_names
            base = (svc.name, svc.namespace, "svc", *self.zone)
            entries: list[tuple[int, Labels, str]] = []
            for ep, sl in eps:
                for p in sl.ports:
                    if port is not None and (p.name, p.protocol) != port:
                        continue
                    for a in ep.addresses:
                        entries.append((p.port, (endpoint_name(ep, a, pod_names), *base), a))
            weight = _srv_weight(len(entries))
            seen: set[tuple[int, Labels]] = set()
            glue: dict[tuple[Labels, str], None] = {}
            for number, target, a in entries:
                glue[(target, a)] = None
                if number < 0 or (number, target) in seen:
                    continue
                seen.add((number, target))
                res.answer.append(RR(full, SRV, ttl, SrvData(0, weight, number, target)))
            if res.answer:
                res.additional = [RR(t, _family(a), ttl, a) for t, a in glue]
        return res

    def _external(self, svc: Service, full: Labels, qtype: int, res: Result, depth: int) -> Result:
        if not svc.external_name:
            return _nx(res)
        target: Labels = tuple(svc.external_name.split("."))
        if qtype not in (A, AAAA, CNAME, TXT):
            return res  # the name exists; no SRV and friends for ExternalName
        res.answer = [RR(full, CNAME, self.config.ttl, target)]
        if qtype == CNAME:
            return res
        if depth >= MAX_CHASE:
            return res
        z = self.zone
        if len(target) >= len(z) and target[len(target) - len(z):] == z:
            inner = self.resolve(target, qtype, depth + 1)
            if inner is not None:
                res.answer.extend(inner.answer)
                res.deps |= inner.deps
                res.forward_target = inner.forward_target  # a chain that leaves the zone
                if inner.rcode != NOERROR:
                    res.rcode = inner.rcode
            return res
        res.forward_target = target
        return res

    def _pod(self, rel: Labels, ns: str, qtype: int, res: Result) -> Result:
        mode = self.config.pods
        if mode == "disabled":
            return _nx(res)
        label = rel[0]
        ip: str | None = None
        try:
            if label.count("-") == 3 and "--" not in label:
                ip = str(ipaddress.IPv4Address(label.replace("-", ".")))
            else:
                ip = str(ipaddress.IPv6Address(label.replace("-", ":")))
        except ValueError:
            return _nx(res)
        if mode == "verified":
            res.deps.add(("podip", ns, ip))
            if (ns, ip) not in self._pod_ips:
                return _nx(res)
        if qtype == _family(ip):
            res.answer = [RR(rel + self.zone, qtype, self.config.ttl, ip)]
        return res

    # ---------------------------------------------------------------- transfer
    def axfr_records(self) -> list[RR]:
        """Every record of the zone, SOA first and last (CoreDNS order)."""
        z, ttl = self.zone, self.config.ttl
        soa = self.soa(z)
        out: list[RR] = [soa, RR(z, NS, ttl, ("ns", "dns", *z))]
        out += [RR(("ns", "dns", *z), _family(ip), ttl, ip) for ip in self.config.ns_ips]
        out.append(RR(("dns-version", *z), TXT, 28800, SCHEMA_VERSION))
        for (ns, name) in sorted(self.services):
            svc = self.services[(ns, name)]
            if not self.namespace_exposed(ns):
                continue
            base = (name, ns, "svc", *z)
            if svc.kind == "ExternalName":
                if svc.external_name:
                    out.append(RR(base, CNAME, ttl, tuple(svc.external_name.split("."))))
                continue
            if svc.kind == "ClusterIP":
                out += [RR(base, _family(ip), ttl, ip) for ip in svc.cluster_ips]
                for p in svc.ports:
                    if p.port >= 0:
                        out.append(RR(base, SRV, ttl, SrvData(0, 100, p.port, base)))
                        if p.name:
                            out.append(RR((f"_{p.name}", f"_{p.protocol}", *base), SRV, ttl,
                                          SrvData(0, 100, p.port, base)))
                continue
            eps = self.ready_endpoints(ns, name)
            pod_names = self.config.endpoint_pod_names
            for ep, sl in eps:
                for a in ep.addresses:
                    host = (endpoint_name(ep, a, pod_names), *base)
                    out += [RR(base, _family(a), ttl, a), RR(host, _family(a), ttl, a)]
                    for p in sl.ports:
                        if p.name and p.port >= 0:
                            out.append(RR((f"_{p.name}", f"_{p.protocol}", *base), SRV, ttl,
                                          SrvData(0, _srv_weight(len(eps)), p.port, host)))
        out.append(soa)
        return out


def _own(table: dict[str, tuple[tuple[str, str], ...]], ip: str, key: tuple[str, str]) -> None:
    cur = table.get(ip, ())
    if key not in cur:
        table[ip] = (*cur, key)


def _disown(table: dict[str, tuple[tuple[str, str], ...]], ip: str, key: tuple[str, str]) -> None:
    cur = table.get(ip)
    if cur is not None and key in cur:
        rest = tuple(k for k in cur if k != key)
        if rest:
            table[ip] = rest
        else:
            del table[ip]


def _nx(res: Result) -> Result:
    res.rcode, res.exists = NXDOMAIN, False
    return res


def _srv_weight(n: int) -> int:
    return max(1, 100 // n) if n else 100
