"""When a component's caches are frozen out of the collector's full passes (servicenet.common.gcfreeze)."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from servicenet.common import gcfreeze
from servicenet.common.gcfreeze import FreezePolicy, freeze


def checks(policy: FreezePolicy, sizes: list[int], relists: int = 1) -> list[int]:
    """The sizes at which a check every few seconds freezes."""
    out = []
    for n in sizes:
        if policy.due(n, relists):
            policy.record(n, relists)
            out.append(n)
    return out


def test_small_caches_are_left_to_the_collector() -> None:
    assert checks(FreezePolicy(min_objects=5_000), [10, 4_999, 4_999]) == []


def test_frozen_once_big_enough_then_at_each_doubling_and_once_more_when_loading_stops() -> None:
    # a cluster being loaded: the caches grow by 1,000 objects per check, then stay at 45,000
    sizes = list(range(1_000, 45_001, 1_000)) + [45_000] * 5
    assert checks(FreezePolicy(), sizes) == [5_000, 10_000, 20_000, 40_000, 45_000]


def test_a_load_with_pauses_freezes_at_each_pause_past_the_settle_threshold() -> None:
    sizes = [6_000, 6_000, 6_200, 6_200, 6_400, 6_400, 6_600, 6_600]
    assert checks(FreezePolicy(), sizes) == [6_000, 6_400]


def test_steady_churn_does_not_freeze_again() -> None:
    p = FreezePolicy()
    checks(p, [40_000])
    # pods come and go by a few hundred: under the settle threshold (5 %), held still or not
    assert checks(p, [40_300, 40_300, 39_800, 39_800, 41_900, 41_900]) == []


def test_a_relist_replaces_every_object_and_freezes_again() -> None:
    p = FreezePolicy()
    checks(p, [40_000], relists=9)
    assert checks(p, [40_000], relists=9) == []
    assert checks(p, [40_000], relists=10) == [40_000]


def test_a_shrinking_cluster_freezes_again() -> None:
    p = FreezePolicy()
    checks(p, [40_000])
    # held still 11,000 lower, then halved while moving
    assert checks(p, [35_000, 29_000, 29_000, 20_000, 14_000]) == [29_000, 14_000]


def test_freeze_collects_first_and_the_next_freeze_collects_what_died_frozen() -> None:
    class Cycle:
        def __init__(self) -> None:
            self.me = self

    gc.unfreeze()
    try:
        garbage = Cycle()
        dead = weakref.ref(garbage)
        del garbage
        kept = Cycle()
        later = weakref.ref(kept)
        freeze()
        assert dead() is None  # collected before freezing: no garbage is frozen
        assert gc.get_freeze_count() > 0
        del kept  # a frozen cycle that dies: plain collections no longer see it
        gc.collect()
        assert later() is not None
        freeze()  # undoes the previous freeze before collecting
        assert later() is None
    finally:
        gc.unfreeze()


async def test_components_in_one_process_share_a_freeze(monkeypatch: pytest.MonkeyPatch) -> None:
    """``servicenet up`` runs the API server and the controller manager in one process: a freeze
    by one keeper moves both components' caches, so the other keeper records it and does not run a
    second full collection for the same objects."""
    calls: list[str] = []
    monkeypatch.setattr(gcfreeze, "freeze", lambda: calls.append("freeze") or 0.0)
    api, cm = gcfreeze.FreezePolicy(), gcfreeze.FreezePolicy()
    sizes = {"api": 0, "cm": 0}  # both keepers running before their caches fill
    k1 = asyncio.create_task(gcfreeze.keep(lambda: (sizes["api"], 1), api, 0.01))
    k2 = asyncio.create_task(gcfreeze.keep(lambda: (sizes["cm"], 1), cm, 0.01))
    try:
        await asyncio.sleep(0.05)
        assert calls == []
        sizes.update(api=20_000, cm=30_000)  # a cluster loaded at once
        deadline = asyncio.get_running_loop().time() + 5
        while api.freezes == 0 or cm.freezes == 0:
            assert asyncio.get_running_loop().time() < deadline, (api, cm)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # several more checks of both: nothing new to freeze
        assert calls == ["freeze"]
        assert (api.frozen_at, cm.frozen_at) == (20_000, 30_000)
        sizes["cm"] = 70_000  # one component's caches more than double: one more freeze, for both
        while cm.frozen_at != 70_000:
            assert asyncio.get_running_loop().time() < deadline + 5
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert calls == ["freeze", "freeze"]
        assert api.freezes == cm.freezes == 2
    finally:
        for k in (k1, k2):
            k.cancel()
        await asyncio.gather(k1, k2, return_exceptions=True)
    assert gcfreeze._keepers == []  # noqa: SLF001
