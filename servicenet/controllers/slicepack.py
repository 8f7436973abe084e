"""Packing endpoints into EndpointSlices, shared by the EndpointSlice and mirroring controllers.

The algorithm follows upstream's ``reconcileByPortMapping`` so that a change to one endpoint
rewrites only the slice that holds it:

1. walk the existing slices; keep the endpoints still desired (taking their new version),
   drop the rest. A slice that changed is marked for update, a slice left empty for delete,
   an untouched slice stays "unchanged";
2. top up the slices already marked for update, fullest first;
3. what is left goes, if it fits, into the unchanged slice that ends up closest to full,
   otherwise into new slices.

:func:`finalize` then turns a (create, delete) pair into an update of the deleted slice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from servicenet.api.apply import copy_json

from .actions import Action, Obj, controller_ref, meta, name_of, ns_of

API_VERSION = "discovery.k8s.io/v1"
PLURAL = "endpointslices"
EndpointKey = tuple[tuple[str, ...], str, str, str]
PortKey = str


def endpoint_key(ep: Obj) -> EndpointKey:
    """Identity of an endpoint: its addresses, hostname and the object it points to."""
    ref = ep.get("targetRef") or {}
    return (
        tuple(sorted(ep.get("addresses") or [])),
        ep.get("hostname") or "",
        ref.get("namespace", ""),
        ref.get("name", ""),
    )


def normalize_endpoint(ep: Obj) -> Obj:
    """An endpoint with the fields that matter for equality only (no targetRef resourceVersion)."""
    out: Obj = {"addresses": sorted(ep.get("addresses") or [])}
    cond = ep.get("conditions") or {}
    out["conditions"] = {k: cond[k] for k in ("ready", "serving", "terminating") if cond.get(k) is not None}
    for k in ("hostname", "nodeName", "zone", "hints", "deprecatedTopology"):
        if ep.get(k):
            out[k] = ep[k]
    ref = ep.get("targetRef")
    if ref:
        out["targetRef"] = {k: v for k, v in ref.items() if k != "resourceVersion" and v}
    return out


def normalize_port(p: Obj) -> Obj:
    out: Obj = {"name": p.get("name") or "", "port": p.get("port"), "protocol": p.get("protocol") or "TCP"}
    if p.get("appProtocol"):
        out["appProtocol"] = p["appProtocol"]
    return out


def port_key(ports: list[Obj]) -> PortKey:
    return json.dumps(sorted(json.dumps(normalize_port(p), sort_keys=True) for p in ports or []))


@dataclass(slots=True)
class Plan:
    creates: list[Obj] = field(default_factory=list)
    updates: list[Obj] = field(default_factory=list)
    deletes: list[Obj] = field(default_factory=list)
    added: int = 0
    removed: int = 0

    def extend(self, other: Plan) -> None:
        self.creates += other.creates
        self.updates += other.updates
        self.deletes += other.deletes
        self.added += other.added
        self.removed += other.removed


def pack(
    existing: list[Obj],
    desired: dict[EndpointKey, Obj],
    max_per_slice: int,
    new_slice: Callable[[], Obj],
    desired_labels: Callable[[Obj], dict[str, str]],
    extra_changed: Callable[[Obj], bool] | None = None,
) -> Plan:
    """Decide creates/updates/deletes for the slices of one (addressType, ports) group.

    ``desired`` maps endpoint identity to the desired endpoint dict; it is consumed.
    ``extra_changed(slice)`` lets a caller force an update of a slice (e.g. annotations).
    """
    plan = Plan()
    desired = dict(desired)
    by_name: dict[str, Obj] = {}
    unchanged: list[str] = []
    to_update: list[str] = []
    to_delete: list[str] = []

    for sl in existing:
        sname = meta(sl)["name"]
        by_name[sname] = sl
        old_eps = sl.get("endpoints") or []
        kept: list[Obj] = []
        ep_changed = False
        for ep in old_eps:
            k = endpoint_key(ep)
            want = desired.pop(k, None)
            if want is not None:
                kept.append(want)
                if not ep_changed and normalize_endpoint(want) != normalize_endpoint(ep):
                    ep_changed = True
        labels = desired_labels(sl)
        labels_changed = labels != (meta(sl).get("labels") or {})
        if ep_changed or len(kept) != len(old_eps):
            plan.removed += max(0, len(old_eps) - len(kept))
            if not kept:
                to_delete.append(sname)
                continue
            new = _copy_slice(sl)
            new["endpoints"] = kept
            new["metadata"]["labels"] = labels
            by_name[sname] = new
            to_update.append(sname)
        elif labels_changed or (extra_changed is not None and extra_changed(sl)):
            new = _copy_slice(sl)
            new["metadata"]["labels"] = labels
            by_name[sname] = new
            to_update.append(sname)
        else:
            unchanged.append(sname)

    plan.added = len(desired)

    # 2. top up slices that are being written anyway, fullest first
    if desired and to_update:
        for sname in sorted(to_update, key=lambda n: -len(by_name[n]["endpoints"])):
            eps = by_name[sname]["endpoints"]
            while desired and len(eps) < max_per_slice:
                eps.append(desired.pop(next(iter(desired))))

    # 3. fit the rest into one unchanged slice if possible, else create new slices
    while desired:
        target: Obj | None = None
        if len(desired) < max_per_slice and unchanged:
            target = _slice_to_fill([by_name[n] for n in unchanged], len(desired), max_per_slice)
        if target is None:
            target = new_slice()
        else:
            target = _copy_slice(target)
            by_name[meta(target)["name"]] = target
        eps = target.setdefault("endpoints", [])
        while desired and len(eps) < max_per_slice:
            eps.append(desired.pop(next(iter(desired))))
        tname = meta(target).get("name")
        if tname:
            to_update.append(tname)
            unchanged.remove(tname)
        else:
            plan.creates.append(target)

    plan.updates = [by_name[n] for n in to_update]
    plan.deletes = [by_name[n] for n in to_delete]
    return plan


def _slice_to_fill(slices: list[Obj], n: int, max_per_slice: int) -> Obj | None:
    best: Obj | None = None
    best_diff = max_per_slice
    for sl in slices:
        diff = max_per_slice - (n + len(sl.get("endpoints") or []))
        if 0 <= diff < best_diff:
            best, best_diff = sl, diff
            if diff == 0:
                break
    return best


def _copy_slice(sl: Obj) -> Obj:
    new = dict(sl)
    new["metadata"] = copy_json(meta(sl))  # an informer's object: JSON-exact, far cheaper than deepcopy
    new["endpoints"] = list(sl.get("endpoints") or [])
    return new


def finalize(plan: Plan, can_reuse: Callable[[Obj, Obj], bool]) -> Plan:
    """Turn create+delete pairs into updates of the slice that would be deleted."""
    creates = list(plan.creates)
    updates = list(plan.updates)
    deletes: list[Obj] = []
    for old in plan.deletes:
        if creates and can_reuse(old, creates[-1]):
            new = creates.pop()
            new_meta = dict(meta(new))
            new_meta["name"] = meta(old)["name"]
            if meta(old).get("resourceVersion"):
                new_meta["resourceVersion"] = meta(old)["resourceVersion"]
            if meta(old).get("uid"):
                new_meta["uid"] = meta(old)["uid"]
            updates.append({**new, "metadata": new_meta})
        else:
            deletes.append(old)
    return Plan(creates, updates, deletes, plan.added, plan.removed)


def set_annotation(sl: Obj, key: str, value: str | None) -> None:
    ann: dict[str, Any] = dict(sl["metadata"].get("annotations") or {})
    if value:
        ann[key] = value
    else:
        ann.pop(key, None)
    sl["metadata"]["annotations"] = ann


# -- the slice and the writes both controllers build ----------------------------------------------

def new_slice(owner: Obj, owner_kind: str, address_type: str, ports: list[Obj], labels: dict[str, str],
              annotations: dict[str, str] | None = None) -> Obj:
    """An empty EndpointSlice named after and controlled by ``owner`` (a Service or Endpoints)."""
    md: Obj = {"generateName": f"{name_of(owner)}-", "namespace": ns_of(owner), "labels": labels}
    if annotations is not None:
        md["annotations"] = annotations
    md["ownerReferences"] = [controller_ref(owner, "v1", owner_kind)]
    return {"apiVersion": API_VERSION, "kind": "EndpointSlice", "metadata": md,
            "addressType": address_type, "ports": [dict(p) for p in ports], "endpoints": []}


def create_action(namespace: str, sl: Obj) -> Action:
    return Action("create", API_VERSION, PLURAL, namespace, "", sl)


def update_action(namespace: str, sl: Obj) -> Action:
    return Action("update", API_VERSION, PLURAL, namespace, meta(sl)["name"], sl)


def delete_action(sl: Obj) -> Action:
    return Action("delete", API_VERSION, PLURAL, ns_of(sl), name_of(sl))
