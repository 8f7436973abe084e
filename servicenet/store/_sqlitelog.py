"""Thread side of the SQLite backend: schema, replay on open, and the group-commit writer thread.

The table follows kine: one append-only row per revision (``id`` = revision). The writer thread owns
the connection; it drains everything queued, inserts it in one transaction and commits (WAL,
``synchronous=FULL``), so concurrent writers share one fsync. Results go back to the event loop
through ``call_soon_threadsafe``, one callback per committed chunk, in revision order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._types import ADDED, DELETED, MODIFIED, CommitFailed, Event, Record
from .index import Index

log = logging.getLogger("servicenet.store.sqlite")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS kine (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        created INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        create_revision INTEGER NOT NULL,
        prev_revision INTEGER NOT NULL,
        lease INTEGER NOT NULL DEFAULT 0,
        value BLOB,
        old_value BLOB
    )""",
    "CREATE TABLE IF NOT EXISTS kine_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
_INSERT_HEAD = "INSERT INTO kine (id, name, created, deleted, create_revision, prev_revision, value) VALUES "
# Multi-row INSERTs of a few fixed sizes: one sqlite3 step per statement means one GIL release and
# re-acquire per statement instead of per row (a busy event loop makes each re-acquire expensive).
_CHUNKS = (256, 64, 16, 4, 1)
_INSERTS = {n: _INSERT_HEAD + ",".join(["(?,?,?,?,?,?,?)"] * n) for n in _CHUNKS}
INSERT = _INSERTS[1]
SET_META = (
    "INSERT INTO kine_meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value"
)


def connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for stmt in SCHEMA:
        conn.execute(stmt)
    return conn


def event_row(ev: Event, codec: Any = None) -> tuple[int, str, int, int, int, int, bytes]:
    """The row for ``ev``; ``codec`` (encryption at rest) transforms the value as it is written."""
    rec = ev.record
    prev_rev = ev.prev.mod_revision if ev.prev is not None else 0
    return (
        rec.mod_revision,
        rec.key,
        1 if ev.type == ADDED else 0,
        1 if ev.type == DELETED else 0,
        rec.create_revision,
        prev_rev,
        codec.encode(rec.key, rec.value) if codec is not None else rec.value,
    )


def insert_rows(conn: sqlite3.Connection, rows: list[tuple[int, str, int, int, int, int, bytes]]) -> None:
    i, n = 0, len(rows)
    for size in _CHUNKS:
        sql = _INSERTS[size]
        while n - i >= size:
            conn.execute(sql, [v for row in rows[i : i + size] for v in row])
            i += size


def _meta(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM kine_meta WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else 0


def load(conn: sqlite3.Connection, index: Index, now: float, codec: Any = None) -> int:
    """Replay the table into ``index``; returns the log's compact revision."""
    cur = conn.execute("SELECT id, name, created, deleted, create_revision, value FROM kine ORDER BY id")
    apply = index.apply
    get = index.get
    while True:
        rows = cur.fetchmany(4096)
        if not rows:
            break
        for rid, name, created, deleted, crev, value in rows:
            typ = DELETED if deleted else (ADDED if created else MODIFIED)
            raw = bytes(value or b"")
            if codec is not None:
                raw = codec.decode(name, raw)
            apply(Event(typ, Record(name, raw, crev, rid), get(name)), now)
    compacted = _meta(conn, "compact_revision")
    seq = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kine'").fetchone()
    index.raise_floor(max(compacted, int(seq[0]) if seq else 0))
    index.compact(compacted)
    return compacted


@dataclass(slots=True)
class Pending:
    event: Event
    future: asyncio.Future[Record]


@dataclass(frozen=True, slots=True)
class CompactTo:
    revision: int


STOP = object()
RESUME = object()  # the loop has dropped its pending state after a failure: accept writes again


class LogWriter(threading.Thread):
    """Owns the connection after open. Feed it with ``put`` (from the loop's thread); it reports
    through the callbacks.

    The writes of one pass of the event loop reach the thread together: ``put`` of a write adds it
    to an outbox that a ``call_soon`` hands over as one list, so the loop wakes the thread (a futex
    call) once per pass rather than once per write. Any other item hands the outbox over first, so
    the queue keeps the order in which items were put."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        loop: asyncio.AbstractEventLoop,
        *,
        on_committed: Callable[[list[Pending]], None],
        on_failed: Callable[[list[Pending], CommitFailed, bool], None],
        on_compacted: Callable[[int, BaseException | None], None],
        compacted: int,
        max_batch: int = 4096,
        compact_batch: int = 1000,
        fault: Callable[[list[Event]], None] | None = None,
    ) -> None:
        super().__init__(name="store-sqlite-writer", daemon=True)
        self._conn = conn
        self._loop = loop
        self._on_committed = on_committed
        self._on_failed = on_failed
        self._on_compacted = on_compacted
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._outbox: list[Pending] = []
        self._max_batch = max_batch
        self._compact_batch = compact_batch
        self._compacted = compacted
        self._compact_target = compacted
        self._rejecting = False
        self.fault = fault
        self.codec: Any = None  # encryption at rest (set by the store before start)
        self.batches = 0
        self.rows = 0

    def put(self, item: Any) -> None:
        if type(item) is Pending:
            self._outbox.append(item)
            if len(self._outbox) == 1:
                self._loop.call_soon(self._hand_over)
            return
        self._hand_over()
        self._q.put(item)

    def _hand_over(self) -> None:
        if self._outbox:
            batch, self._outbox = self._outbox, []
            self._q.put(batch)

    def _notify(self, fn: Callable[..., None], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed
            self._loop.call_soon_threadsafe(fn, *args)

    def run(self) -> None:
        q = self._q
        try:
            while True:
                if self._compact_target > self._compacted:
                    try:
                        first = q.get_nowait()
                    except queue.Empty:
                        self._compact_step()
                        continue
                else:
                    first = q.get()
                items = [first]
                rows = len(first) if type(first) is list else 1
                while rows < self._max_batch:
                    try:
                        it = q.get_nowait()
                    except queue.Empty:
                        break
                    items.append(it)
                    rows += len(it) if type(it) is list else 1
                chunk: list[Pending] = []
                for it in items:
                    if type(it) is list:  # one loop pass's writes
                        chunk.extend(it)
                        continue
                    if type(it) is Pending:
                        chunk.append(it)
                        continue
                    if chunk:
                        self._flush(chunk)
                        chunk = []
                    if it is STOP:
                        return
                    if it is RESUME:
                        self._rejecting = False
                    elif isinstance(it, CompactTo):
                        self._compact_target = max(self._compact_target, it.revision)
                if chunk:
                    self._flush(chunk)
        finally:
            with contextlib.suppress(Exception):
                self._conn.close()

    def _flush(self, chunk: list[Pending]) -> None:
        if self._rejecting:
            err = CommitFailed("write discarded: an earlier commit failed")
            self._notify(self._on_failed, chunk, err, True)
            return
        conn = self._conn
        try:
            if self.fault is not None:
                self.fault([p.event for p in chunk])
            conn.execute("BEGIN IMMEDIATE")
            insert_rows(conn, [event_row(p.event, self.codec) for p in chunk])
            conn.execute("COMMIT")
        except Exception as e:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            self._rejecting = True
            log.error("store commit of %d writes failed: %s", len(chunk), e)
            self._notify(self._on_failed, chunk, CommitFailed(f"commit failed: {e}"), False)
            return
        self.batches += 1
        self.rows += len(chunk)
        self._notify(self._on_committed, chunk)

    def _compact_step(self) -> None:
        lo = self._compacted
        hi = min(self._compact_target, lo + self._compact_batch)
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "DELETE FROM kine WHERE id IN (SELECT prev_revision FROM kine"
                " WHERE id > ? AND id <= ? AND prev_revision > 0)",
                (lo, hi),
            )
            conn.execute("DELETE FROM kine WHERE deleted = 1 AND id > ? AND id <= ?", (lo, hi))
            conn.execute(SET_META, ("compact_revision", hi))
            conn.execute("COMMIT")
        except Exception as e:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            log.error("log compaction (%d, %d] failed: %s", lo, hi, e)
            self._compact_target = self._compacted  # give up until asked again
            self._notify(self._on_compacted, self._compacted, e)
            return
        self._compacted = hi
        self._notify(self._on_compacted, hi, None)
