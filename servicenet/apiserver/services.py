"""The service registry: ClusterIP and NodePort allocation around Service writes.

Allocators are pure (:mod:`servicenet.api.allocators`); this module decides when to allocate,
keep or release, and rebuilds the allocators from the stored Services on start, so an address
is never handed out twice — a Service only exists once its write is durable.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any

from servicenet.api import errors
from servicenet.api import wellknown as wk
from servicenet.api.allocators import (
    AllocationError,
    ErrAllocated,
    ErrFull,
    ErrNotInRange,
    NodePortAllocator,
    ServiceIPAllocator,
)
from servicenet.api.errors import FieldError
from servicenet.api.resources import ResourceInfo
from servicenet.api.views import meta as meta_of
from servicenet.api.views import service_cluster_ips


def _family(ip: str) -> str:
    return "IPv6" if ipaddress.ip_address(ip).version == 6 else "IPv4"


def _needs_node_ports(spec: dict[str, Any]) -> bool:
    t = spec.get("type", "ClusterIP")
    if t == "NodePort":
        return True
    return t == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts", True) is not False


def _needs_health_port(spec: dict[str, Any]) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


class ServiceRegistry:
    def __init__(self, cidrs: list[str], node_port_range: tuple[int, int] = wk.NODE_PORT_RANGE) -> None:
        self.ip_allocs: dict[str, ServiceIPAllocator] = {}
        for cidr in cidrs:
            fam = "IPv6" if ipaddress.ip_network(cidr, strict=False).version == 6 else "IPv4"
            self.ip_allocs[fam] = ServiceIPAllocator(cidr)
        self.primary_family = next(iter(self.ip_allocs))
        base, last = node_port_range
        self.ports = NodePortAllocator(base, last - base + 1)

    # -- rebuild -------------------------------------------------------------------------------------
    def rebuild(self, services: Iterable[dict[str, Any]]) -> None:
        ips: dict[str, list[str]] = {f: [] for f in self.ip_allocs}
        ports: list[int] = []
        for svc in services:
            spec = svc.get("spec") or {}
            for ip in service_cluster_ips(spec):
                if ip and ip != "None":
                    fam = _family(ip)
                    if fam in ips:
                        ips[fam].append(ip)
            for p in spec.get("ports") or []:
                if p.get("nodePort"):
                    ports.append(int(p["nodePort"]))
            if spec.get("healthCheckNodePort"):
                ports.append(int(spec["healthCheckNodePort"]))
        for fam, alloc in self.ip_allocs.items():
            alloc.mark_allocated(ips[fam])
        self.ports.mark_allocated(ports)

    def kubernetes_ip(self) -> str:
        return self.ip_allocs[self.primary_family].first()

    def dns_ip(self) -> str:
        return self.ip_allocs[self.primary_family].index(wk.KUBE_DNS_INDEX)

    # -- hooks ---------------------------------------------------------------------------------------
    async def before_create(self, info: ResourceInfo, svc: dict[str, Any], old: dict[str, Any] | None
                            ) -> Callable[[], None] | None:
        undo: list[Callable[[], None]] = []
        try:
            self._assign_ips(svc, None, undo)
            self._assign_ports(svc, None, undo)
        except errors.ApiStatusError:
            _run(undo)
            raise
        return lambda: _run(undo)

    async def before_update(self, info: ResourceInfo, svc: dict[str, Any], old: dict[str, Any] | None
                            ) -> Callable[[], None] | None:
        assert old is not None
        undo: list[Callable[[], None]] = []
        after: list[Callable[[], None]] = []  # releases happen only if the write succeeds: see commit
        try:
            self._assign_ips(svc, old, undo, after)
            self._assign_ports(svc, old, undo, after)
        except errors.ApiStatusError:
            _run(undo)
            raise
        # Releases of what the old object held are applied now; undo re-takes them.
        for fn in after:
            fn()
        return lambda: _run(undo)

    def after_delete(self, info: ResourceInfo, svc: dict[str, Any]) -> None:
        spec = svc.get("spec") or {}
        for ip in service_cluster_ips(spec):
            self._release_ip(ip)
        for p in spec.get("ports") or []:
            if p.get("nodePort"):
                self.ports.release(int(p["nodePort"]))
        if spec.get("healthCheckNodePort"):
            self.ports.release(int(spec["healthCheckNodePort"]))

    # -- internals -----------------------------------------------------------------------------------
    def _release_ip(self, ip: str) -> None:
        if ip and ip != "None":
            alloc = self.ip_allocs.get(_family(ip))
            if alloc is not None:
                alloc.release(ip)

    def _invalid(self, svc: dict[str, Any], errs: list[FieldError]) -> errors.ApiStatusError:
        return errors.invalid_object("Service", "", meta_of(svc).get("name", ""), errs)

    def _families_wanted(self, spec: dict[str, Any]) -> list[str]:
        fams = list(spec.get("ipFamilies") or [])
        policy = spec.get("ipFamilyPolicy") or "SingleStack"
        ips = [ip for ip in service_cluster_ips(spec) if ip and ip != "None"]
        if not fams:
            fams = [_family(ip) for ip in ips] or [self.primary_family]
        if policy in ("PreferDualStack", "RequireDualStack") and len(fams) == 1:
            other = "IPv6" if fams[0] == "IPv4" else "IPv4"
            if other in self.ip_allocs:
                fams.append(other)
        return fams

    def _assign_ips(self, svc: dict[str, Any], old: dict[str, Any] | None, undo: list[Callable[[], None]],
                    after: list[Callable[[], None]] | None = None) -> None:
        spec = svc.setdefault("spec", {})
        stype = spec.get("type", "ClusterIP")
        old_spec = (old or {}).get("spec") or {}
        old_ips = [ip for ip in service_cluster_ips(old_spec) if ip and ip != "None"]
        if stype == "ExternalName":
            spec.pop("clusterIP", None)
            spec.pop("clusterIPs", None)
            spec.pop("ipFamilies", None)
            spec.pop("ipFamilyPolicy", None)
            for ip in old_ips:
                if after is not None:
                    after.append(lambda ip=ip: self._release_ip(ip))
                    undo.append(lambda ip=ip: self._retake(ip))
            return
        if old is not None and old_spec.get("type") != "ExternalName" and old_spec.get("clusterIPs"):
            # IPs are immutable (validation rejects changes); carry them over when the update omits them.
            if not spec.get("clusterIP") and not spec.get("clusterIPs"):
                spec["clusterIP"] = old_spec.get("clusterIP")
                spec["clusterIPs"] = list(old_spec["clusterIPs"])
            if not spec.get("ipFamilies") and old_spec.get("ipFamilies"):
                spec["ipFamilies"] = list(old_spec["ipFamilies"])
            if not spec.get("ipFamilyPolicy") and old_spec.get("ipFamilyPolicy"):
                spec["ipFamilyPolicy"] = old_spec["ipFamilyPolicy"]
            return
        requested = service_cluster_ips(spec)
        if requested and requested[0] == "None":
            spec["clusterIP"] = "None"
            spec["clusterIPs"] = ["None"]
            spec.setdefault("ipFamilies", [self.primary_family])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            return
        fams = self._families_wanted(spec)
        policy = spec.get("ipFamilyPolicy") or ("SingleStack" if len(fams) == 1 else "PreferDualStack")
        if policy == "RequireDualStack" and len(self.ip_allocs) < 2:
            raise self._invalid(svc, [errors.invalid(
                "spec.ipFamilyPolicy", policy,
                "this cluster is not configured for dual-stack services")])
        if policy == "SingleStack":
            fams = fams[:1]
        ips: list[str] = []
        for i, fam in enumerate(fams):
            alloc = self.ip_allocs.get(fam)
            if alloc is None:
                raise self._invalid(svc, [errors.invalid(
                    f"spec.ipFamilies[{i}]", fam, "not configured on this cluster")])
            want = requested[i] if i < len(requested) else ""
            try:
                if want:
                    alloc.allocate(want)
                    ip = want
                else:
                    ip = alloc.allocate_next()
            except ErrAllocated:
                raise self._invalid(svc, [errors.invalid(
                    f"spec.clusterIPs[{i}]", [*requested],
                    "failed to allocate IP " + want + ": provided IP is already allocated")]) from None
            except ErrNotInRange as exc:
                raise self._invalid(svc, [errors.invalid(
                    f"spec.clusterIPs[{i}]", [*requested],
                    f"failed to allocate IP {want}: the provided IP ({want}) is not in the valid range. "
                    f"The range of valid IPs is {exc.valid_range}")]) from None
            except ErrFull:
                raise errors.internal("failed to allocate a serviceIP: range is full") from None
            except (AllocationError, ValueError) as exc:
                raise self._invalid(svc, [errors.invalid(f"spec.clusterIPs[{i}]", want, str(exc))]) from None
            ips.append(ip)
            undo.append(lambda ip=ip, alloc=alloc: alloc.release(ip))
        spec["clusterIP"] = ips[0]
        spec["clusterIPs"] = ips
        spec["ipFamilies"] = [_family(ip) for ip in ips]
        spec["ipFamilyPolicy"] = policy

    def _retake(self, ip: str) -> None:
        alloc = self.ip_allocs.get(_family(ip))
        if alloc is not None:
            try:
                alloc.allocate(ip)
            except AllocationError:
                pass

    def _assign_ports(self, svc: dict[str, Any], old: dict[str, Any] | None, undo: list[Callable[[], None]],
                      after: list[Callable[[], None]] | None = None) -> None:
        spec = svc.setdefault("spec", {})
        old_spec = (old or {}).get("spec") or {}
        old_ports = {int(p["nodePort"]) for p in old_spec.get("ports") or [] if p.get("nodePort")}
        old_by_key = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                      for p in old_spec.get("ports") or [] if p.get("nodePort")}
        keep: set[int] = set()
        if _needs_node_ports(spec):
            for i, p in enumerate(spec.get("ports") or []):
                np_ = p.get("nodePort")
                if not np_:
                    prev = old_by_key.get((p.get("port"), p.get("protocol", "TCP")))
                    if prev and prev not in keep:
                        p["nodePort"] = prev
                        keep.add(prev)
                        continue
                    try:
                        np_ = self.ports.allocate_next()
                    except ErrFull:
                        raise errors.internal("failed to allocate a nodePort: range is full") from None
                    p["nodePort"] = np_
                    undo.append(lambda n=np_: self.ports.release(n))
                    continue
                np_ = int(np_)
                if np_ in old_ports and np_ not in keep:
                    keep.add(np_)
                    continue
                try:
                    self.ports.allocate(np_)
                except ErrAllocated:
                    raise self._invalid(svc, [errors.invalid(
                        f"spec.ports[{i}].nodePort", np_, "provided port is already allocated")]) from None
                except (ErrNotInRange, AllocationError) as exc:
                    raise self._invalid(svc, [errors.invalid(
                        f"spec.ports[{i}].nodePort", np_,
                        f"provided port is not in the valid range. The range of valid ports is "
                        f"{self.ports.range_string()}" if isinstance(exc, ErrNotInRange) else str(exc))]) from None
                keep.add(np_)
                undo.append(lambda n=np_: self.ports.release(n))
        else:
            for p in spec.get("ports") or []:
                if spec.get("type", "ClusterIP") == "ClusterIP" and old is not None and p.get("nodePort") \
                        and int(p["nodePort"]) in old_ports:
                    p.pop("nodePort", None)  # a type change to ClusterIP drops the old node ports
        for n in old_ports - keep:
            if after is not None:
                after.append(lambda n=n: self.ports.release(n))
                undo.append(lambda n=n: _quiet(self.ports.allocate, n))
        old_hc = old_spec.get("healthCheckNodePort")
        if _needs_health_port(spec):
            hc = spec.get("healthCheckNodePort") or old_hc
            if not hc:
                hc = self.ports.allocate_next()
                undo.append(lambda n=hc: self.ports.release(n))
            elif hc != old_hc:
                try:
                    self.ports.allocate(int(hc))
                except AllocationError as exc:
                    raise self._invalid(svc, [errors.invalid("spec.healthCheckNodePort", hc, str(exc))]) from None
                undo.append(lambda n=hc: self.ports.release(int(n)))
            spec["healthCheckNodePort"] = int(hc)
        else:
            spec.pop("healthCheckNodePort", None)
            if old_hc and after is not None:
                after.append(lambda n=old_hc: self.ports.release(int(n)))
                undo.append(lambda n=old_hc: _quiet(self.ports.allocate, int(n)))


def _quiet(fn: Callable[[Any], Any], arg: Any) -> None:
    try:
        fn(arg)
    except AllocationError:
        pass


def _run(fns: list[Callable[[], None]]) -> None:
    for fn in reversed(fns):
        try:
            fn()
        except Exception:
            pass
