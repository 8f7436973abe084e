"""StatefulSet controller core: a StatefulSet and its pods -> pod creates/deletes + status.

Pods are ``<name>-<ordinal>`` with stable hostname/subdomain. OrderedReady creates one pod at
a time in ordinal order and waits for each to be Running and Ready; scale-down and rolling
updates go from the highest ordinal down, one pod at a time. Parallel creates and deletes
all at once. Revisions are identified by ``<name>-<template hash>`` (no ControllerRevision
objects are written).
"""

from __future__ import annotations

import re
from datetime import datetime

from servicenet.api import wellknown as wk

from .actions import (
    Action,
    EventIntent,
    Obj,
    Result,
    is_pod_available,
    is_pod_ready,
    is_terminating,
    labels_of,
    meta,
    name_of,
    ns_of,
)
from .deployment_core import template_hash
from .replicaset_core import pod_from_template

POD_NAME_LABEL = wk.STATEFULSET_POD_NAME_LABEL
POD_INDEX_LABEL = wk.POD_INDEX_LABEL
REVISION_LABEL = "controller-revision-hash"


def update_revision(sts: Obj) -> str:
    spec = sts.get("spec") or {}
    return f"{name_of(sts)}-{template_hash(spec.get('template') or {}, (sts.get('status') or {}).get('collisionCount'))}"


def ordinal_of(sts: Obj, pod: Obj) -> int | None:
    m = re.fullmatch(re.escape(name_of(sts)) + r"-(\d+)", name_of(pod))
    return int(m.group(1)) if m else None


def new_pod(sts: Obj, ordinal: int, revision: str) -> Obj:
    spec = sts.get("spec") or {}
    pod = pod_from_template(sts, spec.get("template") or {}, "StatefulSet")
    name = f"{name_of(sts)}-{ordinal}"
    md = pod["metadata"]
    del md["generateName"]
    md["name"] = name
    md["labels"].update({POD_NAME_LABEL: name, POD_INDEX_LABEL: str(ordinal), REVISION_LABEL: revision})
    pod["spec"]["hostname"] = name
    if spec.get("serviceName"):
        pod["spec"]["subdomain"] = spec["serviceName"]
    return pod


def _running_ready(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") == "Running" and is_pod_ready(pod) and not is_terminating(pod)


def reconcile(sts: Obj, pods: list[Obj], now: datetime) -> Result:
    """``pods`` are the pods this StatefulSet controls."""
    spec = sts.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    parallel = spec.get("podManagementPolicy") == "Parallel"
    rev = update_revision(sts)
    cur_rev = (sts.get("status") or {}).get("currentRevision") or rev
    by_ord: dict[int, Obj] = {}
    for p in pods:
        o = ordinal_of(sts, p)
        if o is not None:
            by_ord[o] = p
    actions: list[Action] = []
    ns, sname = ns_of(sts), name_of(sts)

    def create(o: int) -> None:
        ev = EventIntent("SuccessfulCreate", f"create Pod {sname}-{o} in StatefulSet {sname} successful")
        actions.append(Action("create", "v1", "pods", ns, f"{sname}-{o}", new_pod(sts, o, rev), event=ev))

    def delete(p: Obj) -> None:
        ev = EventIntent("SuccessfulDelete", f"delete Pod {name_of(p)} in StatefulSet {sname} successful")
        actions.append(Action("delete", "v1", "pods", ns, name_of(p), event=ev))

    if not meta(sts).get("deletionTimestamp"):
        blocked = False
        # failed pods are deleted so they can be recreated
        for o, p in sorted(by_ord.items()):
            if o < replicas and (p.get("status") or {}).get("phase") == "Failed" and not is_terminating(p):
                delete(p)
                blocked = True
        for o in range(replicas):
            if blocked and not parallel:
                break
            p = by_ord.get(o)
            if p is None:
                create(o)
                if not parallel:
                    blocked = True
            elif not _running_ready(p) and not parallel:
                blocked = True
        condemned = sorted((o for o in by_ord if o >= replicas), reverse=True)
        if condemned and not blocked:
            if parallel:
                for o in condemned:
                    if not is_terminating(by_ord[o]):
                        delete(by_ord[o])
            else:
                top = by_ord[condemned[0]]
                others_ok = all(_running_ready(by_ord[o]) for o in by_ord if o != condemned[0] and o < replicas)
                if not is_terminating(top) and others_ok:
                    delete(top)
                blocked = True
        strategy = spec.get("updateStrategy") or {}
        if not blocked and not condemned and strategy.get("type", "RollingUpdate") == "RollingUpdate":
            partition = int((strategy.get("rollingUpdate") or {}).get("partition", 0) or 0)
            all_ok = all(o in by_ord and _running_ready(by_ord[o]) for o in range(replicas))
            if all_ok:
                for o in range(replicas - 1, partition - 1, -1):
                    p = by_ord[o]
                    if labels_of(p).get(REVISION_LABEL) != rev:
                        delete(p)
                        break
    return Result(actions=tuple(actions) + _status(sts, by_ord, rev, cur_rev, now))


def _status(sts: Obj, by_ord: dict[int, Obj], rev: str, cur_rev: str, now: datetime) -> tuple[Action, ...]:
    spec = sts.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    min_ready = int(spec.get("minReadySeconds") or 0)
    live = [p for p in by_ord.values() if not is_terminating(p)]
    updated = sum(1 for p in live if labels_of(p).get(REVISION_LABEL) == rev)
    current = sum(1 for p in live if labels_of(p).get(REVISION_LABEL) == cur_rev)
    if updated == replicas and len(live) == replicas and all(_running_ready(p) for p in live):
        cur_rev, current = rev, updated
    st: Obj = {
        "observedGeneration": meta(sts).get("generation", 0),
        "replicas": len(live),
        "readyReplicas": sum(1 for p in live if is_pod_ready(p)),
        "currentReplicas": current,
        "updatedReplicas": updated,
        "availableReplicas": sum(1 for p in live if is_pod_available(p, min_ready, now)),
        "currentRevision": cur_rev,
        "updateRevision": rev,
        "collisionCount": (sts.get("status") or {}).get("collisionCount", 0),
    }
    old = sts.get("status") or {}
    if all(old.get(k) == v for k, v in st.items()):
        return ()
    return (Action("patch_status", "apps/v1", "statefulsets", ns_of(sts), name_of(sts), {"status": st}),)
