"""EndpointSlice mirroring core: user-written Endpoints of selector-less Services -> slices.

Slices are labelled ``managed-by: endpointslicemirroring-controller.k8s.io`` and owned by the
Endpoints object. They disappear when the Service gains a selector, the Service goes away,
the Endpoints go away or opt out with ``endpointslice.kubernetes.io/skip-mirror: "true"``.
"""

from __future__ import annotations

from servicenet.api.wellknown import (
    ENDPOINTSLICE_MIRRORING_CONTROLLER,
    LAST_APPLIED_ANNOTATION,
    MANAGED_BY_LABEL,
    SERVICE_NAME_LABEL,
    SKIP_MIRROR_LABEL,
    TRIGGER_TIME_ANNOTATION,
)

from . import slicepack
from .actions import (
    Action,
    Obj,
    Result,
    annotations_of,
    controller_ref,
    is_ipv6,
    labels_of,
    name_of,
    ns_of,
)

CONTROLLER_NAME = ENDPOINTSLICE_MIRRORING_CONTROLLER
LEADER_ANNOTATION = "control-plane.alpha.kubernetes.io/leader"
LAST_APPLIED = LAST_APPLIED_ANNOTATION
MAX_ENDPOINTS_PER_SUBSET = 1000
MAX_ENDPOINTS_PER_SLICE = 1000


def should_mirror(endpoints: Obj | None, svc: Obj | None) -> bool:
    if endpoints is None or svc is None:
        return False
    spec = svc.get("spec") or {}
    if spec.get("selector") or spec.get("type") == "ExternalName":
        return False
    if labels_of(endpoints).get(SKIP_MIRROR_LABEL) == "true":
        return False
    return LEADER_ANNOTATION not in annotations_of(endpoints)


def slice_labels(endpoints: Obj) -> dict[str, str]:
    labels = {k: v for k, v in labels_of(endpoints).items() if k not in (SERVICE_NAME_LABEL, MANAGED_BY_LABEL)}
    labels[SERVICE_NAME_LABEL] = name_of(endpoints)
    labels[MANAGED_BY_LABEL] = CONTROLLER_NAME
    return labels


def slice_annotations(endpoints: Obj) -> dict[str, str]:
    return {k: v for k, v in annotations_of(endpoints).items() if k not in (TRIGGER_TIME_ANNOTATION, LAST_APPLIED)}


def _port(p: Obj) -> Obj:
    out: Obj = {"name": p.get("name") or "", "port": p.get("port"), "protocol": p.get("protocol") or "TCP"}
    if p.get("appProtocol"):
        out["appProtocol"] = p["appProtocol"]
    return out


def _endpoint(addr: Obj, ready: bool) -> Obj:
    ep: Obj = {"addresses": [addr["ip"]], "conditions": {"ready": ready}}
    if addr.get("hostname"):
        ep["hostname"] = addr["hostname"]
    if addr.get("targetRef"):
        ep["targetRef"] = addr["targetRef"]
    if addr.get("nodeName"):
        ep["nodeName"] = addr["nodeName"]
    return ep


def desired_groups(endpoints: Obj) -> dict[tuple[str, str], tuple[list[Obj], dict[slicepack.EndpointKey, Obj]]]:
    """(addressType, port key) -> (ports, endpoints by identity)."""
    groups: dict[tuple[str, str], tuple[list[Obj], dict[slicepack.EndpointKey, Obj]]] = {}
    for subset in endpoints.get("subsets") or []:
        ports = [_port(p) for p in subset.get("ports") or []]
        pk = slicepack.port_key(ports)
        addrs = [(a, True) for a in subset.get("addresses") or []]
        addrs += [(a, False) for a in subset.get("notReadyAddresses") or []]
        for addr, ready in addrs[:MAX_ENDPOINTS_PER_SUBSET]:
            if not addr.get("ip"):
                continue
            at = "IPv6" if is_ipv6(addr["ip"]) else "IPv4"
            _, eps = groups.setdefault((at, pk), (ports, {}))
            ep = _endpoint(addr, ready)
            eps.setdefault(slicepack.endpoint_key(ep), ep)
    return groups


def new_slice(endpoints: Obj, address_type: str, ports: list[Obj]) -> Obj:
    return slicepack.new_slice(endpoints, "Endpoints", address_type, ports, slice_labels(endpoints),
                               slice_annotations(endpoints))


def reconcile(
    endpoints: Obj | None,
    svc: Obj | None,
    existing: list[Obj],
    *,
    max_endpoints_per_slice: int = MAX_ENDPOINTS_PER_SLICE,
) -> Result:
    """The writes that make the mirrored slices (``existing``) match ``endpoints``."""
    if endpoints is None or not should_mirror(endpoints, svc):
        return Result(actions=tuple(_delete(sl) for sl in existing))
    plan = slicepack.Plan()
    by_group: dict[tuple[str, str], list[Obj]] = {}
    for sl in existing:
        key = (sl.get("addressType", ""), slicepack.port_key(sl.get("ports") or []))
        by_group.setdefault(key, []).append(sl)
    want_ann = slice_annotations(endpoints)

    def labels_for(_: Obj) -> dict[str, str]:
        return slice_labels(endpoints)  # type: ignore[arg-type]

    def ann_changed(sl: Obj) -> bool:
        return annotations_of(sl) != want_ann

    groups = desired_groups(endpoints)
    for (at, pk), (ports, eps) in groups.items():
        plan.extend(
            slicepack.pack(
                by_group.get((at, pk), []),
                eps,
                max_endpoints_per_slice,
                lambda at=at, ports=ports: new_slice(endpoints, at, ports),  # type: ignore[misc,arg-type]
                labels_for,
                ann_changed,
            )
        )
    for key, slices in by_group.items():
        if key not in groups:
            plan.deletes.extend(slices)
    plan = slicepack.finalize(plan, lambda old, new: old.get("addressType") == new.get("addressType"))
    actions: list[Action] = []
    for sl in plan.creates:
        actions.append(slicepack.create_action(ns_of(endpoints), sl))
    for sl in plan.updates:
        sl["metadata"]["annotations"] = dict(want_ann)
        sl["metadata"]["ownerReferences"] = [controller_ref(endpoints, "v1", "Endpoints")]
        actions.append(slicepack.update_action(ns_of(endpoints), sl))
    actions.extend(_delete(sl) for sl in plan.deletes)
    return Result(actions=tuple(actions))


_delete = slicepack.delete_action
