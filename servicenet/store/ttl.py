"""Objects with a time to live, as kube-apiserver stores Events (pure: no I/O, no clock of its own).

Upstream writes every Event with a time to live (``--event-ttl``, one hour by default), refreshed by
each write of the object, so that Events never pile up. On etcd the store attaches each such write
to an etcd lease (:mod:`._etcdlease`), and etcd deletes the key when the lease runs out. SQLite and
memory have no leases: the store keeps each key's deadline here and deletes the key once the
deadline has passed, unless it was written again meanwhile. A deadline lives only in memory; after a
restart every key of a TTL prefix gets a whole time to live again, so an object may outlive its TTL
by up to one TTL, never the other way round.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping


class TTLPolicy:
    """Which keys have a time to live: ``{key prefix: seconds}``."""

    def __init__(self, prefixes: Mapping[str, float] | None = None) -> None:
        for p, s in (prefixes or {}).items():
            if not p.endswith("/") or s <= 0:
                raise ValueError(f"a TTL prefix ends with '/' and has a positive TTL: {p!r}: {s!r}")
        self.prefixes = dict(prefixes or {})

    def __bool__(self) -> bool:
        return bool(self.prefixes)

    def seconds(self, key: str) -> float | None:
        """The time to live of ``key``, or ``None`` if it has none."""
        for p, s in self.prefixes.items():
            if key.startswith(p):
                return s
        return None


class Expiry:
    """Deadlines of keys: :meth:`due` gives every key whose deadline has passed, with the revision
    whose write set that deadline (delete it only if it is still at that revision)."""

    def __init__(self) -> None:
        self._at: dict[str, tuple[float, int]] = {}  # key -> (deadline, mod_revision)
        self._heap: list[tuple[float, str, int]] = []  # entries go stale when a key is written again

    def __len__(self) -> int:
        return len(self._at)

    def touch(self, key: str, mod_revision: int, deadline: float) -> None:
        self._at[key] = (deadline, mod_revision)
        heapq.heappush(self._heap, (deadline, key, mod_revision))

    def touch_all(self, keys: Iterable[tuple[str, int]], deadline: float) -> None:
        for key, rev in keys:
            self.touch(key, rev, deadline)

    def forget(self, key: str) -> None:
        self._at.pop(key, None)

    def due(self, now: float) -> list[tuple[str, int]]:
        """The keys whose deadline is ``now`` or earlier, with their revision; they are forgotten
        (a key that survives its delete, because it was written again, is touched by that write)."""
        out: list[tuple[str, int]] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, key, rev = heapq.heappop(heap)
            if self._at.get(key) == (deadline, rev):
                del self._at[key]
                out.append((key, rev))
        return out
