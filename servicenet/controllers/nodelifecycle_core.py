"""Node lifecycle core: lost heartbeats -> Ready=Unknown, node taints, pods not ready, taint eviction.

Liveness comes from two signals the node agent writes: its Lease in ``kube-node-lease``
(``spec.renewTime``) and its Ready condition's ``lastHeartbeatTime``. As upstream, the
controller judges them by its *own* clock: :func:`observe` records when it last saw either
change (``Health.probe``), so clock skew between machines does not matter and a restarted
controller grants every node a full grace period.

When ``now - probe`` exceeds the grace period, every node condition turns ``Unknown``
(reason ``NodeStatusUnknown``). The node then carries ``node.kubernetes.io/unreachable``
taints (``NoSchedule`` and ``NoExecute``); a kubelet-reported ``Ready=False`` gives the
``node.kubernetes.io/not-ready`` pair instead; Ready=True removes both. Pods on a node that
is not ready get their Ready condition set ``False`` (their endpoints leave the ready set at
once). The taint-eviction part deletes pods that do not tolerate a ``NoExecute`` taint, or
once their ``tolerationSeconds`` (counted from the taint's ``timeAdded``) have passed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .actions import (
    Action,
    Event,
    Obj,
    Result,
    fmt_time,
    get_condition,
    is_terminal,
    meta,
    name_of,
    ns_of,
    parse_time,
    tolerates,
)

UNKNOWN_MESSAGE = "Kubelet stopped posting node status."
UNREACHABLE = "node.kubernetes.io/unreachable"
NOT_READY = "node.kubernetes.io/not-ready"
LEASE_NAMESPACE = "kube-node-lease"
_OURS = (UNREACHABLE, NOT_READY)


@dataclass(frozen=True, slots=True)
class Health:
    """What the controller last saw of a node's heartbeats, and when (its own clock)."""

    ready_heartbeat: str | None
    lease_renew: str | None
    probe: datetime


def _ready_heartbeat(node: Obj) -> str | None:
    return (get_condition(node, "Ready") or {}).get("lastHeartbeatTime")


def _renew_time(lease: Obj | None) -> str | None:
    return ((lease or {}).get("spec") or {}).get("renewTime")


def observe(prev: Health | None, node: Obj, lease: Obj | None, now: datetime) -> Health:
    """Fold the node's current heartbeat fields into ``prev``; ``probe`` moves to ``now`` on change."""
    hb, renew = _ready_heartbeat(node), _renew_time(lease)
    if prev is None:
        return Health(hb, renew, now)
    if hb != prev.ready_heartbeat or renew != prev.lease_renew:
        return Health(hb, renew, now)
    return prev


def last_heartbeat(node: Obj) -> datetime | None:
    """Without observations: the Ready heartbeat's own timestamp, else the node's creation."""
    t = parse_time(_ready_heartbeat(node))
    return t or parse_time(meta(node).get("creationTimestamp"))


def is_stale(node: Obj, now: datetime, grace: float, health: Health | None = None) -> bool:
    t = health.probe if health is not None else last_heartbeat(node)
    return t is not None and (now - t).total_seconds() > grace


def ready_state(node: Obj, stale: bool) -> str:
    """``True``/``False``/``Unknown`` as the controller sees the node ("" before any report)."""
    if stale:
        return "Unknown"
    c = get_condition(node, "Ready")
    return str(c.get("status") or "") if c else ""


def desired_taints(node: Obj, state: str, now: datetime) -> list[Obj] | None:
    """The node's taint list after this pass, or None when it does not change."""
    cur = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    key = {"Unknown": UNREACHABLE, "False": NOT_READY}.get(state)
    keep = [t for t in cur if t.get("key") not in _OURS or t.get("key") == key]
    if key is not None:
        have = {t.get("effect") for t in keep if t.get("key") == key}
        if "NoSchedule" not in have:
            keep.append({"key": key, "effect": "NoSchedule"})
        if "NoExecute" not in have:
            keep.append({"key": key, "effect": "NoExecute", "timeAdded": fmt_time(now)})
    return None if keep == cur else keep


def eviction_delay(pod: Obj, taints: list[Obj], now: datetime) -> float | None:
    """Seconds until the pod must go because of ``NoExecute`` taints: 0 = now, None = never."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    delay: float | None = None
    for taint in taints:
        if taint.get("effect") != "NoExecute":
            continue
        used = [t for t in tolerations if tolerates(taint, [t])]
        if not used:
            return 0.0
        bounded = [t["tolerationSeconds"] for t in used if isinstance(t.get("tolerationSeconds"), int)]
        if len(bounded) < len(used):
            continue  # one toleration without a bound: this taint is tolerated forever
        added = parse_time(taint.get("timeAdded")) or now
        left = max(0.0, min(bounded) - (now - added).total_seconds())
        delay = left if delay is None else min(delay, left)
    return delay


def reconcile_node(node: Obj, pods_on_node: list[Obj], now: datetime, grace: float,
                   health: Health | None = None, *, evict: bool = True) -> Result:
    """Writes for one node: conditions, taints, pod readiness and evictions (idempotent)."""
    stale = is_stale(node, now, grace, health)
    actions: list[Action] = []
    events: list[Event] = []
    requeue: list[float] = []
    if stale:
        _mark_unknown(node, now, actions, events)
    else:
        t = health.probe if health is not None else last_heartbeat(node)
        if t is not None:
            requeue.append(max(0.1, grace - (now - t).total_seconds() + 0.1))
    state = ready_state(node, stale)
    taints = desired_taints(node, state, now)
    if taints is not None:
        actions.append(Action("patch", "v1", "nodes", "", name_of(node), {"spec": {"taints": taints}}))
    if state in ("Unknown", "False"):
        _pods_not_ready(pods_on_node, now, actions, events)
    effective = taints if taints is not None else (node.get("spec") or {}).get("taints") or []
    if evict:
        for pod in pods_on_node:
            if meta(pod).get("deletionTimestamp") or is_terminal(pod):
                continue
            d = eviction_delay(pod, effective, now)
            if d is None:
                continue
            if d > 0:
                requeue.append(d + 0.05)
                continue
            actions.append(Action("delete", "v1", "pods", ns_of(pod), name_of(pod)))
            events.append(Event(pod, "TaintManagerEviction", f"Marking for deletion Pod {ns_of(pod)}/{name_of(pod)}"))
    return Result(actions=tuple(actions), events=tuple(events), requeue_after=min(requeue) if requeue else None)


def _mark_unknown(node: Obj, now: datetime, actions: list[Action], events: list[Event]) -> None:
    ready = get_condition(node, "Ready")
    if ready is not None and ready.get("status") == "Unknown":
        return
    ts = fmt_time(now)
    conds = []
    for c in (node.get("status") or {}).get("conditions") or [{"type": "Ready"}]:
        c = dict(c)
        if c.get("status") != "Unknown":
            c["lastTransitionTime"] = ts
        c.update(status="Unknown", reason="NodeStatusUnknown", message=UNKNOWN_MESSAGE)
        c.setdefault("lastHeartbeatTime", c.get("lastHeartbeatTime"))
        conds.append(c)
    actions.append(Action("patch_status", "v1", "nodes", "", name_of(node), {"status": {"conditions": conds}}))
    events.append(Event(node, "NodeNotReady", f"Node {name_of(node)} status is now: NodeNotReady"))


def _pods_not_ready(pods: list[Obj], now: datetime, actions: list[Action], events: list[Event]) -> None:
    for pod in pods:
        c = get_condition(pod, "Ready")
        if c is None or c.get("status") == "False":
            continue
        conds = []
        for pc in (pod.get("status") or {}).get("conditions") or []:
            pc = dict(pc)
            if pc.get("type") == "Ready":
                pc.update(status="False", lastTransitionTime=fmt_time(now))
            conds.append(pc)
        actions.append(Action("patch_status", "v1", "pods", ns_of(pod), name_of(pod), {"status": {"conditions": conds}}))
        events.append(Event(pod, "NodeNotReady", "Node is not ready", "Warning"))
