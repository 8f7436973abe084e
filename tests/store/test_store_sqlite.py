"""SQLiteStore specifics: durability across kill -9, reopen, group commit, failed commits, log compaction."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from store_helpers import pod

from servicenet.store import CommitFailed, Compacted, Event, SQLiteStore

P = "/registry/pods/"
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def rows(db: Path) -> list[tuple[int, str, int, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT id, name, created, deleted FROM kine ORDER BY id").fetchall()


def _write_then_kill(db: Path, want: int, timeout: float) -> tuple[list[bytes], bytes, int]:
    """Run the writer child, read acknowledged lines until ``want`` of them, then SIGKILL it."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "store_writer_proc.py"), str(db), "16"], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    lines: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout
        assert proc.stdout.readline() == b"ready\n"
        while len(lines) < want and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "writer exited early"
            lines.append(line)
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: writes are in flight
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        proc.stdout.close()
    return lines, rest, proc.returncode


async def test_kill9_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    lines, rest, returncode = await asyncio.to_thread(_write_then_kill, db, 3000, 20.0)
    assert returncode == -signal.SIGKILL
    assert len(lines) >= 1000, "the writer was too slow to test anything"
    # Every complete line is an acknowledged write (a torn last line is not).
    lines.extend(ln + b"\n" for ln in rest.split(b"\n")[:-1])
    acked: dict[str, int] = {}
    for ln in lines:
        rev, key = ln.decode().rstrip("\n").split(" ", 1)
        acked[key] = max(acked.get(key, 0), int(rev))
    assert acked

    store = SQLiteStore(str(db), compact_interval=0)
    await store.open()
    try:
        for key, rev in acked.items():
            rec = store.get(key)
            assert rec is not None, f"acknowledged write lost: {key}@{rev}"
            assert rec.mod_revision >= rev
        top = max(acked.values())
        before = store.revision
        assert before >= top
        new = await store.create(P + "after/restart", pod("r"))
        assert new.mod_revision == before + 1
    finally:
        await store.close()


async def test_reopen_restores_state_and_history(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    s = SQLiteStore(str(db), compact_interval=0)
    await s.open()
    a = await s.create(P + "d/a", pod("a"))
    b = await s.create(P + "d/b", pod("b"))
    a2 = await s.update(P + "d/a", pod("a", x=2), a.mod_revision)
    bd = await s.delete(P + "d/b")
    await s.close()

    s = SQLiteStore(str(db), compact_interval=0)
    await s.open()
    try:
        assert s.revision == bd.mod_revision == 4
        assert s.get(P + "d/a") == a2
        assert s.get(P + "d/b") is None
        assert [r.key for r in s.list(P, revision=2)[0]] == [P + "d/a", P + "d/b"]
        assert s.list(P, revision=2)[0][1] == b
        w = s.watch(P, 1)
        evs = [await w.next(1) for _ in range(3)]
        assert [(e.type, e.record) for e in evs] == [("ADDED", b), ("MODIFIED", a2), ("DELETED", bd)]
        w.close()
        c = await s.create(P + "d/c", pod("c"))
        assert c.mod_revision == 5
    finally:
        await s.close()


async def test_concurrent_writers_share_commits(tmp_path: Path) -> None:
    s = SQLiteStore(str(tmp_path / "g.db"), compact_interval=0)
    await s.open()
    try:
        recs = await asyncio.gather(*(s.create(P + f"g/{i}", pod(str(i))) for i in range(500)))
        assert sorted(r.mod_revision for r in recs) == list(range(1, 501))
        assert s.stats["rows"] == 500
        assert s.stats["batches"] <= 50, s.stats  # one commit per write would be 500
    finally:
        await s.close()
    assert len(rows(tmp_path / "g.db")) == 500


async def test_failed_commit_fails_dependent_writes_and_leaves_no_phantom(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    s = SQLiteStore(str(db), compact_interval=0)
    await s.open()
    try:
        ok = await s.create(P + "x/ok", pod("ok"))
        w = s.watch(P, s.revision)

        def fault(events: list[Event]) -> None:
            if any(e.record.key == P + "x/bad" for e in events):
                raise OSError("injected disk failure")

        s.set_fault(fault)
        # Both tasks plan their write (the update passes its CAS against the in-flight create)
        # before the writer thread can report the failure.
        t_create = asyncio.ensure_future(s.create(P + "x/bad", pod("bad")))
        t_update = asyncio.ensure_future(s.update(P + "x/bad", pod("bad", v=2), ok.mod_revision + 1))
        t_other = asyncio.ensure_future(s.update(P + "x/ok", pod("ok", v=2), ok.mod_revision))
        results = await asyncio.gather(t_create, t_update, t_other, return_exceptions=True)
        assert all(isinstance(r, CommitFailed) for r in results), results
        assert s.get(P + "x/bad") is None
        assert s.get(P + "x/ok") == ok
        assert s.list(P)[0] == [ok]
        assert await w.next(0.05) is None  # nothing failed was ever published

        s.set_fault(None)
        again = await s.create(P + "x/bad", pod("bad"))
        upd = await s.update(P + "x/ok", pod("ok", v=3), ok.mod_revision)
        assert again.mod_revision > ok.mod_revision and upd.mod_revision > again.mod_revision
        assert [(await w.next(1)).record for _ in range(2)] == [again, upd]
        w.close()
    finally:
        await s.close()
    assert [(r[0], r[1]) for r in rows(db)] == [
        (ok.mod_revision, P + "x/ok"),
        (again.mod_revision, P + "x/bad"),
        (upd.mod_revision, P + "x/ok"),
    ]


async def test_log_compaction_drops_superseded_rows_and_never_reuses_revisions(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    s = SQLiteStore(str(db), compact_interval=0)
    await s.open()
    try:
        for i in range(5):
            r = await s.create(P + f"c/{i}", pod(str(i)))
            for v in range(3):
                r = await s.update(P + f"c/{i}", pod(str(i), v=v), r.mod_revision)
        await s.delete(P + "c/0")
        gone = await s.delete(P + "c/1")  # the newest revision is a tombstone
        assert len(rows(db)) == 22
        await s.compact(s.revision)
        assert s.compact_revision == gone.mod_revision
        with pytest.raises(Compacted):
            s.watch(P, gone.mod_revision - 1)
    finally:
        await s.close()
    left = rows(db)
    assert sorted(name for _, name, _, _ in left) == [P + f"c/{i}" for i in (2, 3, 4)]
    assert all(deleted == 0 for *_, deleted in left)

    s = SQLiteStore(str(db), compact_interval=0)
    await s.open()
    try:
        assert s.revision == gone.mod_revision  # not the highest surviving row
        assert s.compact_revision == gone.mod_revision
        assert [r.key for r in s.list(P)[0]] == [P + f"c/{i}" for i in (2, 3, 4)]
        new = await s.create(P + "c/1", pod("1"))
        assert new.mod_revision == gone.mod_revision + 1
    finally:
        await s.close()


async def test_periodic_compaction_runs_in_background(tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    s = SQLiteStore(str(db), compact_interval=0.05, history_seconds=0.0, min_history=0)
    await s.open()
    try:
        r = await s.create(P + "p/a", pod("a"))
        for v in range(10):
            r = await s.update(P + "p/a", pod("a", v=v), r.mod_revision)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while s.stats["log_compacted"] < r.mod_revision - 1 and loop.time() < deadline:
            await asyncio.sleep(0.02)
        assert s.compact_revision >= r.mod_revision - 1
        assert s.stats["log_compacted"] >= r.mod_revision - 1
    finally:
        await s.close()
    assert len(rows(db)) <= 2


async def test_cancelled_caller_does_not_cancel_the_write(tmp_path: Path) -> None:
    s = SQLiteStore(str(tmp_path / "x.db"), compact_interval=0)
    await s.open()
    try:
        task = asyncio.ensure_future(s.create(P + "z/a", pod("a")))
        await asyncio.sleep(0)  # planned and queued
        task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while s.get(P + "z/a") is None and loop.time() < deadline:
            await asyncio.sleep(0.01)
        assert s.get(P + "z/a") is not None
        assert task.cancelled()
        # The in-flight state was cleared on commit: a CAS against the committed record succeeds.
        rec = s.get(P + "z/a")
        assert rec is not None
        await s.update(P + "z/a", pod("a", v=1), rec.mod_revision)
    finally:
        await s.close()
