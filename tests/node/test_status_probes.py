"""Probe state machine (fake clock), pod phase/conditions and CrashLoopBackOff timing (pure)."""

from __future__ import annotations

import pytest

from servicenet.node.probes import ProbeKind, ProbeSpec, ProbeTracker
from servicenet.node.status import (
    Backoff,
    compute_pod_status,
    pod_phase,
    running_state,
    terminated_state,
    waiting_state,
)


def spec(kind: ProbeKind = ProbeKind.READINESS, **kw: float) -> ProbeSpec:
    return ProbeSpec(kind=kind, handler={"tcpSocket": {"port": 80}}, **kw)  # type: ignore[arg-type]


def test_readiness_thresholds_and_schedule() -> None:
    t = ProbeTracker(spec(initial_delay=5, period=2, success_threshold=2, failure_threshold=3), started_at=100)
    assert t.result is False and t.due() == 105
    assert t.observe(True, 105) is None and t.due() == 107
    assert t.observe(True, 107) is True and t.result is True
    assert t.observe(False, 109) is None
    assert t.observe(False, 111) is None
    assert t.observe(True, 113) is None  # a success resets the failure run
    assert [t.observe(False, x) for x in (115, 117, 119)] == [None, None, False]
    assert t.due() == 121


def test_liveness_starts_healthy_and_late_probe_reschedules_from_now() -> None:
    t = ProbeTracker(spec(ProbeKind.LIVENESS, period=10, failure_threshold=1), started_at=0)
    assert t.result is True and t.due() == 0
    assert t.observe(False, 0.5) is False
    assert t.observe(True, 30) is True and t.due() == 30  # fell behind: next probe now


def test_probe_defaults_from_container() -> None:
    c = {"readinessProbe": {"httpGet": {"path": "/", "port": 80}}}
    s = ProbeSpec.from_container(c, ProbeKind.READINESS)
    assert s is not None
    assert (s.initial_delay, s.period, s.timeout, s.success_threshold, s.failure_threshold) == (0, 10, 1, 1, 3)
    assert ProbeSpec.from_container(c, ProbeKind.LIVENESS) is None


def test_backoff_timing() -> None:
    b = Backoff()
    assert [b.delay(n) for n in range(8)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert b.next_count(5, ran_for=601) == 0 and b.next_count(5, ran_for=30) == 5
    assert Backoff(base=0.1, cap=0.4).delay(4) == 0.4


def cs(name: str, state: dict, ready: bool = False, last: dict | None = None) -> dict:
    return {"name": name, "state": state, "ready": ready, "restartCount": 0, "lastState": last or {}}


RUN = running_state("2024-01-01T00:00:00Z")
OK = terminated_state(0, None, "2024-01-01T00:00:01Z")
BAD = terminated_state(1, None, "2024-01-01T00:00:01Z")


@pytest.mark.parametrize(("policy", "states", "phase"), [
    ("Always", [waiting_state("ContainerCreating")], "Pending"),
    ("Always", [RUN], "Running"),
    ("Always", [OK], "Running"),
    ("Never", [OK], "Succeeded"),
    ("Never", [BAD], "Failed"),
    ("OnFailure", [BAD], "Running"),
    ("OnFailure", [OK, OK], "Succeeded"),
    ("Never", [RUN, OK], "Running"),
])
def test_phase(policy: str, states: list[dict], phase: str) -> None:
    sp = {"restartPolicy": policy, "containers": [{"name": f"c{i}"} for i in range(len(states))]}
    assert pod_phase(sp, [], [cs(f"c{i}", s) for i, s in enumerate(states)]) == phase


def test_crashloop_waiting_counts_as_running() -> None:
    sp = {"containers": [{"name": "c"}]}
    assert pod_phase(sp, [], [cs("c", waiting_state("CrashLoopBackOff"), last=BAD)]) == "Running"
    assert pod_phase(sp, [cs("init", RUN)], []) == "Pending"


def test_conditions_ready_gates_and_transition_times() -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}],
                                               "readinessGates": [{"conditionType": "example.com/lb"}]},
           "status": {"conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "T0"}]}}
    kw = dict(init_statuses=[], pod_ips=["10.244.0.5"], host_ip="10.244.0.1", sandbox_ready=True, start_time="T0")
    st = compute_pod_status(pod, statuses=[cs("a", RUN, True), cs("b", RUN, False)], now="T1", **kw)
    conds = {c["type"]: c for c in st["conditions"]}
    assert [c["type"] for c in st["conditions"]] == ["PodScheduled", "PodReadyToStartContainers", "Initialized",
                                                     "ContainersReady", "Ready"]
    assert conds["ContainersReady"]["message"] == "containers with unready status: [b]"
    assert conds["Ready"]["reason"] == "ContainersNotReady"
    assert st["podIP"] == "10.244.0.5" and st["podIPs"] == [{"ip": "10.244.0.5"}] and st["phase"] == "Running"
    pod["status"] = st
    st2 = compute_pod_status(pod, statuses=[cs("a", RUN, True), cs("b", RUN, True)], now="T2", **kw)
    conds2 = {c["type"]: c for c in st2["conditions"]}
    assert conds2["ContainersReady"]["status"] == "True" and conds2["ContainersReady"]["lastTransitionTime"] == "T2"
    assert conds2["Initialized"]["lastTransitionTime"] == "T1"
    assert conds2["Ready"]["reason"] == "ReadinessGatesNotReady"
    assert conds2["Ready"]["message"] == 'corresponding condition of pod readiness gate "example.com/lb" does not exist.'
    pod["status"] = {**st2, "conditions": st2["conditions"] + [{"type": "example.com/lb", "status": "True"}]}
    st3 = compute_pod_status(pod, statuses=[cs("a", RUN, True), cs("b", RUN, True)], now="T3", **kw)
    conds3 = {c["type"]: c for c in st3["conditions"]}
    assert conds3["Ready"]["status"] == "True" and conds3["example.com/lb"]["status"] == "True"
