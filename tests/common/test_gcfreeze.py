"""When a component's caches are frozen out of the collector's full passes (servicenet.common.gcfreeze)."""

from __future__ import annotations

import gc
import weakref

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
