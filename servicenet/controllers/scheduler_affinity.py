"""Scheduler predicates and scores over labels (pure): node affinity, inter-pod (anti-)affinity, spreading.

Node side: ``nodeSelector`` and ``nodeAffinity.requiredDuringScheduling…`` (terms ORed, the
expressions and fields of one term ANDed, operators In/NotIn/Exists/DoesNotExist/Gt/Lt), plus
the preferred terms' weights. Pod side: ``podAffinity``/``podAntiAffinity`` terms select other
pods by ``labelSelector`` within ``namespaces`` (default: the pod's own; an empty
``namespaceSelector`` means every namespace) and compare topology domains (the node label named
by ``topologyKey``). ``topologySpreadConstraints`` with ``whenUnsatisfiable: DoNotSchedule`` are
enforced by skew over the domains of the nodes that pass node affinity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from servicenet.api.selectors import selector_matches

from .actions import Obj, labels_of, meta, name_of, ns_of, tolerates

HOSTNAME = "kubernetes.io/hostname"


# -- node affinity --------------------------------------------------------------------------------------


def _expr_matches(expr: Obj, labels: Mapping[str, str]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), list(expr.get("values") or [])
    have = key in labels
    val = labels.get(key, "")
    if op == "In":
        return have and val in values
    if op == "NotIn":
        return not have or val not in values
    if op == "Exists":
        return have
    if op == "DoesNotExist":
        return not have
    if op in ("Gt", "Lt"):
        try:
            a, b = int(val), int(values[0])
        except (ValueError, IndexError):
            return False
        return have and (a > b if op == "Gt" else a < b)
    return False


def node_term_matches(term: Obj, node: Obj) -> bool:
    """One NodeSelectorTerm: all matchExpressions (labels) and matchFields (metadata.name) hold."""
    exprs = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not exprs and not fields:
        return False  # an empty term matches nothing
    labels = labels_of(node)
    if not all(_expr_matches(e, labels) for e in exprs):
        return False
    return all(_expr_matches(f, {"metadata.name": name_of(node)}) for f in fields)


def _affinity(pod: Obj) -> Obj:
    return (pod.get("spec") or {}).get("affinity") or {}


def matches_node_affinity(pod: Obj, node: Obj) -> bool:
    """``nodeSelector`` and required node affinity (the NodeAffinity filter)."""
    spec = pod.get("spec") or {}
    nl = labels_of(node)
    if any(nl.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    req = ((_affinity(pod).get("nodeAffinity") or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or {})
    terms = req.get("nodeSelectorTerms")
    if terms is None:
        return True
    return any(node_term_matches(t, node) for t in terms)


def preferred_node_score(pod: Obj, node: Obj) -> int:
    prefs = (_affinity(pod).get("nodeAffinity") or {}).get("preferredDuringSchedulingIgnoredDuringExecution") or []
    return sum(int(p.get("weight") or 0) for p in prefs if node_term_matches(p.get("preference") or {}, node))


# -- inter-pod affinity ----------------------------------------------------------------------------------


def _term_namespaces(term: Obj, pod: Obj) -> set[str] | None:
    """The namespaces a term looks at (None = all)."""
    nss = set(term.get("namespaces") or [])
    nsel = term.get("namespaceSelector")
    if nsel is not None and not (nsel.get("matchLabels") or nsel.get("matchExpressions")):
        return None  # {} selects every namespace
    return nss or {ns_of(pod)}


def term_selects(term: Obj, owner: Obj, other: Obj) -> bool:
    """Whether ``owner``'s affinity term selects pod ``other``."""
    nss = _term_namespaces(term, owner)
    if nss is not None and ns_of(other) not in nss:
        return False
    return selector_matches(term.get("labelSelector"), labels_of(other))


def _terms(pod: Obj, kind: str, required: bool) -> list[Obj]:
    a = _affinity(pod).get(kind) or {}
    if required:
        return [t for t in a.get("requiredDuringSchedulingIgnoredDuringExecution") or [] if t.get("topologyKey")]
    return [w for w in a.get("preferredDuringSchedulingIgnoredDuringExecution") or []
            if (w.get("podAffinityTerm") or {}).get("topologyKey")]


def has_pod_affinity(pod: Obj) -> bool:
    a = _affinity(pod)
    return bool(a.get("podAffinity") or a.get("podAntiAffinity"))


def has_required_anti_affinity(pod: Obj) -> bool:
    return bool(_terms(pod, "podAntiAffinity", True))


class Placement:
    """Bound pods by node, and node labels: the view the inter-pod rules and spreading read."""

    def __init__(self, nodes: Iterable[Obj], placed: Iterable[Obj]) -> None:
        self.labels: dict[str, Mapping[str, str]] = {name_of(n): labels_of(n) for n in nodes}
        self.by_node: dict[str, list[Obj]] = {}
        for p in placed:
            node = (p.get("spec") or {}).get("nodeName")
            if node and not meta(p).get("deletionTimestamp"):
                self.by_node.setdefault(node, []).append(p)

    def add(self, pod: Obj, node: str) -> None:
        self.by_node.setdefault(node, []).append({**pod, "spec": {**(pod.get("spec") or {}), "nodeName": node}})

    def domain(self, node: str, key: str) -> str | None:
        return self.labels.get(node, {}).get(key)

    def pods_in_domain(self, node: str, key: str) -> Iterable[Obj]:
        dom = self.domain(node, key)
        if dom is None:
            return
        for n, pods in self.by_node.items():
            if self.labels.get(n, {}).get(key) == dom:
                yield from pods

    def all_pods(self) -> Iterable[Obj]:
        for pods in self.by_node.values():
            yield from pods


def interpod_reason(pod: Obj, node: str, place: Placement) -> str | None:
    """The InterPodAffinity filter: None when the node passes, else upstream's reason."""
    for term in _terms(pod, "podAffinity", True):
        if any(term_selects(term, pod, o) for o in place.pods_in_domain(node, term["topologyKey"])):
            continue
        # no match anywhere and the pod matches its own term: the first of its group may go anywhere
        anywhere = any(term_selects(term, pod, o) for o in place.all_pods())
        if anywhere or not term_selects(term, pod, pod) or place.domain(node, term["topologyKey"]) is None:
            return "node(s) didn't match pod affinity rules"
    for term in _terms(pod, "podAntiAffinity", True):
        if any(term_selects(term, pod, o) for o in place.pods_in_domain(node, term["topologyKey"])):
            return "node(s) didn't match pod anti-affinity rules"
    for other in place.all_pods():
        for term in _terms(other, "podAntiAffinity", True):
            if not term_selects(term, other, pod):
                continue
            onode = (other.get("spec") or {}).get("nodeName", "")
            dom = place.domain(onode, term["topologyKey"])
            if dom is not None and place.domain(node, term["topologyKey"]) == dom:
                return "node(s) didn't satisfy existing pods anti-affinity rules"
    return None


def interpod_score(pod: Obj, node: str, place: Placement) -> int:
    """Preferred pod affinity adds, preferred anti-affinity subtracts, per matching pod in the domain."""
    score = 0
    for sign, kind in ((1, "podAffinity"), (-1, "podAntiAffinity")):
        for w in _terms(pod, kind, False):
            term = w["podAffinityTerm"]
            n = sum(1 for o in place.pods_in_domain(node, term["topologyKey"]) if term_selects(term, pod, o))
            score += sign * int(w.get("weight") or 0) * n
    return score


# -- topology spread ----------------------------------------------------------------------------------------


def spread_reason(pod: Obj, node: str, eligible: list[str], place: Placement) -> str | None:
    """``topologySpreadConstraints`` with DoNotSchedule: the skew after placing here stays within maxSkew."""
    for c in (pod.get("spec") or {}).get("topologySpreadConstraints") or []:
        if (c.get("whenUnsatisfiable") or "DoNotSchedule") != "DoNotSchedule":
            continue
        key = c.get("topologyKey") or ""
        if place.domain(node, key) is None:
            return "node(s) didn't match pod topology spread constraints (missing required label)"
        counts: dict[str, int] = {}
        for n in eligible:
            dom = place.domain(n, key)
            if dom is None:
                continue
            counts.setdefault(dom, 0)
            counts[dom] += sum(1 for o in place.by_node.get(n, []) if ns_of(o) == ns_of(pod)
                               and selector_matches(c.get("labelSelector"), labels_of(o)))
        mine = counts.get(place.domain(node, key) or "", 0)
        least = min(counts.values()) if counts else 0
        if mine + 1 - least > int(c.get("maxSkew") or 1):
            return "node(s) didn't match pod topology spread constraints"
    return None


def siblings_on(pod: Obj, node: str, place: Placement, owner_uid: str | None) -> int:
    """Pods with the same controller on the node (default spreading of a ReplicaSet/StatefulSet)."""
    if not owner_uid:
        return 0
    return sum(1 for o in place.by_node.get(node, [])
               if any(r.get("controller") and r.get("uid") == owner_uid for r in meta(o).get("ownerReferences") or []))


def controller_uid(pod: Obj) -> str | None:
    for r in meta(pod).get("ownerReferences") or []:
        if r.get("controller"):
            return str(r.get("uid") or "") or None
    return None


def untolerated(taints: Iterable[Obj], tolerations: list[Any], effects: tuple[str, ...]) -> Obj | None:
    for t in taints:
        if t.get("effect") in effects and not tolerates(t, tolerations):
            return t
    return None
