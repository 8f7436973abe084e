"""Deployment + ReplicaSet cores driven together in a simulated cluster (no I/O)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest
from ctrl_fixtures import FakeStore

from servicenet.controllers import deployment_core as dc
from servicenet.controllers import replicaset_core as rc
from servicenet.controllers.actions import Action, Obj, is_active, is_controlled_by, is_pod_ready


def deployment(replicas: int = 3, image: str = "v1", strategy: Obj | None = None, **spec: object) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-deploy-web", "generation": 1, "annotations": {}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": image}]}},
            "strategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            **spec,
        },
    }


class Sim:
    """Deployment, ReplicaSet controllers and a kubelet that makes pods ready after ``delay`` steps."""

    def __init__(self, d: Obj, delay: int = 1) -> None:
        self.deploys = FakeStore([d])
        self.rss = FakeStore()
        self.pods = FakeStore()
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.delay = delay
        self.birth: dict[str, int] = {}
        self.tick = 0
        self.events: list[str] = []
        self.ready_history: list[int] = []
        self.total_history: list[int] = []

    @property
    def d(self) -> Obj:
        return self.deploys.list()[0]

    def store(self, a: Action) -> FakeStore:
        return {"deployments": self.deploys, "replicasets": self.rss, "pods": self.pods}[a.plural]

    def apply(self, actions: tuple[Action, ...]) -> None:
        for a in actions:
            out = self.store(a).apply([a])
            if a.event:
                self.events.append(a.event.reason + ": " + a.event.message.format(name=out[0]["metadata"]["name"] if out else a.name))

    def step(self) -> None:
        self.tick += 1
        self.now += timedelta(seconds=1)
        d = self.d
        self.apply(dc.reconcile(d, [rs for rs in self.rss.list() if is_controlled_by(rs, d)], self.now).actions)
        for rs in self.rss.list():
            owned = [p for p in self.pods.list() if is_controlled_by(p, rs)]
            self.apply(rc.reconcile(rs, owned, self.now).actions)
        for p in self.pods.list():  # kubelet
            name = p["metadata"]["name"]
            self.birth.setdefault(name, self.tick)
            if not is_pod_ready(p) and self.tick - self.birth[name] >= self.delay:
                p["status"] = {
                    "phase": "Running",
                    "podIP": "10.244.0.1",
                    "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                }
                self.pods.objs[("default", name)] = p
        active = [p for p in self.pods.list() if is_active(p)]
        self.ready_history.append(sum(1 for p in active if is_pod_ready(p)))
        self.total_history.append(len(active))

    def run(self, steps: int = 40) -> None:
        for _ in range(steps):
            self.step()

    def set_template(self, image: str) -> None:
        d = self.d
        d["spec"]["template"]["spec"]["containers"][0]["image"] = image
        d["metadata"]["generation"] += 1
        self.deploys.objs[("default", "web")] = d

    def pods_by_rs(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pods.list():
            owner = p["metadata"]["ownerReferences"][0]["name"]
            out[owner] = out.get(owner, 0) + 1
        return out


def test_template_hash_is_stable_and_uses_safe_alphabet() -> None:
    t = deployment()["spec"]["template"]
    h = dc.template_hash(t)
    assert h == dc.template_hash(copy.deepcopy(t)) and set(h) <= set(dc.ALPHABET) and 6 <= len(h) <= 10
    t2 = copy.deepcopy(t)
    t2["metadata"]["labels"]["pod-template-hash"] = "zzz"
    assert dc.template_hash(t2) == h  # the hash label itself is ignored
    assert dc.template_hash(t, 1) != h
    assert dc.fnv32a(b"") == 0x811C9DC5 and dc.fnv32a(b"a") == 0xE40C292C


@pytest.mark.parametrize(
    "replicas,surge,unavail,expected",
    [(3, "25%", "25%", (1, 0)), (10, "25%", "25%", (3, 2)), (3, 0, 0, (0, 1)), (4, 1, "50%", (1, 2))],
)
def test_fenceposts(replicas: int, surge: object, unavail: object, expected: tuple[int, int]) -> None:
    d = deployment(replicas, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavail}})
    assert dc.resolve_fenceposts(d) == expected


def test_initial_rollout_creates_rs_and_pods() -> None:
    sim = Sim(deployment(3))
    sim.run(5)
    (rs,) = sim.rss.list()
    h = dc.template_hash(deployment()["spec"]["template"])
    assert rs["metadata"]["name"] == f"web-{h}"
    assert rs["metadata"]["labels"] == {"app": "web", "pod-template-hash": h}
    assert rs["spec"]["selector"] == {"matchLabels": {"app": "web", "pod-template-hash": h}}
    assert rs["metadata"]["annotations"][dc.REVISION] == "1"
    assert rs["metadata"]["ownerReferences"][0]["kind"] == "Deployment"
    pods = sim.pods.list()
    assert len(pods) == 3 and all(p["metadata"]["generateName"] == f"web-{h}-" for p in pods)
    d = sim.d
    assert d["metadata"]["annotations"][dc.REVISION] == "1"
    st = d["status"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == (3, 3, 3, 3)
    assert st["observedGeneration"] == 1
    conds = {c["type"]: (c["status"], c["reason"]) for c in st["conditions"]}
    assert conds == {"Available": ("True", "MinimumReplicasAvailable"), "Progressing": ("True", "NewReplicaSetAvailable")}
    assert f"ScalingReplicaSet: Scaled up replica set web-{h} from 0 to 3" in sim.events
    assert sum(e.startswith("SuccessfulCreate: Created pod: web-") for e in sim.events) == 3


@pytest.mark.parametrize(
    "replicas,surge,unavail,delay",
    [(3, "25%", "25%", 1), (3, 1, 0, 2), (10, "25%", "25%", 1), (10, 3, 2, 3), (5, 0, 1, 1), (1, 1, 0, 1)],
)
def test_rolling_update_respects_bounds_and_converges(replicas: int, surge: object, unavail: object, delay: int) -> None:
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavail}}
    sim = Sim(deployment(replicas, strategy=strategy), delay=delay)
    sim.run(10)
    max_surge, max_unavail = dc.resolve_fenceposts(sim.d)
    start = len(sim.ready_history)
    sim.set_template("v2")
    sim.run(60)
    during_ready = sim.ready_history[start:]
    during_total = sim.total_history[start:]
    assert min(during_ready) >= replicas - max_unavail, during_ready
    assert min(during_ready) >= 1
    assert max(during_total) <= replicas + max_surge, during_total
    new_name = f"web-{dc.template_hash(sim.d['spec']['template'])}"
    assert sim.pods_by_rs() == {new_name: replicas}
    st = sim.d["status"]
    assert (st["replicas"], st["updatedReplicas"], st["availableReplicas"], st["observedGeneration"]) == (replicas, replicas, replicas, 2)
    assert {c["type"]: c["reason"] for c in st["conditions"]}["Progressing"] == "NewReplicaSetAvailable"
    assert sim.d["metadata"]["annotations"][dc.REVISION] == "2"


def test_rollout_undo_reuses_old_rs_and_bumps_revision() -> None:
    sim = Sim(deployment(3))
    sim.run(8)
    sim.set_template("v2")
    sim.run(30)
    old_names = {rs["metadata"]["name"] for rs in sim.rss.list()}
    sim.set_template("v1")  # what kubectl rollout undo does: copy the old RS template back
    sim.run(30)
    assert {rs["metadata"]["name"] for rs in sim.rss.list()} == old_names
    by_rev = {rs["metadata"]["annotations"][dc.REVISION]: rs for rs in sim.rss.list()}
    assert sorted(by_rev) == ["2", "3"]
    assert by_rev["3"]["spec"]["template"]["spec"]["containers"][0]["image"] == "v1"
    assert by_rev["3"]["spec"]["replicas"] == 3 and by_rev["2"]["spec"]["replicas"] == 0
    assert sim.d["metadata"]["annotations"][dc.REVISION] == "3"


def test_recreate_never_overlaps() -> None:
    sim = Sim(deployment(3, strategy={"type": "Recreate"}))
    sim.run(6)
    sim.set_template("v2")
    versions_seen: list[set[str]] = []
    for _ in range(20):
        sim.step()
        versions_seen.append({p["spec"]["containers"][0]["image"] for p in sim.pods.list()})
    assert all(len(v) <= 1 for v in versions_seen)
    assert versions_seen[-1] == {"v2"} and len(sim.pods.list()) == 3


def test_revision_history_limit_deletes_oldest() -> None:
    sim = Sim(deployment(1, revisionHistoryLimit=1))
    for img in ["v2", "v3", "v4"]:
        sim.run(8)
        sim.set_template(img)
    sim.run(10)
    revs = sorted(int(rs["metadata"]["annotations"][dc.REVISION]) for rs in sim.rss.list())
    assert revs == [3, 4]


def test_scale_down_deletes_not_ready_then_newest() -> None:
    rs: Obj = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "r", "namespace": "default", "uid": "u-r", "generation": 2},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {}}},
        "status": {},
    }

    def p(name: str, ready: bool, node: str, ts: str) -> Obj:
        return {
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": ts},
            "spec": {"nodeName": node},
            "status": {"phase": "Running" if node else "Pending", "conditions": [{"type": "Ready", "status": str(ready), "lastTransitionTime": ts}]},
        }

    pods = [p("old-ready", True, "n", "2026-01-01T00:00:00Z"), p("new-ready", True, "n", "2026-01-02T00:00:00Z"),
            p("unready", False, "n", "2026-01-01T00:00:00Z"), p("unscheduled", False, "", "2026-01-01T00:00:00Z")]
    for q in pods:
        q["status"]["conditions"][0]["status"] = "True" if q["status"]["conditions"][0]["status"] == "True" else "False"
    res = rc.reconcile(rs, pods, datetime(2026, 1, 3, tzinfo=UTC))
    assert [(a.verb, a.name) for a in res.actions if a.plural == "pods"] == [("delete", "unscheduled"), ("delete", "unready")]
    rs["spec"]["replicas"] = 1
    res = rc.reconcile(rs, pods[:2], datetime(2026, 1, 3, tzinfo=UTC))
    assert [(a.verb, a.name) for a in res.actions if a.plural == "pods"] == [("delete", "new-ready")]
    status = [a for a in res.actions if a.verb == "patch_status"][0].body
    assert status == {"status": {"replicas": 2, "fullyLabeledReplicas": 0, "readyReplicas": 2, "availableReplicas": 2, "observedGeneration": 2}}
