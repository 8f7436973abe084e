"""Leader election: the pure acquire/renew decision (table) and the elector against a real API server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from servicenet.client import leaderelection as le
from servicenet.testing import running_apiserver

WALL = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
STAMP = "2026-01-01T12:00:00.123456Z"
OLD = "2025-12-31T00:00:00.000001Z"


def rec(holder: str, transitions: int = 0, duration: int = 15, renew: str = OLD) -> dict[str, Any]:
    return {"holderIdentity": holder, "leaseDurationSeconds": duration, "acquireTime": OLD, "renewTime": renew,
            "leaseTransitions": transitions}


CASES: list[tuple[str, Any, Any, float, str, dict[str, Any]]] = [
    # (why, current spec, observed, monotonic now, expected op, expected fields of the written spec)
    ("no lease: create", None, None, 100.0, "create",
     {"holderIdentity": "me", "leaseTransitions": 0, "acquireTime": STAMP, "renewTime": STAMP}),
    ("other holder, first seen: live for a full duration", rec("other"), None, 100.0, "wait", {}),
    ("other holder, seen 14 s ago unchanged: still live", rec("other"), le.Observed(rec("other"), 86.0), 100.0,
     "wait", {}),
    ("other holder, unchanged for 15 s: expired, take over", rec("other", 4), le.Observed(rec("other", 4), 85.0),
     100.0, "update", {"holderIdentity": "me", "leaseTransitions": 5, "acquireTime": STAMP, "renewTime": STAMP}),
    ("other holder renewed since: live again", rec("other", renew="x"), le.Observed(rec("other"), 0.0), 100.0,
     "wait", {}),
    ("my own lease: renew keeps acquireTime and transitions", rec("me", 2), le.Observed(rec("me", 2), 50.0), 100.0,
     "update", {"holderIdentity": "me", "leaseTransitions": 2, "acquireTime": OLD, "renewTime": STAMP}),
    ("released (empty holder): take over at once", rec("", 3, duration=1), None, 100.0, "update",
     {"holderIdentity": "me", "leaseTransitions": 4, "leaseDurationSeconds": 15}),
    # a renewTime from a skewed clock far in the future does not extend the lease: only the observer's clock counts
    ("skewed renewTime ignored", rec("other", renew="2099-01-01T00:00:00.000000Z"),
     le.Observed(rec("other", renew="2099-01-01T00:00:00.000000Z"), 80.0), 100.0, "update", {"holderIdentity": "me"}),
]


@pytest.mark.parametrize(("why", "cur", "obs", "mono", "op", "fields"), CASES, ids=[c[0] for c in CASES])
def test_try_acquire_or_renew(why: str, cur: Any, obs: Any, mono: float, op: str, fields: dict[str, Any]) -> None:
    step = le.try_acquire_or_renew(cur, obs, "me", 15.0, mono, WALL)
    assert step.op == op
    for k, v in fields.items():
        assert step.spec[k] == v, k
    if op == "wait":
        assert step.holder == "other" and step.observed is not None


def test_release_only_own() -> None:
    assert le.released(rec("other"), "me", WALL) is None
    out = le.released(rec("me", 3), "me", WALL)
    assert out is not None and (out["holderIdentity"], out["leaseDurationSeconds"], out["leaseTransitions"]) == ("", 1, 3)


def test_config_rules() -> None:
    le.Config(15, 10, 2).check()
    with pytest.raises(ValueError):
        le.Config(10, 10, 2).check()
    with pytest.raises(ValueError):
        le.Config(15, 2, 2).check()


async def test_two_electors_one_leader_then_takeover(tmp_path: Path) -> None:
    cfg = le.Config(lease_duration=2.0, renew_deadline=1.5, retry_period=0.2)
    async with running_apiserver(tmp_path) as api:
        a = le.LeaderElector(api.client, "kube-system", "x", "a", config=cfg)
        b = le.LeaderElector(api.client, "kube-system", "x", "b", config=cfg)
        assert await a.try_once() is True
        assert await b.try_once() is False and b.leader == "a"
        lease = await api.client.get("coordination.k8s.io/v1", "leases", "kube-system", "x")
        assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseTransitions"] == 0
        # a stops renewing; b takes over only once a's record has been unchanged for the lease duration
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.wait_for(b.acquire(), 10)
        waited = loop.time() - t0
        assert 2.0 <= waited <= 2.0 + 2 * cfg.retry_period * le.JITTER + 0.5, waited
        lease = await api.client.get("coordination.k8s.io/v1", "leases", "kube-system", "x")
        assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseTransitions"]) == ("b", 1)
        # a notices it lost (its renew sees b live) and b's release hands over immediately
        assert await a.try_once() is False
        await b.release()
        assert await a.try_once() is True
        lease = await api.client.get("coordination.k8s.io/v1", "leases", "kube-system", "x")
        assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseTransitions"]) == ("a", 2)
