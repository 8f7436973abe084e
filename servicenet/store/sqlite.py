"""SQLiteStore: the in-memory index in front of a durable, group-committed SQLite log.

Write path (all on the event loop, then one writer thread):
1. the revision is assigned and the precondition is checked against memory (committed state plus
   the writes still in flight);
2. the planned row is queued to the writer thread, which commits whatever is queued in one
   transaction and fsyncs;
3. back on the loop, the committed chunk is applied to the index and fanned out to watchers in
   revision order, and only then do the writers' calls return.

A failed commit fails its writes and every write queued behind it (they may have been checked
against the failed ones), drops the in-flight state, and the writer resumes with a clean slate.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from typing import Any

from ._base import BaseStore, log
from ._sqlitelog import RESUME, STOP, CompactTo, LogWriter, Pending, connect, load
from ._types import DELETED, CommitFailed, Event, Record, StoreError


class SQLiteStore(BaseStore):
    def __init__(self, path: str, *, max_batch: int = 4096, codec: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.codec = codec  # encode(key, value)/decode(key, value): encryption at rest
        self.path = str(path)
        self._max_batch = max_batch
        self._writer: LogWriter | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._compact_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._log_compacted = 0
        self._fault: Callable[[list[Event]], None] | None = None

    # ---------------------------------------------------------------- lifecycle
    async def open(self) -> None:
        if self._is_open:
            return
        if self._loop is not None:
            raise StoreError("a SQLiteStore opens once; create a new instance to reopen the file")
        self._loop = asyncio.get_running_loop()
        index = self._index
        now = self._clock()

        def _load() -> tuple[Any, int]:
            # the file (and SQLite's -wal/-shm, which take its mode) readable by the owner only
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.chmod(self.path + suffix, 0o600)
            conn = connect(self.path)
            try:
                return conn, load(conn, index, now, self.codec)
            except BaseException:
                conn.close()
                raise

        conn, compacted = await asyncio.to_thread(_load)
        self._log_compacted = compacted
        self._writer = writer = LogWriter(
            conn,
            self._loop,
            on_committed=self._on_committed,
            on_failed=self._on_failed,
            on_compacted=self._on_compacted,
            compacted=compacted,
            max_batch=self._max_batch,
            fault=self._fault,
        )
        writer.codec = self.codec
        writer.start()
        await self._start()

    async def close(self) -> None:
        was_open = self._is_open
        await self._stop()  # no new writes from here on
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.put(STOP)  # FIFO: everything queued before it is committed first
            await asyncio.to_thread(writer.join)
            await asyncio.sleep(0)  # run the writer's last callbacks
        for _, fut in self._compact_waiters:
            if not fut.done():
                fut.set_exception(StoreError("store closed"))
        self._compact_waiters.clear()
        if was_open:
            self._hub.close_all("store closed")

    def set_fault(self, fault: Callable[[list[Event]], None] | None) -> None:
        """Test hook: called in the writer thread before each commit; raising makes it fail."""
        self._fault = fault
        if self._writer is not None:
            self._writer.fault = fault

    @property
    def stats(self) -> dict[str, int]:
        w = self._writer
        return {
            "batches": w.batches if w else 0,
            "rows": w.rows if w else 0,
            "log_compacted": self._log_compacted,
        }

    # ------------------------------------------------------------------- writes
    async def _commit(self, ev: Event) -> Record:
        writer = self._writer
        assert writer is not None and self._loop is not None
        fut: asyncio.Future[Record] = self._loop.create_future()
        rec = ev.record
        self._overlay[rec.key] = (rec.mod_revision, None if ev.type == DELETED else rec)
        writer.put(Pending(ev, fut))
        # A cancelled caller cancels only its future: the queued write still happens (and
        # the callbacks skip futures that are already done).
        return await fut

    def _on_committed(self, chunk: list[Pending]) -> None:
        try:
            self._publish([p.event for p in chunk])
        except Exception as e:  # a bug, not a disk error: do not leave writers hanging
            log.exception("applying a committed batch failed")
            for p in chunk:
                if not p.future.done():
                    p.future.set_exception(StoreError(f"internal error applying commit: {e}"))
            return
        overlay = self._overlay
        for p in chunk:
            rec = p.event.record
            pending = overlay.get(rec.key)
            if pending is not None and pending[0] == rec.mod_revision:
                del overlay[rec.key]
            if not p.future.done():
                p.future.set_result(rec)

    def _on_failed(self, chunk: list[Pending], err: CommitFailed, rejected: bool) -> None:
        if not rejected:
            # Every in-flight write was checked against state that will never exist: drop it all.
            # The writer discards everything queued before RESUME.
            self._overlay.clear()
            if self._writer is not None:
                self._writer.put(RESUME)
        for p in chunk:
            if not p.future.done():
                p.future.set_exception(err)
                p.future.exception()  # mark retrieved: a cancelled caller may never look

    # --------------------------------------------------------------- compaction
    async def _compact_log(self, revision: int, wait: bool) -> None:
        writer = self._writer
        if writer is None or revision <= self._log_compacted:
            return
        fut: asyncio.Future[None] | None = None
        if wait:
            assert self._loop is not None
            fut = self._loop.create_future()
            self._compact_waiters.append((revision, fut))
        writer.put(CompactTo(revision))
        if fut is not None:
            await fut

    def _on_compacted(self, revision: int, error: BaseException | None) -> None:
        self._log_compacted = max(self._log_compacted, revision)
        keep: list[tuple[int, asyncio.Future[None]]] = []
        for target, fut in self._compact_waiters:
            if fut.done():
                continue
            if error is not None:
                fut.set_exception(StoreError(f"log compaction failed: {error}"))
            elif target <= revision:
                fut.set_result(None)
            else:
                keep.append((target, fut))
        self._compact_waiters = keep
