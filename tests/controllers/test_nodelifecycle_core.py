"""Node lifecycle core: observed heartbeats, taints by Ready state, taint eviction (table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from servicenet.api.tolerations import add_default_tolerations
from servicenet.controllers import nodelifecycle_core as nlc
from servicenet.controllers.actions import Obj

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
UNREACH_NS = {"key": nlc.UNREACHABLE, "effect": "NoSchedule"}


def ts(age: float) -> str:
    return (NOW - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%SZ")


def mknode(ready: str = "True", taints: list[Obj] | None = None, hb: str | None = "2026-01-01T11:59:55Z") -> Obj:
    cond: Obj = {"type": "Ready", "status": ready}
    if hb:
        cond["lastHeartbeatTime"] = hb
    n: Obj = {"metadata": {"name": "n1", "creationTimestamp": "2026-01-01T11:00:00Z"},
              "status": {"conditions": [cond]}, "spec": {}}
    if taints is not None:
        n["spec"]["taints"] = taints
    return n


def mklease(renew: str | None) -> Obj:
    return {"metadata": {"name": "n1", "namespace": "kube-node-lease"}, "spec": {"renewTime": renew}}


def mkpod(name: str, tolerations: list[Obj] | None = None, ready: bool = True, deleting: bool = False) -> Obj:
    md: Obj = {"name": name, "namespace": "default"}
    if deleting:
        md["deletionTimestamp"] = ts(1)
    return {"metadata": md, "spec": {"nodeName": "n1", "tolerations": tolerations or []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


# -- observe: the controller's own clock ----------------------------------------------------------------------

OBSERVE = [
    # (previous health, lease renewTime now, Ready heartbeat now, expected probe age in seconds)
    (None, "a", "h", 0),                                         # first sight: a full grace period from now
    (nlc.Health("h", "a", NOW - timedelta(seconds=30)), "a", "h", 30),  # nothing moved: probe stays
    (nlc.Health("h", "a", NOW - timedelta(seconds=30)), "b", "h", 0),   # lease renewed: probe = now
    (nlc.Health("h", "a", NOW - timedelta(seconds=30)), "a", "h2", 0),  # status heartbeat: probe = now
    (nlc.Health("h", None, NOW - timedelta(seconds=30)), None, "h", 30),  # no lease at all
]


@pytest.mark.parametrize(("prev", "renew", "hb", "age"), OBSERVE)
def test_observe(prev: nlc.Health | None, renew: str | None, hb: str, age: float) -> None:
    h = nlc.observe(prev, mknode(hb=hb), mklease(renew) if renew else None, NOW)
    assert (NOW - h.probe).total_seconds() == age
    assert (h.lease_renew, h.ready_heartbeat) == (renew, hb)


def test_skewed_renew_time_does_not_matter() -> None:
    """A renewTime far in the past (other machine's clock) is still a fresh heartbeat once it changes."""
    prev = nlc.Health(None, "1999-01-01T00:00:00.000001Z", NOW - timedelta(seconds=100))
    h = nlc.observe(prev, mknode(hb=None), mklease("1999-01-01T00:00:10.000001Z"), NOW)
    assert not nlc.is_stale(mknode(hb=None), NOW, 40.0, h)


# -- taints by Ready state ----------------------------------------------------------------------------------

OTHER = {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
TAINTS = [
    # (observed state, current taints, expected taints (None = unchanged))
    ("True", [], None),
    ("True", [OTHER], None),
    ("Unknown", [], [UNREACH_NS, {"key": nlc.UNREACHABLE, "effect": "NoExecute", "timeAdded": "2026-01-01T12:00:00Z"}]),
    ("False", [OTHER], [OTHER, {"key": nlc.NOT_READY, "effect": "NoSchedule"},
                        {"key": nlc.NOT_READY, "effect": "NoExecute", "timeAdded": "2026-01-01T12:00:00Z"}]),
    # Unknown -> False swaps the pair; False -> True clears it, keeping others
    ("False", [UNREACH_NS, {"key": nlc.UNREACHABLE, "effect": "NoExecute"}],
     [{"key": nlc.NOT_READY, "effect": "NoSchedule"},
      {"key": nlc.NOT_READY, "effect": "NoExecute", "timeAdded": "2026-01-01T12:00:00Z"}]),
    ("True", [OTHER, {"key": nlc.NOT_READY, "effect": "NoExecute"}], [OTHER]),
    # already tainted: the original timeAdded is kept (no write)
    ("Unknown", [UNREACH_NS, {"key": nlc.UNREACHABLE, "effect": "NoExecute", "timeAdded": ts(100)}], None),
    ("", [], None),  # node never reported: leave it alone
]


@pytest.mark.parametrize(("state", "cur", "want"), TAINTS)
def test_desired_taints(state: str, cur: list[Obj], want: list[Obj] | None) -> None:
    assert nlc.desired_taints(mknode(taints=cur), state, NOW) == want


# -- eviction ----------------------------------------------------------------------------------------------

NOEXEC_NOW = {"key": nlc.UNREACHABLE, "effect": "NoExecute", "timeAdded": ts(0)}
NOEXEC_100 = {"key": nlc.UNREACHABLE, "effect": "NoExecute", "timeAdded": ts(100)}


def tol(key: str | None = nlc.UNREACHABLE, seconds: int | None = None, op: str = "Exists",
        effect: str = "NoExecute") -> Obj:
    t: Obj = {"operator": op, "effect": effect}
    if key:
        t["key"] = key
    if seconds is not None:
        t["tolerationSeconds"] = seconds
    return t


EVICT: list[tuple[str, list[Obj], list[Obj], Any]] = [
    ("no NoExecute taint", [UNREACH_NS], [], None),
    ("not tolerated: now", [NOEXEC_NOW], [], 0.0),
    ("tolerated forever", [NOEXEC_NOW], [tol()], None),
    ("300 s from timeAdded", [NOEXEC_NOW], [tol(seconds=300)], 300.0),
    ("300 s, 100 s gone", [NOEXEC_100], [tol(seconds=300)], 200.0),
    ("expired", [NOEXEC_100], [tol(seconds=50)], 0.0),
    ("wildcard tolerates all", [NOEXEC_NOW], [tol(key=None)], None),
    ("NoSchedule toleration does not count", [NOEXEC_NOW], [tol(effect="NoSchedule")], 0.0),
    ("unbounded beside bounded: forever", [NOEXEC_NOW], [tol(seconds=5), tol(key=None)], None),
    ("other taint untolerated", [NOEXEC_NOW, {"key": "x", "effect": "NoExecute"}], [tol(seconds=300)], 0.0),
    ("the shortest of two taints", [NOEXEC_NOW, {"key": nlc.NOT_READY, "effect": "NoExecute", "timeAdded": ts(0)}],
     [tol(seconds=300), tol(key=nlc.NOT_READY, seconds=30)], 30.0),
]


@pytest.mark.parametrize(("why", "taints", "tols", "want"), EVICT, ids=[e[0] for e in EVICT])
def test_eviction_delay(why: str, taints: list[Obj], tols: list[Obj], want: float | None) -> None:
    assert nlc.eviction_delay(mkpod("p", tols), taints, NOW) == want


# -- the whole pass ----------------------------------------------------------------------------------------


def test_lost_node_pass_marks_taints_and_unready_then_evicts_after_toleration() -> None:
    health = nlc.Health("x", "y", NOW - timedelta(seconds=41))
    spec: Obj = {}
    add_default_tolerations(spec, 300, 300)
    pods = [mkpod("tolerant", spec["tolerations"]), mkpod("bare"), mkpod("gone", deleting=True)]
    res = nlc.reconcile_node(mknode(), pods, NOW, 40.0, health)
    verbs = [(a.verb, a.plural, a.name) for a in res.actions]
    assert verbs == [("patch_status", "nodes", "n1"), ("patch", "nodes", "n1"),
                     ("patch_status", "pods", "tolerant"), ("patch_status", "pods", "bare"),
                     ("patch_status", "pods", "gone"), ("delete", "pods", "bare")]
    assert res.requeue_after == pytest.approx(300.05)
    assert ("TaintManagerEviction", "Marking for deletion Pod default/bare") in [(e.reason, e.message) for e in res.events]
    # 300 s later, with the taint applied, the tolerant pod goes too
    tainted = mknode("Unknown", taints=[UNREACH_NS, {**NOEXEC_NOW, "timeAdded": ts(300)}])
    res2 = nlc.reconcile_node(tainted, [mkpod("tolerant", spec["tolerations"], ready=False)], NOW, 40.0, health)
    assert [(a.verb, a.name) for a in res2.actions] == [("delete", "tolerant")]


def test_fresh_node_requeues_at_grace_end() -> None:
    health = nlc.Health("x", "y", NOW - timedelta(seconds=15))
    res = nlc.reconcile_node(mknode(), [mkpod("a")], NOW, 40.0, health)
    assert res.actions == () and res.requeue_after == pytest.approx(25.1)


def test_returning_node_loses_taints() -> None:
    health = nlc.Health("x", "y", NOW)
    n = mknode("True", taints=[UNREACH_NS, NOEXEC_100])
    res = nlc.reconcile_node(n, [mkpod("a", ready=False)], NOW, 40.0, health)
    assert [(a.verb, a.body) for a in res.actions] == [("patch", {"spec": {"taints": []}})]


DEFAULT_TOLS = [
    # (existing tolerations, (not-ready s, unreachable s), added keys)
    ([], (300, 300), [(nlc.NOT_READY, 300), (nlc.UNREACHABLE, 300)]),
    ([tol(key=None)], (300, 300), []),
    ([tol(seconds=10)], (300, 300), [(nlc.NOT_READY, 300)]),
    ([tol(key=nlc.NOT_READY, effect="NoSchedule")], (60, 30), [(nlc.NOT_READY, 60), (nlc.UNREACHABLE, 30)]),
    ([], (None, 5), [(nlc.UNREACHABLE, 5)]),
]


@pytest.mark.parametrize(("existing", "secs", "added"), DEFAULT_TOLS)
def test_default_toleration_seconds(existing: list[Obj], secs: tuple[int | None, int | None],
                                    added: list[tuple[str, int]]) -> None:
    spec: Obj = {"tolerations": list(existing)}
    add_default_tolerations(spec, *secs)
    new = spec["tolerations"][len(existing):]
    assert [(t["key"], t["tolerationSeconds"]) for t in new] == added
    assert all(t["effect"] == "NoExecute" and t["operator"] == "Exists" for t in new)
