"""DaemonSet controller core: a DaemonSet, its pods, nodes and revisions -> one pod per eligible node.

A node is eligible when it matches the template's ``nodeSelector`` and every NoSchedule/NoExecute
taint is tolerated (with the tolerations upstream adds to daemon pods: not-ready, unreachable,
pressure and unschedulable). Daemon pods are bound directly (``spec.nodeName``) and carry upstream's
``matchFields metadata.name`` node affinity. Each template is recorded as a ControllerRevision
(``<name>-<hash>``, data = the strategic patch ``kubectl rollout undo`` applies). RollingUpdate
replaces old pods while at most ``maxUnavailable`` nodes lack an available pod (maxSurge 0), or
starts the new pod first and removes the old one once the new one is available (maxSurge > 0).
"""

from __future__ import annotations

import copy
import math
from datetime import datetime

from servicenet.api.wire import meta as meta_of

from .actions import (
    Action,
    EventIntent,
    Obj,
    Result,
    controller_ref,
    is_active,
    is_pod_available,
    is_pod_ready,
    labels_of,
    meta,
    name_of,
    ns_of,
    tolerates,
)
from .deployment_core import template_hash, templates_equal
from .replicaset_core import pod_from_template

HASH_LABEL = "controller-revision-hash"
_OMIT_ZERO = frozenset({"observedGeneration", "updatedNumberScheduled", "numberAvailable", "numberUnavailable"})
GENERATION_LABEL = "pod-template-generation"
DAEMON_TOLERATIONS: tuple[Obj, ...] = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
)


def node_eligible(pod_spec: Obj, node: Obj) -> bool:
    labels = labels_of(node)
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    tolerations = list(pod_spec.get("tolerations") or []) + list(DAEMON_TOLERATIONS)
    return all(tolerates(t, tolerations) for t in (node.get("spec") or {}).get("taints") or []
               if t.get("effect") in ("NoSchedule", "NoExecute"))


def current_hash(ds: Obj) -> str:
    spec = ds.get("spec") or {}
    return template_hash(spec.get("template") or {}, (ds.get("status") or {}).get("collisionCount"))


def _rev_template(cr: Obj) -> Obj:
    t = copy.deepcopy((((cr.get("data") or {}).get("spec") or {}).get("template")) or {})
    t.pop("$patch", None)
    return t


def new_revision(ds: Obj, h: str, number: int) -> Obj:
    tmpl = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
    labels = {**(meta_of(tmpl).get("labels") or {}), HASH_LABEL: h}
    return {"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": f"{name_of(ds)}-{h}", "namespace": ns_of(ds), "labels": labels,
                         "annotations": {k: v for k, v in (meta(ds).get("annotations") or {}).items()
                                         if k == "kubernetes.io/change-cause"},
                         "ownerReferences": [controller_ref(ds, "apps/v1", "DaemonSet")]},
            "data": {"spec": {"template": {**tmpl, "$patch": "replace"}}}, "revision": number}


def daemon_pod(ds: Obj, node: str, h: str) -> Obj:
    spec = ds.get("spec") or {}
    pod = pod_from_template(ds, spec.get("template") or {}, "DaemonSet")
    pod["metadata"]["labels"].update({HASH_LABEL: h, GENERATION_LABEL: str(meta(ds).get("generation", 1))})
    ps = pod["spec"]
    ps["nodeName"] = node
    ps["affinity"] = {**(ps.get("affinity") or {}), "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}}
    tols = list(ps.get("tolerations") or [])
    for t in DAEMON_TOLERATIONS:
        if not any(x.get("key") == t["key"] and x.get("effect") == t["effect"] for x in tols):
            tols.append(dict(t))
    ps["tolerations"] = tols
    return pod


def _scaled(v: object, total: int) -> int:
    if isinstance(v, str) and v.endswith("%"):
        return math.ceil(int(v[:-1]) * total / 100)
    return int(v) if isinstance(v, int) else 0


def _revision_actions(ds: Obj, revisions: list[Obj], h: str) -> list[Action]:
    ns, tmpl = ns_of(ds), (ds.get("spec") or {}).get("template") or {}
    top = max((int(r.get("revision") or 0) for r in revisions), default=0)
    same = [r for r in revisions if templates_equal(_rev_template(r), tmpl)]
    out: list[Action] = []
    if not same:
        out.append(Action("create", "apps/v1", "controllerrevisions", ns, "", new_revision(ds, h, top + 1)))
    elif int(same[0].get("revision") or 0) < top:  # a rollback: the old revision becomes the newest
        out.append(Action("patch", "apps/v1", "controllerrevisions", ns, name_of(same[0]), {"revision": top + 1}))
    limit = (ds.get("spec") or {}).get("revisionHistoryLimit")
    limit = 10 if limit is None else int(limit)
    old = sorted((r for r in revisions if r not in same), key=lambda r: int(r.get("revision") or 0))
    for r in old[:max(0, len(old) - limit)]:
        out.append(Action("delete", "apps/v1", "controllerrevisions", ns, name_of(r)))
    return out


def reconcile(ds: Obj, pods: list[Obj], nodes: list[Obj], revisions: list[Obj], now: datetime) -> Result:
    """``pods``/``revisions`` are the ones this DaemonSet controls; ``nodes`` are all nodes."""
    spec = ds.get("spec") or {}
    ns = ns_of(ds)
    pod_spec = (spec.get("template") or {}).get("spec") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    h = current_hash(ds)
    actions: list[Action] = [] if meta(ds).get("deletionTimestamp") else _revision_actions(ds, revisions, h)
    by_node: dict[str, list[Obj]] = {}
    for p in pods:
        if is_active(p):
            by_node.setdefault((p.get("spec") or {}).get("nodeName") or "", []).append(p)
    eligible = sorted(name_of(n) for n in nodes if node_eligible(pod_spec, n))
    eligible_set = set(eligible)

    def delete(p: Obj) -> None:
        actions.append(Action("delete", "v1", "pods", ns, name_of(p),
                              event=EventIntent("SuccessfulDelete", f"Deleted pod: {name_of(p)}")))

    def available(p: Obj) -> bool:
        return is_pod_available(p, min_ready, now)

    if not meta(ds).get("deletionTimestamp"):
        for p in pods:  # failed daemon pods are replaced
            if (p.get("status") or {}).get("phase") == "Failed" and not meta(p).get("deletionTimestamp"):
                delete(p)
        for node, ps in by_node.items():
            if node not in eligible_set:
                for p in ps:
                    delete(p)
        us = spec.get("updateStrategy") or {}
        rolling = (us.get("type") or "RollingUpdate") == "RollingUpdate"
        ru = us.get("rollingUpdate") or {}
        max_unavailable = _scaled(ru.get("maxUnavailable", 1), len(eligible))
        max_surge = _scaled(ru.get("maxSurge", 0), len(eligible))
        unavailable = sum(1 for n in eligible if not any(available(p) for p in by_node.get(n, [])))
        budget = max_unavailable - unavailable
        for node in eligible:
            ps = by_node.get(node, [])
            new = [p for p in ps if labels_of(p).get(HASH_LABEL) == h]
            old = [p for p in ps if labels_of(p).get(HASH_LABEL) != h]
            if not ps:
                actions.append(Action("create", "v1", "pods", ns, "", daemon_pod(ds, node, h),
                                      event=EventIntent("SuccessfulCreate", "Created pod: {name}")))
                continue
            for p in (new or old)[1:] if not (rolling and old and new) else []:
                delete(p)  # more than one pod on the node
            if not rolling or not old:
                continue
            if new:  # surge finished on this node: drop the old pod once the new one serves
                if any(available(p) for p in new):
                    for p in old:
                        delete(p)
                continue
            if not any(available(p) for p in old):
                for p in old:
                    delete(p)  # nothing to lose
            elif max_surge > 0:
                actions.append(Action("create", "v1", "pods", ns, "", daemon_pod(ds, node, h),
                                      event=EventIntent("SuccessfulCreate", "Created pod: {name}")))
                max_surge -= 1
            elif budget > 0:
                for p in old:
                    delete(p)
                budget -= 1
    status = {
        "currentNumberScheduled": sum(1 for n in eligible if by_node.get(n)),
        "numberMisscheduled": sum(1 for n, ps in by_node.items() if ps and n not in eligible_set),
        "desiredNumberScheduled": len(eligible),
        "numberReady": sum(1 for n in eligible if any(is_pod_ready(p) for p in by_node.get(n, []))),
        "observedGeneration": meta(ds).get("generation", 1),
        "updatedNumberScheduled": sum(1 for n in eligible
                                      if any(labels_of(p).get(HASH_LABEL) == h for p in by_node.get(n, []))),
        "numberAvailable": sum(1 for n in eligible if any(available(p) for p in by_node.get(n, []))),
    }
    status["numberUnavailable"] = status["desiredNumberScheduled"] - status["numberAvailable"]
    old_status = ds.get("status") or {}
    if any(old_status.get(k, 0) != v for k, v in status.items()):
        # upstream's JSON omits these when zero: a merge patch removes them (null) instead of writing 0
        patch = {k: (None if v == 0 and k in _OMIT_ZERO else v) for k, v in status.items()}
        actions.append(Action("patch_status", "apps/v1", "daemonsets", ns, name_of(ds), {"status": patch}))
    requeue = float(min_ready) if min_ready and status["numberReady"] > status["numberAvailable"] else None
    return Result(actions=tuple(actions), requeue_after=requeue)
