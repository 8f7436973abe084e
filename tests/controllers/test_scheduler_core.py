"""Scheduler core: node labels, nodeSelector, node affinity, taints, inter-pod (anti-)affinity, spreading."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from servicenet.controllers import scheduler_core as sc
from servicenet.controllers.actions import Obj

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
HOST = "kubernetes.io/hostname"


def mknode(name: str, labels: dict[str, str] | None = None, taints: list[Obj] | None = None, ready: str = "True",
           unschedulable: bool = False) -> Obj:
    spec: Obj = {"taints": taints} if taints else {}
    if unschedulable:
        spec["unschedulable"] = True
    return {"metadata": {"name": name, "labels": {HOST: name, **(labels or {})}}, "spec": spec,
            "status": {"conditions": [{"type": "Ready", "status": ready}]}}


def mkpod(name: str, labels: dict[str, str] | None = None, node: str = "", ns: str = "default", owner: str = "",
          **spec: Any) -> Obj:
    md: Obj = {"name": name, "namespace": ns, "labels": labels or {}, "uid": f"uid-{name}"}
    if owner:
        md["ownerReferences"] = [{"kind": "ReplicaSet", "name": owner, "uid": owner, "controller": True}]
    return {"metadata": md, "spec": {"containers": [{"name": "c", "image": "x"}], **({"nodeName": node} if node else {}),
                                     **spec}, "status": {"phase": "Pending"}}


def anti(app: str, required: bool = True, weight: int = 100, key: str = HOST) -> Obj:
    term = {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}
    if required:
        return {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": weight, "podAffinityTerm": term}]}}


def node_aff(required: list[Obj] | None = None, preferred: list[tuple[int, Obj]] | None = None) -> Obj:
    na: Obj = {}
    if required is not None:
        na["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": required}
    if preferred:
        na["preferredDuringSchedulingIgnoredDuringExecution"] = [{"weight": w, "preference": t} for w, t in preferred]
    return {"nodeAffinity": na}


def expr(key: str, op: str, *values: str) -> Obj:
    e: Obj = {"key": key, "operator": op}
    if values:
        e["values"] = list(values)
    return {"matchExpressions": [e]}


THREE = [mknode("n1", {"zone": "a", "disk": "ssd"}), mknode("n2", {"zone": "a", "size": "8"}),
         mknode("n3", {"zone": "b", "node": "kube-node3"})]
PLACED_WEB = [mkpod("w1", {"app": "web"}, node="n1"), mkpod("w2", {"app": "web"}, node="n2")]

CASES: list[tuple[str, list[Obj], Obj, list[Obj], str | None]] = [
    # (why, nodes, pod, placed pods, expected node (None = pending))
    ("nodeSelector on a user label", THREE, mkpod("p", nodeSelector={"node": "kube-node3"}), [], "n3"),
    ("nodeSelector on the hostname label", THREE, mkpod("p", nodeSelector={HOST: "n2"}), [], "n2"),
    ("nodeSelector no match", THREE, mkpod("p", nodeSelector={"node": "kube-node9"}), [], None),
    ("required affinity In", THREE, mkpod("p", affinity=node_aff([expr("zone", "In", "b")])), [], "n3"),
    ("required affinity NotIn", THREE, mkpod("p", affinity=node_aff([expr("zone", "NotIn", "a")])), [], "n3"),
    ("required affinity Exists", THREE, mkpod("p", affinity=node_aff([expr("size", "Exists")])), [], "n2"),
    ("required affinity DoesNotExist + Gt",
     THREE, mkpod("p", affinity=node_aff([{"matchExpressions": [{"key": "disk", "operator": "DoesNotExist"},
                                                                {"key": "size", "operator": "Gt", "values": ["4"]}]}])),
     [], "n2"),
    ("required affinity terms are ORed", THREE,
     mkpod("p", affinity=node_aff([expr("disk", "In", "hdd"), expr("zone", "In", "b")])), [], "n3"),
    ("matchFields metadata.name", THREE,
     mkpod("p", affinity=node_aff([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}])),
     [], "n2"),
    ("preferred node affinity wins over fewer pods", THREE,
     mkpod("p", affinity=node_aff(preferred=[(50, expr("zone", "In", "a")), (80, expr("disk", "In", "ssd"))])),
     [mkpod("x", node="n1")], "n1"),
    ("untolerated NoSchedule taint", [mknode("n1", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])],
     mkpod("p"), [], None),
    ("tolerated taint", [mknode("n1", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])],
     mkpod("p", tolerations=[{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}]), [], "n1"),
    ("PreferNoSchedule only lowers the score", [mknode("n1", taints=[{"key": "k", "effect": "PreferNoSchedule"}]),
                                                mknode("n2")], mkpod("p"), [mkpod("x", node="n2")], "n2"),
    ("not-ready node is implicitly tainted", [mknode("n1", ready="False"), mknode("n2", ready="Unknown")],
     mkpod("p"), [], None),
    ("unschedulable node", [mknode("n1", unschedulable=True), mknode("n2")], mkpod("p"), [], "n2"),
    ("required anti-affinity by hostname", THREE, mkpod("p", {"app": "web"}, affinity=anti("web")), PLACED_WEB, "n3"),
    ("required anti-affinity: nowhere left", THREE[:2], mkpod("p", {"app": "web"}, affinity=anti("web")),
     PLACED_WEB, None),
    ("anti-affinity looks only at the pod's namespace", THREE[:2],
     mkpod("p", {"app": "web"}, ns="other", affinity=anti("web")), PLACED_WEB, "n1"),
    ("existing pod's anti-affinity repels", THREE[:2], mkpod("p", {"app": "db"}),
     [mkpod("d1", {"app": "x"}, node="n1", affinity=anti("db"))], "n2"),
    ("anti-affinity by zone", THREE, mkpod("p", {"app": "web"}, affinity=anti("web", key="zone")), PLACED_WEB[:1],
     "n3"),
    ("preferred anti-affinity", THREE, mkpod("p", {"app": "web"}, affinity=anti("web", required=False)),
     PLACED_WEB, "n3"),
    ("required pod affinity: next to the db", THREE,
     mkpod("p", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": HOST}]}}),
     [mkpod("db", {"app": "db"}, node="n2")], "n2"),
    ("required pod affinity: first of its group", THREE,
     mkpod("p", {"app": "db"}, affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": HOST}]}}), [], "n1"),
    ("spreading of controller siblings", THREE, mkpod("p", owner="rs1"),
     [mkpod("s1", owner="rs1", node="n1"), mkpod("s2", owner="rs1", node="n2"), mkpod("x1", node="n3"),
      mkpod("x2", node="n3")], "n3"),
    ("topology spread DoNotSchedule by zone", THREE,
     mkpod("p", {"app": "web"}, topologySpreadConstraints=[{"maxSkew": 1, "topologyKey": "zone",
                                                          "whenUnsatisfiable": "DoNotSchedule",
                                                          "labelSelector": {"matchLabels": {"app": "web"}}}]),
     [mkpod("w1", {"app": "web"}, node="n1")], "n3"),
]


@pytest.mark.parametrize(("why", "nodes", "pod", "placed", "want"), CASES, ids=[c[0] for c in CASES])
def test_placement(why: str, nodes: list[Obj], pod: Obj, placed: list[Obj], want: str | None) -> None:
    counts: dict[str, int] = {}
    for p in placed:
        counts[p["spec"]["nodeName"]] = counts.get(p["spec"]["nodeName"], 0) + 1
    bindings, res = sc.schedule([pod], nodes, counts, NOW, placed)
    assert [b.node for b in bindings] == ([want] if want else [])
    if want is None:
        assert res.events[0].reason == "FailedScheduling"


MESSAGES = [
    ("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are "
     "available: 3 Preemption is not helpful for scheduling.", THREE, mkpod("p", nodeSelector={"node": "kube-node9"}),
     []),
    ("0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 1 node(s) had untolerated taint "
     "{node.kubernetes.io/unreachable: }. preemption: 0/2 nodes are available: 2 Preemption is not helpful for "
     "scheduling.", [mknode("n1", ready="Unknown"), mknode("n2", taints=[{"key": "dedicated", "value": "db",
                                                                          "effect": "NoSchedule"}])], mkpod("p"), []),
    ("0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 node(s) didn't match pod "
     "anti-affinity rules. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, "
     "2 No preemption victims found for incoming pod.",
     THREE, mkpod("p", {"app": "web"}, affinity={**anti("web"), **node_aff([expr("zone", "In", "a")])}), PLACED_WEB),
    ("0/1 nodes are available: 1 node(s) were unschedulable. preemption: 0/1 nodes are available: 1 Preemption is "
     "not helpful for scheduling.", [mknode("n1", unschedulable=True)], mkpod("p"), []),
    ("0/2 nodes are available: 2 node(s) didn't satisfy existing pods anti-affinity rules. preemption: 0/2 nodes are "
     "available: 2 No preemption victims found for incoming pod.", THREE[:2], mkpod("p", {"app": "db"}),
     [mkpod("d1", {"app": "x"}, node="n1", affinity=anti("db", key="zone"))]),
    ("0/0 nodes are available.", [], mkpod("p"), []),
]


@pytest.mark.parametrize(("msg", "nodes", "pod", "placed"), MESSAGES)
def test_failed_scheduling_message(msg: str, nodes: list[Obj], pod: Obj, placed: list[Obj]) -> None:
    bindings, res = sc.schedule([pod], nodes, {}, NOW, placed)
    assert bindings == []
    assert [(e.reason, e.type, e.message) for e in res.events] == [("FailedScheduling", "Warning", msg)]
    cond = res.actions[0].body["status"]["conditions"][0]  # type: ignore[index]
    assert (cond["reason"], cond["message"]) == ("Unschedulable", msg)


def test_replicas_with_anti_affinity_land_on_different_nodes_in_one_pass() -> None:
    """Pods bound earlier in the same pass count for the later ones."""
    pods = [mkpod(f"h{i}", {"app": "hostnames"}, owner="rs", affinity=anti("hostnames")) for i in range(4)]
    bindings, res = sc.schedule(pods, THREE, {}, NOW)
    assert sorted(b.node for b in bindings) == ["n1", "n2", "n3"]
    assert [e.reason for e in res.events].count("FailedScheduling") == 1


def test_siblings_spread_before_total_count() -> None:
    pods = [mkpod(f"r{i}", owner="rs") for i in range(6)]
    bindings, _ = sc.schedule(pods, THREE, {"n1": 5}, NOW, [mkpod("x", node="n1")])
    per = {n: sum(1 for b in bindings if b.node == n) for n in ("n1", "n2", "n3")}
    assert per == {"n1": 2, "n2": 2, "n3": 2}
