"""Scheduler core: unscheduled pods + nodes -> bindings, or Unschedulable conditions + events.

Filters, in upstream's plugin order, each node stopping at its first failure:

| Filter | Reason in the FailedScheduling message |
|---|---|
| NodeUnschedulable (``spec.unschedulable``, unless tolerated) | ``node(s) were unschedulable`` |
| TaintToleration (NoSchedule/NoExecute; a node whose Ready is not True counts as tainted ``not-ready``/``unreachable`` NoSchedule until the lifecycle controller writes the taint) | ``node(s) had untolerated taint {key: value}`` |
| NodeAffinity (``nodeSelector``, required node affinity) | ``node(s) didn't match Pod's node affinity/selector`` |
| PodTopologySpread (DoNotSchedule) | ``node(s) didn't match pod topology spread constraints`` |
| InterPodAffinity (required affinity, anti-affinity, existing pods' anti-affinity) | ``node(s) didn't match pod affinity rules`` / ``… pod anti-affinity rules`` / ``node(s) didn't satisfy existing pods anti-affinity rules`` |

A pod that fits nowhere gets ``0/N nodes are available: <count reason, sorted>. preemption: 0/N
nodes are available: <count Preemption is not helpful for scheduling | No preemption victims found
for incoming pod>.`` (servicenet never preempts; inter-pod rules are the "resolvable" kind).

Scores (normalised to 0..100 over the feasible nodes, weighted as upstream's default profile):
preferred node affinity ×2, preferred inter-pod (anti-)affinity ×2, spreading of the pod's
controller siblings ×2, untolerated PreferNoSchedule taints ×3 (fewer is better), fewest pods ×1.
Ties go to the node name, so placement is deterministic.

``placed`` must hold every bound pod the rules can see: the pending pod's controller siblings, pods
with required anti-affinity, and, when the pending pod has pod (anti-)affinity terms, all of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from servicenet.api.views import meta as meta_of

from . import scheduler_affinity as aff
from .actions import (
    Action,
    Event,
    Obj,
    Result,
    fmt_time,
    get_condition,
    is_terminal,
    name_of,
    ns_of,
)

SCHEDULER_NAME = "default-scheduler"
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}
_UNRESOLVABLE = "Preemption is not helpful for scheduling"
_NO_VICTIMS = "No preemption victims found for incoming pod"
_RESOLVABLE = ("node(s) didn't match pod anti-affinity rules", "node(s) didn't satisfy existing pods anti-affinity rules")


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


def effective_taints(node: Obj) -> list[Obj]:
    """The node's taints, plus the readiness taint the lifecycle controller is about to write."""
    taints = [t for t in (node.get("spec") or {}).get("taints") or [] if isinstance(t, dict)]
    if not node_ready(node):
        status = (get_condition(node, "Ready") or {}).get("status")
        key = "node.kubernetes.io/unreachable" if status == "Unknown" else "node.kubernetes.io/not-ready"
        if not any(t.get("key") == key and t.get("effect") == "NoSchedule" for t in taints):
            taints.append({"key": key, "effect": "NoSchedule"})
    return taints


def _node_filters(pod: Obj, node: Obj) -> str | None:
    """NodeUnschedulable, TaintToleration, NodeAffinity."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    if (node.get("spec") or {}).get("unschedulable") and aff.untolerated([UNSCHEDULABLE_TAINT], tolerations, ("NoSchedule",)):
        return "node(s) were unschedulable"
    t = aff.untolerated(effective_taints(node), tolerations, ("NoSchedule", "NoExecute"))
    if t is not None:
        return f"node(s) had untolerated taint {{{t.get('key', '')}: {t.get('value', '')}}}"
    if not aff.matches_node_affinity(pod, node):
        return "node(s) didn't match Pod's node affinity/selector"
    return None


def fits(pod: Obj, node: Obj) -> str | None:
    """The node-local filters only: None if the pod can go to the node, else upstream's reason."""
    return _node_filters(pod, node)


def _normalise(raw: dict[str, float], lower_is_better: bool = False) -> dict[str, float]:
    if not raw:
        return {}
    lo, hi = min(raw.values()), max(raw.values())
    if hi == lo:
        return {k: 100.0 if (lower_is_better or hi != 0) else 0.0 for k in raw}
    if lower_is_better:
        return {k: 100.0 * (hi - v) / (hi - lo) for k, v in raw.items()}
    return {k: 100.0 * (v - lo) / (hi - lo) for k, v in raw.items()}


def _best(pod: Obj, feasible: list[Obj], pod_counts: dict[str, int], place: aff.Placement) -> Obj:
    names = [name_of(n) for n in feasible]
    owner = aff.controller_uid(pod)
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    node_aff = _normalise({name_of(n): aff.preferred_node_score(pod, n) for n in feasible})
    inter = _normalise({n: aff.interpod_score(pod, n, place) for n in names})
    spread = _normalise({n: aff.siblings_on(pod, n, place, owner) for n in names}, lower_is_better=True)
    prefer = _normalise({name_of(n): sum(1 for t in (n.get("spec") or {}).get("taints") or []
                                         if t.get("effect") == "PreferNoSchedule"
                                         and aff.untolerated([t], tolerations, ("PreferNoSchedule",)))
                         for n in feasible}, lower_is_better=True)
    least = _normalise({n: pod_counts.get(n, 0) for n in names}, lower_is_better=True)
    total = {n: 2 * node_aff[n] + 2 * inter[n] + 2 * spread[n] + 3 * prefer[n] + least[n] for n in names}
    return min(feasible, key=lambda n: (-round(total[name_of(n)], 6), name_of(n)))


def failure_message(total: int, reasons: dict[str, int]) -> str:
    """Upstream's FitError text, with the preemption post-filter part."""
    def hist(counts: dict[str, int]) -> str:
        return ", ".join(sorted(f"{n} {r}" for r, n in counts.items()))
    msg = f"0/{total} nodes are available"
    msg += f": {hist(reasons)}." if reasons else "."
    pre: dict[str, int] = {}
    for r, n in reasons.items():
        k = _NO_VICTIMS if r in _RESOLVABLE else _UNRESOLVABLE
        pre[k] = pre.get(k, 0) + n
    if pre:
        msg += f" preemption: 0/{total} nodes are available: {hist(pre)}."
    return msg


def schedule(pending: Iterable[Obj], nodes: list[Obj], pod_counts: dict[str, int], now: datetime,
             placed: Iterable[Obj] = ()) -> tuple[list[Binding], Result]:
    """Decide bindings for ``pending`` pods. ``pod_counts`` (node -> pods) is updated in place."""
    bindings: list[Binding] = []
    actions: list[Action] = []
    events: list[Event] = []
    place = aff.Placement(nodes, placed)
    for pod in pending:
        reasons: dict[str, int] = {}
        passed = [n for n in nodes if _count(reasons, _node_filters(pod, n))]
        eligible = [name_of(n) for n in passed]
        feasible = [n for n in passed
                    if _count(reasons, aff.spread_reason(pod, name_of(n), eligible, place)
                              or aff.interpod_reason(pod, name_of(n), place))]
        if feasible:
            best = _best(pod, feasible, pod_counts, place)
            bindings.append(Binding(pod, name_of(best)))
            pod_counts[name_of(best)] = pod_counts.get(name_of(best), 0) + 1
            place.add(pod, name_of(best))
            events.append(Event(pod, "Scheduled", f"Successfully assigned {ns_of(pod)}/{name_of(pod)} to {name_of(best)}"))
            continue
        msg = failure_message(len(nodes), reasons)
        events.append(Event(pod, "FailedScheduling", msg, "Warning"))
        cond = get_condition(pod, "PodScheduled") or {}
        if cond.get("status") != "False" or cond.get("message") != msg:
            patch = {"status": {"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg,
                "lastProbeTime": None, "lastTransitionTime": fmt_time(now)}]}}
            actions.append(Action("patch_status", "v1", "pods", ns_of(pod), name_of(pod), patch, patch_type="strategic"))
    return bindings, Result(actions=tuple(actions), events=tuple(events))


def _count(reasons: dict[str, int], why: str | None) -> bool:
    """Record a failure reason; True when there was none."""
    if why is None:
        return True
    reasons[why] = reasons.get(why, 0) + 1
    return False


def binding_body(b: Binding) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name_of(b.pod), "namespace": ns_of(b.pod), "uid": meta_of(b.pod).get("uid", "")},
        "target": {"apiVersion": "v1", "kind": "Node", "name": b.node},
    }
