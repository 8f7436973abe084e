"""StatefulSet, scheduler and node lifecycle cores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from ctrl_fixtures import FakeStore, node, pod

from servicenet.controllers import nodelifecycle_core as nlc
from servicenet.controllers import scheduler_core as sc
from servicenet.controllers import statefulset_core as ssc
from servicenet.controllers.actions import Obj, is_pod_ready

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def sts(replicas: int = 3, policy: str = "OrderedReady", image: str = "v1", **spec: object) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "db", "namespace": "default", "uid": "uid-sts-db", "generation": 1},
        "spec": {
            "replicas": replicas,
            "serviceName": "db-hl",
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": image}]}},
            **spec,
        },
    }


class StsSim:
    def __init__(self, s: Obj) -> None:
        self.s = s
        self.pods = FakeStore()
        self.log: list[str] = []

    def step(self, make_ready: bool = True) -> None:
        res = ssc.reconcile(self.s, self.pods.list(), NOW)
        for a in res.actions:
            if a.plural == "pods":
                self.log.append(f"{a.verb} {a.name}")
                self.pods.apply([a])
            else:
                self.s = {**self.s, "status": a.body["status"]}  # type: ignore[index]
        if make_ready:
            for p in list(self.pods.objs.values()):
                p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}

    def run(self, n: int) -> None:
        for _ in range(n):
            self.step()


def test_ordered_ready_creates_one_at_a_time_with_identity() -> None:
    sim = StsSim(sts(3))
    sim.step(make_ready=False)
    sim.step(make_ready=False)
    assert sim.log == ["create db-0"]  # waits for db-0 to be Running and Ready
    sim.run(4)
    assert sim.log == ["create db-0", "create db-1", "create db-2"]
    p = sim.pods.objs[("default", "db-1")]
    rev = ssc.update_revision(sim.s)
    assert p["spec"]["hostname"] == "db-1" and p["spec"]["subdomain"] == "db-hl"
    assert p["metadata"]["labels"] == {
        "app": "db",
        "statefulset.kubernetes.io/pod-name": "db-1",
        "apps.kubernetes.io/pod-index": "1",
        "controller-revision-hash": rev,
    }
    assert p["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    st = sim.s["status"]
    assert {k: st[k] for k in ("replicas", "readyReplicas", "currentReplicas", "updatedReplicas", "availableReplicas", "observedGeneration")} == {
        "replicas": 3, "readyReplicas": 3, "currentReplicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "observedGeneration": 1
    }


def test_scale_down_from_highest_ordinal_one_at_a_time() -> None:
    sim = StsSim(sts(5))
    sim.run(8)
    sim.log.clear()
    sim.s["spec"]["replicas"] = 2
    sim.run(5)
    assert sim.log == ["delete db-4", "delete db-3", "delete db-2"]


def test_parallel_creates_and_deletes_all_at_once() -> None:
    sim = StsSim(sts(4, "Parallel"))
    sim.step(make_ready=False)
    assert sim.log == ["create db-0", "create db-1", "create db-2", "create db-3"]
    sim.log.clear()
    sim.s["spec"]["replicas"] = 1
    sim.step()
    assert sim.log == ["delete db-3", "delete db-2", "delete db-1"]


def test_rolling_update_highest_first_with_partition() -> None:
    sim = StsSim(sts(3, updateStrategy={"type": "RollingUpdate", "rollingUpdate": {"partition": 1}}))
    sim.run(4)
    sim.log.clear()
    sim.s["spec"]["template"]["spec"]["containers"][0]["image"] = "v2"
    sim.run(8)
    assert sim.log == ["delete db-2", "create db-2", "delete db-1", "create db-1"]
    imgs = {n: p["spec"]["containers"][0]["image"] for (_, n), p in sim.pods.objs.items()}
    assert imgs == {"db-0": "v1", "db-1": "v2", "db-2": "v2"}


def test_scheduler_spreads_and_honours_node_selector() -> None:
    nodes = [node("n1"), node("n2"), node("n3", ready=False)]
    nodes[1]["metadata"]["labels"]["disk"] = "ssd"
    pending = [pod(f"p{i}", node="", ip=None) for i in range(4)]
    pinned = pod("pinned", node="", ip=None)
    pinned["spec"]["nodeSelector"] = {"disk": "ssd"}
    counts = {"n1": 1}
    bindings, res = sc.schedule(pending + [pinned], nodes, counts, NOW)
    assert [(b.pod["metadata"]["name"], b.node) for b in bindings] == [
        ("p0", "n2"), ("p1", "n1"), ("p2", "n2"), ("p3", "n1"), ("pinned", "n2")
    ]
    assert counts == {"n1": 3, "n2": 3}
    assert [e.reason for e in res.events] == ["Scheduled"] * 5
    assert sc.binding_body(bindings[0])["target"] == {"apiVersion": "v1", "kind": "Node", "name": "n2"}


def test_scheduler_unschedulable() -> None:
    p = pod("p", node="", ip=None)
    p["spec"]["nodeSelector"] = {"gpu": "yes"}
    bindings, res = sc.schedule([p], [node("n1"), node("n2", ready=False)], {}, NOW)
    assert bindings == []
    msg = ("0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, "
           "1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }. "
           "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    assert [(e.reason, e.type, e.message) for e in res.events] == [("FailedScheduling", "Warning", msg)]
    (a,) = res.actions
    assert a.verb == "patch_status"
    cond = a.body["status"]["conditions"][0]  # type: ignore[index]
    assert (cond["type"], cond["status"], cond["reason"]) == ("PodScheduled", "False", "Unschedulable")
    # a second pass with the condition already set writes nothing but still reports the event
    p["status"]["conditions"] = [cond]
    _, res2 = sc.schedule([p], [node("n1"), node("n2", ready=False)], {}, NOW)
    assert res2.actions == () and len(res2.events) == 1


@pytest.mark.parametrize(
    "pod_kw,wants",
    [({}, True), ({"node": "n1"}, False), ({"phase": "Succeeded"}, False), ({"terminating": True}, False)],
)
def test_wants_scheduling(pod_kw: dict[str, object], wants: bool) -> None:
    kw: dict[str, object] = {"node": "", **pod_kw}
    assert sc.wants_scheduling(pod("p", **kw)) is wants  # type: ignore[arg-type]
    other = pod("p", node="")
    other["spec"]["schedulerName"] = "custom"
    assert not sc.wants_scheduling(other)


def hb_node(name: str, age: float) -> Obj:
    n = node(name)
    n["status"]["conditions"][0]["lastHeartbeatTime"] = (NOW - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return n


def test_node_lifecycle_marks_stale_node_and_its_pods() -> None:
    fresh = nlc.reconcile_node(hb_node("n1", 10), [pod("a", node="n1")], NOW, 40.0)
    assert fresh.actions == () and fresh.requeue_after == pytest.approx(30.1)
    stale_node = hb_node("n1", 41)
    pods = [pod("a", node="n1"), pod("b", node="n1", ready=False)]
    res = nlc.reconcile_node(stale_node, pods, NOW, 40.0, evict=False)
    assert [(a.verb, a.plural, a.name) for a in res.actions] == [
        ("patch_status", "nodes", "n1"), ("patch", "nodes", "n1"), ("patch_status", "pods", "a")]
    cond = res.actions[0].body["status"]["conditions"][0]  # type: ignore[index]
    assert (cond["status"], cond["reason"], cond["message"]) == ("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    pod_patch = res.actions[2].body
    assert pod_patch == {"status": {"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T12:00:00Z"}]}}
    assert ("NodeNotReady", "Node n1 status is now: NodeNotReady") in [(e.reason, e.message) for e in res.events]
    # once applied, nothing more to do
    stale_node["status"]["conditions"] = res.actions[0].body["status"]["conditions"]  # type: ignore[index]
    stale_node.setdefault("spec", {})["taints"] = res.actions[1].body["spec"]["taints"]  # type: ignore[index]
    pods[0]["status"]["conditions"] = pod_patch["status"]["conditions"]  # type: ignore[index]
    assert not is_pod_ready(pods[0])
    assert nlc.reconcile_node(stale_node, pods, NOW, 40.0, evict=False).actions == ()
