"""ReplicationController controller core: the ReplicaSet logic for the core/v1 kind.

An RC differs from a ReplicaSet only in its selector (a plain label map) and its owner
references (``v1``/``ReplicationController``); pods are counted, created and deleted alike.
"""

from __future__ import annotations

from datetime import datetime

from servicenet.api.selectors import equality_selector_matches
from servicenet.api.wire import meta as meta_of

from .actions import Action, EventIntent, Obj, Result, is_active, meta, name_of, ns_of
from .replicaset_core import BURST, _deletion_rank, compute_status, pod_from_template, status_changed


def reconcile(rc: Obj, pods: list[Obj], now: datetime) -> Result:
    """``pods`` are the pods this RC controls (controller ownerRef), in any state."""
    spec = rc.get("spec") or {}
    actions: list[Action] = []
    active = [p for p in pods if is_active(p)]
    if not meta(rc).get("deletionTimestamp"):
        diff = len(active) - int(spec.get("replicas", 1))
        tmpl = spec.get("template") or {}
        if diff < 0 and equality_selector_matches(spec.get("selector"), meta_of(tmpl).get("labels") or {}):
            for _ in range(min(-diff, BURST)):
                body = pod_from_template(rc, tmpl, "ReplicationController", "v1")
                actions.append(Action("create", "v1", "pods", ns_of(rc), "", body,
                                      event=EventIntent("SuccessfulCreate", "Created pod: {name}")))
        elif diff > 0:
            for p in sorted(active, key=_deletion_rank)[:diff]:
                actions.append(Action("delete", "v1", "pods", ns_of(p), name_of(p),
                                      event=EventIntent("SuccessfulDelete", f"Deleted pod: {name_of(p)}")))
    status = compute_status(rc, pods, now)
    requeue = None
    min_ready = int(spec.get("minReadySeconds") or 0)
    if min_ready and status["readyReplicas"] > status["availableReplicas"]:
        requeue = float(min_ready)
    if status_changed(rc.get("status") or {}, status):
        actions.append(Action("patch_status", "v1", "replicationcontrollers", ns_of(rc), name_of(rc),
                              {"status": status}))
    return Result(actions=tuple(actions), requeue_after=requeue)
