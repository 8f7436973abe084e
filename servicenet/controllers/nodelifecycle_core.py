"""Node lifecycle core: stale node heartbeats -> Ready=Unknown and the node's pods not ready.

A node whose Ready condition ``lastHeartbeatTime`` (or, if it never reported, its creation
time) is older than the grace period gets every condition set to ``Unknown`` with reason
``NodeStatusUnknown``; the Ready condition of each pod on it turns ``False`` so that its
endpoints leave the ready set.
"""

from __future__ import annotations

from datetime import datetime

from .actions import Action, Event, Obj, Result, fmt_time, get_condition, meta, name_of, ns_of, parse_time

UNKNOWN_MESSAGE = "Kubelet stopped posting node status."


def last_heartbeat(node: Obj) -> datetime | None:
    c = get_condition(node, "Ready")
    t = parse_time((c or {}).get("lastHeartbeatTime"))
    return t or parse_time(meta(node).get("creationTimestamp"))


def is_stale(node: Obj, now: datetime, grace: float) -> bool:
    t = last_heartbeat(node)
    return t is not None and (now - t).total_seconds() > grace


def reconcile_node(node: Obj, pods_on_node: list[Obj], now: datetime, grace: float) -> Result:
    """Writes for one node: mark it Unknown once stale, and its pods not ready (idempotent)."""
    if not is_stale(node, now, grace):
        return Result(requeue_after=_next_check(node, now, grace))
    actions: list[Action] = []
    events: list[Event] = []
    ready = get_condition(node, "Ready")
    if ready is None or ready.get("status") != "Unknown":
        ts = fmt_time(now)
        conds = []
        for c in (node.get("status") or {}).get("conditions") or [{"type": "Ready"}]:
            c = dict(c)
            if c.get("status") != "Unknown":
                c["lastTransitionTime"] = ts
            c.update(status="Unknown", reason="NodeStatusUnknown", message=UNKNOWN_MESSAGE)
            c.setdefault("lastHeartbeatTime", c.get("lastHeartbeatTime"))
            conds.append(c)
        patch = {"status": {"conditions": conds}}
        actions.append(Action("patch_status", "v1", "nodes", "", name_of(node), patch))
        events.append(Event(node, "NodeNotReady", f"Node {name_of(node)} status is now: NodeNotReady"))
    for pod in pods_on_node:
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
    return Result(actions=tuple(actions), events=tuple(events))


def _next_check(node: Obj, now: datetime, grace: float) -> float | None:
    t = last_heartbeat(node)
    if t is None:
        return None
    return max(0.1, grace - (now - t).total_seconds() + 0.1)
