"""The node Lease's renew timing: the kubelet's 0-4 % jitter after each renew, and a first delay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from servicenet.client import ApiError
from servicenet.node import lease as lease_mod
from servicenet.node.lease import JITTER, NodeLease, renew_wait


def test_renew_wait_stretches_the_interval_by_at_most_the_jitter() -> None:
    assert renew_wait(10.0, JITTER, 0.0) == 10.0
    assert renew_wait(10.0, JITTER, 0.5) == pytest.approx(10.2)
    assert renew_wait(10.0, JITTER, 0.999) < 10.4
    assert renew_wait(10.0, 0.0, 0.7) == 10.0


class _Client:
    """Answers the Lease calls NodeLease makes: the node, a missing Lease, then creates/updates."""

    def __init__(self) -> None:
        self.writes = 0

    async def get(self, api: str, plural: str, ns: str | None, name: str) -> dict[str, Any]:
        if plural == "nodes":
            return {"metadata": {"name": name, "uid": "u1"}}
        raise ApiError(404, {"reason": "NotFound", "message": "no lease"})

    async def create(self, api: str, plural: str, ns: str | None, body: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        return body

    async def update(self, api: str, plural: str, ns: str | None, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.writes += 1
        return body


async def test_run_waits_first_delay_then_jittered_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    client = _Client()

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 4:
            raise asyncio.CancelledError

    monkeypatch.setattr(lease_mod.asyncio, "sleep", fake_sleep)
    draws = iter([0.0, 0.5, 1.0])
    nl = NodeLease(client, "n1", duration=40, draw=lambda: next(draws))
    with pytest.raises(asyncio.CancelledError):
        await nl.run(first_delay=3.5)
    # the first delay comes before any write; then one wait per renew, each 10 s stretched by 0, 2 and 4 %
    assert waits == [3.5, 10.0, pytest.approx(10.2), pytest.approx(10.4)]
    assert client.writes == 3 and nl.renewals == 3
