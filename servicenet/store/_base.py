"""Event-loop side logic shared by every backend: reads, write planning, fan-out, auto-compaction.

A backend only decides how a planned event becomes durable (``_commit``) and how compaction reaches
its log (``_compact_log``). Reads never leave memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from servicenet.common.component import cancel_and_wait

from ._plan import plan_create, plan_delete, plan_update
from ._types import DELETED, Event, KeyNotFound, Record, Records, RevisionConflict, StoreClosed
from .index import Index
from .ttl import Expiry, TTLPolicy
from .watch import Watch, WatchHub

log = logging.getLogger("servicenet.store")


class BaseStore:
    def __init__(
        self,
        *,
        history_seconds: float = 300.0,
        min_history: int = 1000,
        max_history: int = 100_000,
        compact_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        ttl: Mapping[str, float] | None = None,
    ) -> None:
        self._index = Index(history_seconds=history_seconds, min_history=min_history, max_history=max_history)
        self._hub = WatchHub()
        self._clock = clock
        self._compact_interval = compact_interval
        self._compactor: asyncio.Task[None] | None = None
        self._assigned = 0
        # Latest planned-but-not-yet-visible record per key (None = pending delete); CAS checks see it.
        self._overlay: dict[str, tuple[int, Record | None]] = {}
        self._is_open = False
        # Keys with a time to live (``{prefix: seconds}``, as Events): deleted here once their
        # deadline passes, unless the backend has its own expiry (etcd's leases) (.ttl)
        self.ttl = TTLPolicy(ttl)
        self._expiry: Expiry | None = Expiry() if self.ttl and self._expires_locally() else None
        self._expirer: asyncio.Task[None] | None = None
        self.expired = 0  # keys deleted because their time to live ran out

    def _expires_locally(self) -> bool:
        """Whether this store deletes expired keys itself (a backend with leases says no)."""
        return True

    # ---------------------------------------------------------------- lifecycle
    async def _start(self) -> None:
        self._assigned = self._index.revision
        self._is_open = True
        if self._compact_interval > 0:
            self._compactor = asyncio.create_task(self._compact_loop(), name="store-compactor")
        if self._expiry is not None:
            now = self._clock()
            for prefix, seconds in self.ttl.prefixes.items():  # deadlines are not stored: a whole TTL again
                self._expiry.touch_all(((r.key, r.mod_revision) for r in self._index.list(prefix)[0]), now + seconds)
            self._expirer = asyncio.create_task(self._expire_loop(), name="store-ttl")

    async def _stop(self) -> None:
        self._is_open = False
        await cancel_and_wait(self._compactor)
        self._compactor = None
        await cancel_and_wait(self._expirer)
        self._expirer = None

    def _check_open(self) -> None:
        if not self._is_open:
            raise StoreClosed("store is not open")

    # -------------------------------------------------------------------- reads
    @property
    def revision(self) -> int:
        return self._index.revision

    @property
    def assigned_revision(self) -> int:
        """Latest revision handed to a write (may not be durable or visible yet)."""
        return self._assigned

    @property
    def compact_revision(self) -> int:
        return self._index.compact_revision

    @property
    def watcher_count(self) -> int:
        return len(self._hub)

    def __len__(self) -> int:
        return len(self._index)

    def get(self, key: str) -> Record | None:
        return self._index.get(key)

    def latest(self, key: str) -> Record | None:
        """What the next write to ``key`` is checked against: ``get`` plus the writes to it still
        being committed (``None`` for a pending delete). Write paths read this, never ``get``: a
        compare-and-swap built on the committed record fails while another write is in flight."""
        return self._view(key)

    def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int | None = None,
        revision: int | None = None,
    ) -> tuple[Records, int, bool]:
        return self._index.list(prefix, start_after=start_after, limit=limit, revision=revision)

    def count(self, prefix: str, start_after: str | None = None) -> int:
        """Current keys under ``prefix``; with ``start_after``, only those sorting after it
        (what ``remainingItemCount`` needs, without listing)."""
        return self._index.count(prefix, start_after)

    def watch(self, prefix: str, after_revision: int, *, queue_size: int = 10000) -> Watch:
        self._check_open()
        replay = self._index.events_after(prefix, after_revision)
        floor = after_revision if after_revision > self._index.revision else 0
        return self._hub.add(prefix, replay, queue_size, floor)

    # ------------------------------------------------------------------- writes
    def _view(self, key: str) -> Record | None:
        pending = self._overlay.get(key)
        if pending is not None:
            return pending[1]
        return self._index.get(key)

    async def create(self, key: str, obj: dict[str, Any]) -> Record:
        self._check_open()
        ev = plan_create(self._view(key), key, obj, self._assigned + 1)
        self._assigned += 1
        return await self._commit(ev)

    async def update(self, key: str, obj: dict[str, Any], expected_mod_revision: int | None = None) -> Record:
        self._check_open()
        ev = plan_update(self._view(key), key, obj, self._assigned + 1, expected_mod_revision)
        self._assigned += 1
        return await self._commit(ev)

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> Record:
        self._check_open()
        ev = plan_delete(self._view(key), key, self._assigned + 1, expected_mod_revision)
        self._assigned += 1
        return await self._commit(ev)

    async def _commit(self, ev: Event) -> Record:
        raise NotImplementedError

    def _publish(self, events: Sequence[Event]) -> None:
        """Make committed events visible: index first, then watchers, in revision order."""
        now = self._clock()
        apply = self._index.apply
        for ev in events:
            apply(ev, now)
        if self._expiry is not None:
            self._track_ttl(self._expiry, events, now)
        self._hub.publish(events)

    def _track_ttl(self, expiry: Expiry, events: Sequence[Event], now: float) -> None:
        for ev in events:
            seconds = self.ttl.seconds(ev.record.key)
            if seconds is None:
                continue
            if ev.type == DELETED:
                expiry.forget(ev.record.key)
            else:
                expiry.touch(ev.record.key, ev.record.mod_revision, now + seconds)

    async def expire_now(self) -> int:
        """Delete every key whose time to live has run out (what the periodic task does); returns
        how many were deleted. A key written since its deadline was set is left alone."""
        if self._expiry is None:
            return 0
        n = 0
        for key, rev in self._expiry.due(self._clock()):
            try:
                await self.delete(key, expected_mod_revision=rev)
                n += 1
            except (KeyNotFound, RevisionConflict):
                pass  # gone already, or written again (which set a new deadline)
        self.expired += n
        return n

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.expire_now()
            except StoreClosed:
                return
            except Exception:  # tried again on the next tick
                log.exception("deleting expired keys failed")

    # --------------------------------------------------------------- compaction
    async def compact(self, revision: int) -> None:
        self._check_open()
        target = self._index.compact(revision)
        await self._compact_log(target, wait=True)

    async def _compact_log(self, revision: int, wait: bool) -> None:
        """Backends with a durable log drop superseded rows up to ``revision``."""

    def compact_now(self) -> int:
        """Apply the retention window once (what the periodic task does); returns the compact revision."""
        before = self._index.compact_revision
        after = self._index.trim(self._clock())
        if after != before:
            task = asyncio.get_running_loop().create_task(self._compact_log(after, wait=False))
            task.add_done_callback(_log_failure)
        return after

    async def _compact_loop(self) -> None:
        while True:
            await asyncio.sleep(self._compact_interval)
            try:
                self.compact_now()
            except Exception:  # keep compacting on the next tick
                log.exception("store compaction failed")


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("log compaction failed", exc_info=task.exception())
