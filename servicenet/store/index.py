"""The in-memory MVCC index: current state, ordered keys and a bounded window of history.

Pure core: no I/O, no clock (callers pass ``now``). Every backend applies committed events here in
revision order, and every read (get, list, list-at-revision, watch replay) is answered from here.

History invariant: ``history`` holds every committed event with revision > ``compact_revision``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator

from sortedcontainers import SortedList

from ._types import DELETED, Compacted, Event, FutureRevision, Record, Records

# Upper bound used to turn a prefix into a key range (no key contains this code point).
_TOP = "\U0010ffff"


class Index:
    def __init__(
        self,
        *,
        history_seconds: float = 300.0,
        min_history: int = 1000,
        max_history: int = 100_000,
        mark_interval: float = 1.0,
    ) -> None:
        if min_history < 0 or max_history < max(1, min_history):
            raise ValueError("need 0 <= min_history <= max_history and max_history >= 1")
        self.history_seconds = history_seconds
        self.min_history = min_history
        self.max_history = max_history
        self._mark_interval = mark_interval
        self._cur: dict[str, Record] = {}
        self._keys: SortedList = SortedList()
        self._history: deque[Event] = deque()
        # (time, revision) checkpoints: every event with revision <= r was applied at or before t.
        self._marks: deque[tuple[float, int]] = deque()
        self._bucket_start = 0.0  # marks are coalesced per ``mark_interval``
        self.revision = 0
        self.compact_revision = 0

    # ------------------------------------------------------------------ state
    def __len__(self) -> int:
        return len(self._cur)

    @property
    def history_len(self) -> int:
        return len(self._history)

    def get(self, key: str) -> Record | None:
        return self._cur.get(key)

    def raise_floor(self, revision: int) -> None:
        """Make the current revision at least ``revision`` (used when reopening a durable log)."""
        if revision > self.revision:
            self.revision = revision

    def apply(self, event: Event, now: float) -> None:
        """Apply one committed event. Revisions must strictly increase."""
        rev = event.record.mod_revision
        if rev <= self.revision:
            raise ValueError(f"event revision {rev} is not after current revision {self.revision}")
        key = event.record.key
        if event.type == DELETED:
            if self._cur.pop(key, None) is not None:
                self._keys.remove(key)
        else:
            if key not in self._cur:
                self._keys.add(key)
            self._cur[key] = event.record
        self._history.append(event)
        self.revision = rev
        if not self._marks or now - self._bucket_start >= self._mark_interval:
            self._marks.append((now, rev))
            self._bucket_start = now
        else:
            self._marks[-1] = (now, rev)
        if len(self._history) > self.max_history:
            self._drop(len(self._history) - self.max_history)

    def seed(self, records: Records, revision: int) -> None:
        """Start from a snapshot read at ``revision`` (no history before it): the etcd watch cache."""
        for rec in records:
            if rec.key not in self._cur:
                self._keys.add(rec.key)
            self._cur[rec.key] = rec
        self.revision = max(self.revision, revision)
        self.compact_revision = max(self.compact_revision, revision)

    # ------------------------------------------------------------- compaction
    def _drop(self, n: int) -> None:
        hist = self._history
        for _ in range(n):
            self.compact_revision = hist.popleft().record.mod_revision

    def trim(self, now: float) -> int:
        """Drop history older than the time window, keeping at least ``min_history`` events.

        Returns the (possibly unchanged) compact revision.
        """
        cutoff = now - self.history_seconds
        bound = 0
        while self._marks and self._marks[0][0] < cutoff:
            bound = self._marks.popleft()[1]
        hist = self._history
        while hist and len(hist) > self.min_history and hist[0].record.mod_revision <= bound:
            self.compact_revision = hist.popleft().record.mod_revision
        return self.compact_revision

    def compact(self, revision: int) -> int:
        """Forget history at and below ``revision`` (clipped to the current revision)."""
        revision = min(revision, self.revision)
        hist = self._history
        while hist and hist[0].record.mod_revision <= revision:
            hist.popleft()
        self.compact_revision = max(self.compact_revision, revision)
        while self._marks and self._marks[0][1] <= revision:
            self._marks.popleft()
        return self.compact_revision

    # ------------------------------------------------------------------ reads
    def _check_revision(self, revision: int) -> None:
        if revision < self.compact_revision:
            raise Compacted(self.compact_revision, revision)
        if revision > self.revision:
            raise FutureRevision(self.revision, revision)

    def events_after(self, prefix: str, after: int) -> list[Event]:
        """Committed events for keys under ``prefix`` with revision > ``after``, oldest first."""
        if after < self.compact_revision:
            raise Compacted(self.compact_revision, after)
        out: list[Event] = []
        for ev in reversed(self._history):
            if ev.record.mod_revision <= after:
                break
            if ev.record.key.startswith(prefix):
                out.append(ev)
        out.reverse()
        return out

    def count(self, prefix: str, start_after: str | None = None) -> int:
        """Current keys under ``prefix`` (strictly after ``start_after`` if given), in O(log n)."""
        keys = self._keys
        hi = keys.bisect_left(prefix + _TOP)
        if start_after is not None and start_after >= prefix:
            return max(0, hi - keys.bisect_right(start_after))
        return hi - keys.bisect_left(prefix)

    def _key_range(self, prefix: str, start_after: str | None) -> Iterator[str]:
        if start_after is not None and start_after >= prefix:
            return self._keys.irange(start_after, prefix + _TOP, inclusive=(False, False))
        return self._keys.irange(prefix, prefix + _TOP, inclusive=(True, False))

    def _overrides(self, prefix: str, revision: int) -> dict[str, Record | None]:
        """For keys changed after ``revision``: their record as of ``revision`` (None = absent)."""
        out: dict[str, Record | None] = {}
        for ev in reversed(self._history):
            if ev.record.mod_revision <= revision:
                break
            key = ev.record.key
            if key.startswith(prefix):
                out[key] = ev.prev  # older events overwrite newer ones: the oldest prev wins
        return out

    def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int | None = None,
        revision: int | None = None,
    ) -> tuple[Records, int, bool]:
        """Records under ``prefix`` in key order, strictly after ``start_after``, as of ``revision``."""
        if limit is not None and limit <= 0:
            limit = None
        keys: Iterator[str] = self._key_range(prefix, start_after)
        cur = self._cur
        if revision is None or revision == self.revision:
            served = self.revision
            lookup = cur.__getitem__
            overrides: dict[str, Record | None] = {}
        else:
            self._check_revision(revision)
            served = revision
            overrides = self._overrides(prefix, revision)
            extra = sorted(k for k in overrides if k not in cur and (start_after is None or k > start_after))
            if extra:
                keys = _merge(keys, extra)

            def lookup(k: str) -> Record | None:
                return overrides[k] if k in overrides else cur[k]

        out: Records = []
        append = out.append
        if not overrides and limit is None:
            for k in keys:
                append(cur[k])
            return out, served, False
        for k in keys:
            rec = lookup(k)
            if rec is None:
                continue
            if limit is not None and len(out) >= limit:
                return out, served, True
            append(rec)
        return out, served, False


def _merge(a: Iterator[str], b: list[str]) -> Iterator[str]:
    """Merge two ascending key streams (``b`` is small and disjoint from ``a``)."""
    i = 0
    n = len(b)
    for k in a:
        while i < n and b[i] < k:
            yield b[i]
            i += 1
        yield k
    while i < n:
        yield b[i]
        i += 1
