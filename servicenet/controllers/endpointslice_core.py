"""EndpointSlice controller core: a Service, its pods and nodes, its slices -> the writes.

Pure: no I/O. :func:`reconcile` returns the creates/updates/deletes that make the set of
slices for one Service match its selected pods, following upstream's reconciler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from servicenet.api.wellknown import (
    ENDPOINTSLICE_CONTROLLER,
    HEADLESS_LABEL,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    TRIGGER_TIME_ANNOTATION,
    ZONE_LABEL,
)

from . import slicepack
from .actions import (
    Action,
    Obj,
    Result,
    find_port,
    is_ipv6,
    is_pod_ready,
    is_service_ip_set,
    is_terminal,
    is_terminating,
    labels_of,
    meta,
    name_of,
    ns_of,
    pod_ips,
    should_set_hostname,
    uid_of,
)

CONTROLLER_NAME = ENDPOINTSLICE_CONTROLLER
RESERVED_LABELS = frozenset({SERVICE_NAME_LABEL, MANAGED_BY_LABEL, HEADLESS_LABEL})
API_VERSION = slicepack.API_VERSION
PLURAL = slicepack.PLURAL


@dataclass(frozen=True, slots=True)
class Config:
    max_endpoints_per_slice: int = 100


def service_wants_slices(svc: Obj) -> bool:
    spec = svc.get("spec") or {}
    return spec.get("type") != "ExternalName" and bool(spec.get("selector"))


def address_types(svc: Obj) -> list[str]:
    """The address types a Service supports (upstream ``getAddressTypesForService``)."""
    spec = svc.get("spec") or {}
    out: list[str] = []
    for fam in spec.get("ipFamilies") or []:
        t = {"IPv4": "IPv4", "IPv6": "IPv6"}.get(fam)
        if t and t not in out:
            out.append(t)
    if out:
        return out
    if is_service_ip_set(svc):
        return ["IPv6" if is_ipv6(spec["clusterIP"]) else "IPv4"]
    return ["IPv4", "IPv6"]


def should_pod_be_in_endpoints(pod: Obj, include_terminating: bool) -> bool:
    if is_terminal(pod) or not pod_ips(pod):
        return False
    return include_terminating or not is_terminating(pod)


def endpoint_ports(svc: Obj, pod: Obj) -> list[Obj]:
    spec = svc.get("spec") or {}
    ports: list[Obj] = []
    if not spec.get("ports") and spec.get("clusterIP") == "None":
        return ports
    for sp in spec.get("ports") or []:
        num = find_port(pod, sp)
        if num is None:
            continue
        p: Obj = {"name": sp.get("name") or "", "port": num, "protocol": sp.get("protocol") or "TCP"}
        if sp.get("appProtocol"):
            p["appProtocol"] = sp["appProtocol"]
        ports.append(p)
    return ports


def pod_to_endpoint(pod: Obj, node: Obj | None, svc: Obj, address_type: str) -> Obj:
    serving = is_pod_ready(pod)
    terminating = is_terminating(pod)
    ready = bool((svc.get("spec") or {}).get("publishNotReadyAddresses")) or (serving and not terminating)
    want6 = address_type == "IPv6"
    ep: Obj = {
        "addresses": [ip for ip in pod_ips(pod) if is_ipv6(ip) == want6],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
    }
    if should_set_hostname(pod, svc):
        ep["hostname"] = pod["spec"]["hostname"]
    ep["targetRef"] = {"kind": "Pod", "namespace": ns_of(pod), "name": name_of(pod), "uid": uid_of(pod)}
    node_name = (pod.get("spec") or {}).get("nodeName")
    if node_name:
        ep["nodeName"] = node_name
    zone = labels_of(node).get(ZONE_LABEL) if node is not None else None
    if zone:
        ep["zone"] = zone
    return ep


def slice_labels(svc: Obj, current: Obj | None = None, managed_by: str = CONTROLLER_NAME) -> dict[str, str]:
    del current  # upstream derives slice labels from the Service alone
    labels = {k: v for k, v in labels_of(svc).items() if k not in RESERVED_LABELS}
    if not is_service_ip_set(svc):
        labels[HEADLESS_LABEL] = ""
    labels[SERVICE_NAME_LABEL] = name_of(svc)
    labels[MANAGED_BY_LABEL] = managed_by
    return labels


def new_slice(svc: Obj, address_type: str, ports: list[Obj]) -> Obj:
    return slicepack.new_slice(svc, "Service", address_type, ports, slice_labels(svc))


def owned_by(sl: Obj, svc: Obj) -> bool:
    return any(ref.get("uid") == uid_of(svc) for ref in meta(sl).get("ownerReferences") or [])


def _is_placeholder_equal(sl: Obj, placeholder: Obj) -> bool:
    return (
        ns_of(sl) == ns_of(placeholder)
        and labels_of(sl) == labels_of(placeholder)
        and sl.get("addressType") == placeholder.get("addressType")
        and not (sl.get("endpoints") or [])
        and not (sl.get("ports") or [])
    )


def reconcile(
    svc: Obj,
    pods: list[Obj],
    nodes: Mapping[str, Obj],
    existing: list[Obj],
    *,
    config: Config = Config(),
    trigger_time: str | None = None,
) -> Result:
    """The writes that make ``existing`` (this controller's slices for ``svc``) match ``pods``."""
    if not service_wants_slices(svc):
        deletes = [_delete(sl) for sl in existing]
        return Result(actions=tuple(deletes))
    types = address_types(svc)
    plan = slicepack.Plan()
    errors: list[str] = []
    by_type: dict[str, list[Obj]] = {}
    for sl in existing:
        if sl.get("addressType") not in types:
            plan.deletes.append(sl)
        else:
            by_type.setdefault(sl["addressType"], []).append(sl)
    for at in types:
        plan.extend(_reconcile_type(svc, pods, nodes, by_type.get(at, []), at, config, errors))
    return _to_result(svc, plan, trigger_time, errors)


def _reconcile_type(
    svc: Obj,
    pods: list[Obj],
    nodes: Mapping[str, Obj],
    existing: list[Obj],
    address_type: str,
    config: Config,
    errors: list[str],
) -> slicepack.Plan:
    plan = slicepack.Plan()
    existing_by_ports: dict[str, list[Obj]] = {}
    for sl in existing:
        if owned_by(sl, svc):
            existing_by_ports.setdefault(slicepack.port_key(sl.get("ports") or []), []).append(sl)
        else:
            plan.deletes.append(sl)

    publish = bool((svc.get("spec") or {}).get("publishNotReadyAddresses"))
    desired: dict[str, dict[slicepack.EndpointKey, Obj]] = {}
    desired_ports: dict[str, list[Obj]] = {}
    for pod in sorted(pods, key=lambda p: (ns_of(p), name_of(p))):
        if not should_pod_be_in_endpoints(pod, True):
            continue
        ports = endpoint_ports(svc, pod)
        pk = slicepack.port_key(ports)
        group = desired.setdefault(pk, {})
        desired_ports.setdefault(pk, ports)
        node_name = (pod.get("spec") or {}).get("nodeName") or ""
        node = nodes.get(node_name)
        if node is None and not publish:
            errors.append(f"skipping Pod {name_of(pod)} for Service {ns_of(svc)}/{name_of(svc)}: Node {node_name} Not Found")
            continue
        ep = pod_to_endpoint(pod, node, svc, address_type)
        if ep["addresses"]:
            group[slicepack.endpoint_key(ep)] = ep

    def labels_for(_: Obj) -> dict[str, str]:
        return slice_labels(svc)

    for pk, group in desired.items():
        ports = desired_ports[pk]
        plan.extend(
            slicepack.pack(
                existing_by_ports.get(pk, []),
                group,
                config.max_endpoints_per_slice,
                lambda ports=ports: new_slice(svc, address_type, ports),  # type: ignore[misc]
                labels_for,
            )
        )
    for pk, slices in existing_by_ports.items():
        if pk not in desired:
            plan.deletes.extend(slices)

    if len(existing) == len(plan.deletes) and not plan.creates:
        placeholder = new_slice(svc, address_type, [])
        if len(plan.deletes) == 1 and _is_placeholder_equal(plan.deletes[0], placeholder):
            plan.deletes = []
        else:
            plan.creates.append(placeholder)
    return plan


def _to_result(svc: Obj, plan: slicepack.Plan, trigger_time: str | None, errors: list[str]) -> Result:
    def can_reuse(old: Obj, new: Obj) -> bool:
        return old.get("addressType") == new.get("addressType") and owned_by(old, svc)

    plan = slicepack.finalize(plan, can_reuse)
    actions: list[Action] = []
    if not meta(svc).get("deletionTimestamp"):
        for sl in plan.creates:
            slicepack.set_annotation(sl, TRIGGER_TIME_ANNOTATION, trigger_time)
            actions.append(slicepack.create_action(ns_of(svc), sl))
    for sl in plan.updates:
        slicepack.set_annotation(sl, TRIGGER_TIME_ANNOTATION, trigger_time)
        actions.append(slicepack.update_action(ns_of(svc), sl))
    actions.extend(_delete(sl) for sl in plan.deletes)
    return Result(actions=tuple(actions), requeue_after=1.0 if errors else None, errors=tuple(errors))


_delete = slicepack.delete_action
