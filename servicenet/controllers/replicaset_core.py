"""ReplicaSet controller core: a ReplicaSet and the pods it controls -> pod creates/deletes + status."""

from __future__ import annotations

import copy
from datetime import datetime

from servicenet.api.selectors import selector_matches
from servicenet.api.views import meta as meta_of

from .actions import (
    Action,
    EventIntent,
    Obj,
    Result,
    controller_ref,
    get_condition,
    is_active,
    is_pod_available,
    is_pod_ready,
    labels_of,
    meta,
    name_of,
    ns_of,
)

BURST = 500  # upstream creates at most this many pods per sync (slow-start batches)


def pod_from_template(owner: Obj, template: Obj, owner_kind: str, api_version: str = "apps/v1") -> Obj:
    tmeta = meta_of(template)
    md: Obj = {
        "generateName": f"{name_of(owner)[:58]}-",
        "namespace": ns_of(owner),
        "labels": dict(tmeta.get("labels") or {}),
        "ownerReferences": [controller_ref(owner, api_version, owner_kind)],
    }
    if tmeta.get("annotations"):
        md["annotations"] = dict(tmeta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": copy.deepcopy(template.get("spec") or {})}


def _deletion_rank(pod: Obj) -> tuple[int, int, int, str]:
    """Sort key: pods earlier in this order are deleted first (upstream ``ActivePods`` order)."""
    spec = pod.get("spec") or {}
    phase = (pod.get("status") or {}).get("phase", "Pending")
    phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}.get(phase, 0)
    ready_cond = get_condition(pod, "Ready") or {}
    # newer pods (later transition/creation) go first: invert by sorting descending timestamp
    ts = ready_cond.get("lastTransitionTime") or meta(pod).get("creationTimestamp") or ""
    return (1 if spec.get("nodeName") else 0, phase_rank, 1 if is_pod_ready(pod) else 0, _invert(ts))


def _invert(ts: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in ts)


def compute_status(rs: Obj, pods: list[Obj], now: datetime) -> Obj:
    spec = rs.get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    active = [p for p in pods if is_active(p)]
    tlabels = meta_of(spec.get("template")).get("labels") or {}
    status: Obj = {
        "replicas": len(active),
        "fullyLabeledReplicas": sum(1 for p in active if all(labels_of(p).get(k) == v for k, v in tlabels.items())),
        "readyReplicas": sum(1 for p in active if is_pod_ready(p)),
        "availableReplicas": sum(1 for p in active if is_pod_available(p, min_ready, now)),
        "observedGeneration": meta(rs).get("generation", 0),
    }
    return status


def status_changed(old: Obj, new: Obj) -> bool:
    return any((old or {}).get(k, 0) != v for k, v in new.items())


def reconcile(rs: Obj, pods: list[Obj], now: datetime) -> Result:
    """``pods`` are the pods this ReplicaSet controls (controller ownerRef), in any state."""
    spec = rs.get("spec") or {}
    actions: list[Action] = []
    requeue: float | None = None
    active = [p for p in pods if is_active(p)]
    if not meta(rs).get("deletionTimestamp"):
        want = int(spec.get("replicas", 1))
        diff = len(active) - want
        if diff < 0:
            tmpl = spec.get("template") or {}
            if selector_matches(spec.get("selector"), meta_of(tmpl).get("labels") or {}):
                for _ in range(min(-diff, BURST)):
                    body = pod_from_template(rs, tmpl, "ReplicaSet")
                    ev = EventIntent("SuccessfulCreate", "Created pod: {name}")
                    actions.append(Action("create", "v1", "pods", ns_of(rs), "", body, event=ev))
        elif diff > 0:
            for p in sorted(active, key=_deletion_rank)[:diff]:
                ev = EventIntent("SuccessfulDelete", f"Deleted pod: {name_of(p)}")
                actions.append(Action("delete", "v1", "pods", ns_of(p), name_of(p), event=ev))
    status = compute_status(rs, pods, now)
    min_ready = int(spec.get("minReadySeconds") or 0)
    if min_ready and status["readyReplicas"] > status["availableReplicas"]:
        requeue = float(min_ready)
    if status_changed(rs.get("status") or {}, status):
        actions.append(Action("patch_status", "apps/v1", "replicasets", ns_of(rs), name_of(rs), {"status": status}))
    return Result(actions=tuple(actions), requeue_after=requeue)
