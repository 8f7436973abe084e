"""The sync planner, driven by tables of events (no sockets, no clock): the rules in planner.py."""

from __future__ import annotations

import pytest

from servicenet.proxy.planner import (
    Event,
    NodeChanged,
    Plan,
    RoutesAdded,
    ServiceChanged,
    SliceChanged,
    SyncDone,
    SyncFailed,
    SyncKind,
    SyncPlanner,
)

FULL, PARTIAL = SyncKind.FULL, SyncKind.PARTIAL
PERIOD = 3600.0
A, B, C = ("ns", "a"), ("ns", "b"), ("other", "c")


class Ok:
    """The previous plan's sync succeeded at ``at``."""

    def __init__(self, at: float = 0.0) -> None:
        self.at = at


class Fail:
    """The previous plan's sync failed."""


class Next:
    """Take the next plan at ``now``."""

    def __init__(self, now: float = 1.0) -> None:
        self.now = now


Step = Event | Ok | Fail | Next


def _run(steps: list[Step], kernel: bool = False) -> list[Plan]:
    """Feed ``steps``; each :class:`Next` takes a plan, :class:`Ok`/:class:`Fail` report on the last one."""
    planner = SyncPlanner(PERIOD, kernel)
    plans: list[Plan] = []
    for step in steps:
        if isinstance(step, Next):
            plans.append(planner.next(step.now))
        elif isinstance(step, Ok):
            planner.event(SyncDone(plans[-1], step.at))
        elif isinstance(step, Fail):
            planner.event(SyncFailed(plans[-1]))
        else:
            planner.event(step)
    return plans


def P(kind: SyncKind, services: set[tuple[str, str]] = frozenset(), routes: bool = False,  # type: ignore[assignment]
      reason: str = "changes") -> Plan:
    return Plan(kind, frozenset(services), routes, reason)


# (name, steps, kernel mode, the plans handed out)
CASES: list[tuple[str, list[Step], bool, list[Plan]]] = [
    ("the first sync is full", [Next()], False, [P(FULL, reason="first")]),
    ("then partial, with nothing to recompute", [Next(), Ok(), Next()], False,
     [P(FULL, reason="first"), P(PARTIAL)]),
    ("a service event touches that service",
     [Next(), Ok(), ServiceChanged(*A), ServiceChanged(*A), Next()], False,
     [P(FULL, reason="first"), P(PARTIAL, {A})]),
    ("a slice touches the service its label names; an unlabelled one touches none",
     [Next(), Ok(), SliceChanged("ns", "b"), SliceChanged("ns", ""), ServiceChanged(*C), Next()], False,
     [P(FULL, reason="first"), P(PARTIAL, {B, C})]),
    ("events before the first sync still ride along with it",
     [ServiceChanged(*A), Next(), Ok(), Next()], False,
     [P(FULL, {A}, reason="first"), P(PARTIAL)]),
    ("each plan takes the work pending so far; later events wait for the next",
     [Next(), Ok(), ServiceChanged(*A), Next(), ServiceChanged(*B), Ok(), Next(), Ok(), Next()], False,
     [P(FULL, reason="first"), P(PARTIAL, {A}), P(PARTIAL, {B}), P(PARTIAL)]),
    ("a failed sync: the next is full and keeps the failed one's services",
     [Next(), Ok(), ServiceChanged(*A), Next(), ServiceChanged(*B), Fail(), Next(), Ok(), Next()], False,
     [P(FULL, reason="first"), P(PARTIAL, {A}), P(FULL, {A, B}, reason="failed"), P(PARTIAL)]),
    ("a failed first sync is retried as a full one",
     [Next(), Fail(), Next()], False, [P(FULL, reason="first"), P(FULL, reason="failed")]),
    ("a Node label change forces a full sync",
     [Next(), Ok(), NodeChanged(labels_changed=True), Next(), Ok(), Next()], False,
     [P(FULL, reason="first"), P(FULL, reason="node labels"), P(PARTIAL)]),
    ("a Node heartbeat (no label or address news) changes nothing",
     [Next(), Ok(), NodeChanged(), Next()], False, [P(FULL, reason="first"), P(PARTIAL)]),
    ("a label change during a full sync is not lost",
     [Next(), NodeChanged(labels_changed=True), Ok(), Next()], False,
     [P(FULL, reason="first"), P(FULL, reason="node labels")]),
    ("the full resync period counts from the last successful full sync",
     [Next(), Ok(at=10.0), Next(now=10.0 + PERIOD), Ok(at=10.0 + PERIOD), Next(now=10.5 + PERIOD),
      Ok(at=10.5 + PERIOD), Next(now=11.0 + PERIOD)], False,
     [P(FULL, reason="first"), P(PARTIAL), P(FULL, reason="period"), P(PARTIAL)]),
    ("a partial sync does not restart the period",
     [Next(), Ok(at=0.0), Next(now=5.0), Ok(at=5.0), Next(now=PERIOD + 1)], False,
     [P(FULL, reason="first"), P(PARTIAL), P(FULL, reason="period")]),
    ("kernel mode: routes are due from the start until they are added",
     [Next(), Ok(), Next(), RoutesAdded(), Ok(), Next()], True,
     [P(FULL, routes=True, reason="first"), P(PARTIAL, routes=True), P(PARTIAL)]),
    ("kernel mode: the Node's addresses learned late: full sync and routes",
     [RoutesAdded(), Next(), Ok(), NodeChanged(addresses_learned=True), Next(), RoutesAdded(), Ok(), Next()], True,
     [P(FULL, reason="first"), P(FULL, routes=True, reason="node addresses"), P(PARTIAL)]),
    ("userspace mode never adds routes",
     [Next(), Ok(), NodeChanged(addresses_learned=True), Next()], False,
     [P(FULL, reason="first"), P(FULL, reason="node addresses")]),
]


@pytest.mark.parametrize("steps, kernel, want", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plans(steps: list[Step], kernel: bool, want: list[Plan]) -> None:
    assert _run(steps, kernel) == want


def test_not_an_event() -> None:
    with pytest.raises(TypeError):
        SyncPlanner(PERIOD, False).event("service")  # type: ignore[arg-type]
