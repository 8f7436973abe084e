"""Scheduler core: unscheduled pods + nodes -> bindings, or Unschedulable conditions + events.

Feasible nodes are Ready, schedulable (``spec.unschedulable`` not set, no NoSchedule/NoExecute
taint the pod does not tolerate) and match ``spec.nodeSelector``. Among them the node with
the fewest pods wins (ties by name), so pods spread evenly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from servicenet.api.views import meta as meta_of

from .actions import (
    Action,
    Event,
    Obj,
    Result,
    fmt_time,
    get_condition,
    is_terminal,
    labels_of,
    name_of,
    ns_of,
    tolerates,
)

SCHEDULER_NAME = "default-scheduler"


@dataclass(frozen=True, slots=True)
class Binding:
    pod: Obj
    node: str


def wants_scheduling(pod: Obj, scheduler_name: str = SCHEDULER_NAME) -> bool:
    spec = pod.get("spec") or {}
    return (
        not spec.get("nodeName")
        and (spec.get("schedulerName") or SCHEDULER_NAME) == scheduler_name
        and not meta_of(pod).get("deletionTimestamp")
        and not is_terminal(pod)
    )


def node_ready(node: Obj) -> bool:
    c = get_condition(node, "Ready")
    return c is not None and c.get("status") == "True"


def fits(pod: Obj, node: Obj) -> str | None:
    """None if the pod can go to the node, else a short reason."""
    if not node_ready(node):
        return "node(s) were not ready"
    nspec = node.get("spec") or {}
    if nspec.get("unschedulable"):
        return "node(s) were unschedulable"
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in nspec.get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(taint, tolerations):
            return "node(s) had untolerated taint"
    sel = (pod.get("spec") or {}).get("nodeSelector") or {}
    nl = labels_of(node)
    if any(nl.get(k) != v for k, v in sel.items()):
        return "node(s) didn't match Pod's node affinity/selector"
    return None


def schedule(pending: Iterable[Obj], nodes: list[Obj], pod_counts: dict[str, int], now: datetime) -> tuple[list[Binding], Result]:
    """Decide bindings for ``pending`` pods. ``pod_counts`` (node -> pods) is updated in place."""
    bindings: list[Binding] = []
    actions: list[Action] = []
    events: list[Event] = []
    for pod in pending:
        reasons: dict[str, int] = {}
        best: Obj | None = None
        for node in nodes:
            why = fits(pod, node)
            if why is not None:
                reasons[why] = reasons.get(why, 0) + 1
                continue
            if best is None or (pod_counts.get(name_of(node), 0), name_of(node)) < (pod_counts.get(name_of(best), 0), name_of(best)):
                best = node
        if best is not None:
            bindings.append(Binding(pod, name_of(best)))
            pod_counts[name_of(best)] = pod_counts.get(name_of(best), 0) + 1
            msg = f"Successfully assigned {ns_of(pod)}/{name_of(pod)} to {name_of(best)}"
            events.append(Event(pod, "Scheduled", msg))
            continue
        detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()))
        msg = f"0/{len(nodes)} nodes are available" + (f": {detail}." if detail else ".")
        events.append(Event(pod, "FailedScheduling", msg, "Warning"))
        cond = get_condition(pod, "PodScheduled") or {}
        if cond.get("status") != "False" or cond.get("message") != msg:
            patch = {
                "status": {
                    "conditions": [
                        {
                            "type": "PodScheduled",
                            "status": "False",
                            "reason": "Unschedulable",
                            "message": msg,
                            "lastProbeTime": None,
                            "lastTransitionTime": fmt_time(now),
                        }
                    ]
                }
            }
            actions.append(Action("patch_status", "v1", "pods", ns_of(pod), name_of(pod), patch, patch_type="strategic"))
    return bindings, Result(actions=tuple(actions), events=tuple(events))


def binding_body(b: Binding) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name_of(b.pod), "namespace": ns_of(b.pod), "uid": meta_of(b.pod).get("uid", "")},
        "target": {"apiVersion": "v1", "kind": "Node", "name": b.node},
    }
