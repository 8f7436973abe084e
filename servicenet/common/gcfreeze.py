"""Keep a component's long-lived caches out of the interpreter's full garbage collections.

A component that caches the cluster (the controller manager holds every Pod, Service,
EndpointSlice, Endpoints, Node and Lease) keeps millions of container objects that live until a
watch event replaces them. CPython's full collection walks every one of them, in one pause:
about 0.24 s for 30,000 cached pods on the benchmark machine (at load ~2), more with the rest of a
1,000-node cluster. It comes back in steady state too: whenever the objects that survived since
the last full collection reach a quarter of the rest, and cache entries replaced by watch events
(a Lease renewed every 10 s per node) are such survivors. A readiness change whose sync lands in
that pause waits for it. Go's collector, which upstream's controllers run on, is concurrent.

:class:`FreezePolicy` (pure) says when to move everything alive into the collector's permanent
generation; :func:`freeze` does it after a full collection, so no garbage is frozen, and undoes the
previous freeze first, so cyclic garbage frozen then is collected now. The policy freezes once the
caches hold ``min_objects``, again whenever they have grown or shrunk by ``change`` since the last
freeze (a cluster being loaded), and after a re-list (every cached object replaced). Frozen objects
are still freed by reference counting when a cache drops them; only reference cycles among them
wait for the next freeze.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

from servicenet.common import log

#: seconds between :func:`keep`'s looks at the caches' size (the API server and the controller manager)
CHECK_INTERVAL = 5.0

__all__ = ["FreezePolicy", "freeze", "keep"]

_log = log.get("gc")


@dataclass
class FreezePolicy:
    min_objects: int = 5_000
    change: float = 2.0  # a factor: doubled or halved
    settle: float = 0.05  # a share of the objects at the last freeze
    frozen_at: int = 0  # cached objects at the last freeze (0: never frozen)
    relists: int = 0  # the caches' re-list count at the last freeze
    seen: int = 0  # cached objects at the previous check
    freezes: int = 0

    def due(self, cached: int, relists: int) -> bool:
        """Freeze now, with ``cached`` objects in the caches and ``relists`` re-lists so far?
        (Called once per check: it remembers ``cached`` for the next.)"""
        still, self.seen = cached == self.seen, cached
        if cached < self.min_objects:
            return False
        if self.frozen_at == 0 or relists != self.relists:
            return True
        if cached >= self.change * self.frozen_at or cached * self.change <= self.frozen_at:
            return True
        return still and abs(cached - self.frozen_at) >= self.settle * self.frozen_at

    def record(self, cached: int, relists: int) -> None:
        self.frozen_at, self.relists = cached, relists
        self.freezes += 1


def freeze() -> float:
    """Collect everything (the previously frozen objects included), then freeze what is left;
    returns the pause in seconds."""
    t0 = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return time.perf_counter() - t0


Stats = Callable[[], tuple[int, int]]
_keepers: list[tuple[Stats, FreezePolicy]] = []  # the running keep() loops of this process


async def keep(stats: Stats, policy: FreezePolicy, interval: float) -> None:
    """Every ``interval`` seconds: ``stats()`` gives (cached objects, re-lists); freeze when the
    policy says so.

    Components that share a process (``servicenet up`` runs the API server and the controller
    manager in one) each keep their own policy, but a freeze is process-wide: it moves every
    component's objects at once. So a freeze is recorded by every keeper of the process, each
    with its own caches' size at that moment, instead of each component paying for another full
    collection right after."""
    me = (stats, policy)
    _keepers.append(me)
    try:
        while True:
            cached, relists = stats()
            if policy.due(cached, relists):
                pause = freeze()
                for their_stats, their_policy in _keepers:
                    n, r = (cached, relists) if their_policy is policy else their_stats()
                    if n >= their_policy.min_objects:
                        their_policy.record(n, r)
                _log.info("caches frozen out of the collector", objects=cached, pause_ms=round(pause * 1e3))
            await asyncio.sleep(interval)
    finally:
        _keepers.remove(me)
