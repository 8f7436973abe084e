"""Restart policy core: exit in, decision out (table-driven, no processes)."""

from __future__ import annotations

import pytest

from servicenet.node.restart import Restart, decide, effective_policy
from servicenet.node.status import Backoff

B = Backoff(base=10.0, cap=40.0, reset_after=600.0)


@pytest.mark.parametrize("pod_policy, init, want", [
    (None, False, "Always"), ("Always", False, "Always"), ("Always", True, "OnFailure"),
    ("OnFailure", True, "OnFailure"), ("Never", True, "Never"), ("Never", False, "Never"),
])
def test_effective_policy(pod_policy, init, want):
    assert effective_policy(pod_policy, init) == want


@pytest.mark.parametrize("policy, code, ran_for, count, action, delay, next_count", [
    ("Never", 1, 1.0, 0, Restart.NEVER, 0.0, 0),
    ("Never", 0, 1.0, 3, Restart.NEVER, 0.0, 3),
    ("OnFailure", 0, 1.0, 2, Restart.NEVER, 0.0, 2),        # success rests
    ("OnFailure", 1, 1.0, 0, Restart.NOW, 0.0, 1),          # first restart is immediate
    ("Always", 0, 1.0, 0, Restart.NOW, 0.0, 1),
    ("Always", 0, 1.0, 1, Restart.LATER, 10.0, 2),          # then base ...
    ("Always", 2, 1.0, 2, Restart.LATER, 20.0, 3),          # ... doubling ...
    ("Always", 2, 1.0, 5, Restart.LATER, 40.0, 6),          # ... up to the cap
    ("Always", 2, 600.0, 5, Restart.NOW, 0.0, 1),           # a long run resets the backoff
])
def test_decide(policy, code, ran_for, count, action, delay, next_count):
    d = decide(policy, code, ran_for, count, B)
    assert (d.action, d.delay, d.backoff_count) == (action, delay, next_count)
