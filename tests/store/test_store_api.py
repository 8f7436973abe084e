"""The Store contract, run against every backend (MemoryStore and SQLiteStore)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from store_helpers import FakeClock, make_store, pod, wait_for

from servicenet.store import (
    ADDED,
    DELETED,
    MODIFIED,
    Compacted,
    Event,
    KeyExists,
    KeyNotFound,
    RevisionConflict,
    StoreClosed,
    WatchClosed,
)

P = "/registry/pods/"


async def test_a_create_returns_exactly_the_object_given_with_its_revision(store) -> None:
    """What a protobuf create's answer relies on (apiserver/negotiation.created_answer): the record a
    create returns decodes to the caller's dict with ``metadata.resourceVersion`` added, nothing else."""
    for i, body in enumerate([pod("exact-0"), {**pod("exact-1"), "spec": {"f": 1.5, "l": [1, "x", None, True]}}]):
        rec = await store.create(P + f"default/exact-{i}", body)
        md = body["metadata"]
        assert rec.obj() == {**body, "metadata": {**md, "resourceVersion": str(rec.mod_revision)}}


async def test_crud_and_resource_version(store) -> None:
    b = store.revision  # 0 on a fresh memory/SQLite store; etcd's revision when the store opened
    body = pod("web-0")
    r1 = await store.create(P + "default/web-0", body)
    assert "resourceVersion" not in body["metadata"]  # caller's object untouched
    assert (r1.create_revision, r1.mod_revision) == (b + 1, b + 1)
    assert r1.obj()["metadata"]["resourceVersion"] == str(b + 1)
    assert r1.obj() is not r1.obj()
    assert store.get(P + "default/web-0") == r1
    assert store.revision == b + 1

    r2 = await store.update(P + "default/web-0", {**body, "spec": {"nodeName": "n1"}}, r1.mod_revision)
    assert (r2.create_revision, r2.mod_revision) == (b + 1, b + 2)
    assert r2.obj()["spec"] == {"nodeName": "n1"}
    assert r2.obj()["metadata"]["resourceVersion"] == str(b + 2)

    d = await store.delete(P + "default/web-0", expected_mod_revision=b + 2)
    assert (d.create_revision, d.mod_revision) == (b + 1, b + 3)
    assert d.obj()["metadata"]["resourceVersion"] == str(b + 3)
    assert d.obj()["spec"] == {"nodeName": "n1"}
    assert store.get(P + "default/web-0") is None
    assert store.revision == b + 3

    r4 = await store.create(P + "default/web-0", body)
    assert (r4.create_revision, r4.mod_revision) == (b + 4, b + 4)


async def test_preconditions(store) -> None:
    r1 = await store.create("/registry/nodes/node-1", {"kind": "Node", "metadata": {"name": "node-1"}})
    with pytest.raises(KeyExists):
        await store.create("/registry/nodes/node-1", {"metadata": {}})
    with pytest.raises(KeyNotFound):
        await store.update("/registry/nodes/node-2", {"metadata": {}})
    with pytest.raises(KeyNotFound):
        await store.delete("/registry/nodes/node-2")
    r2 = await store.update("/registry/nodes/node-1", {"metadata": {"name": "node-1"}}, r1.mod_revision)
    with pytest.raises(RevisionConflict) as ei:
        await store.update("/registry/nodes/node-1", {"metadata": {}}, r1.mod_revision)
    assert (ei.value.expected, ei.value.actual) == (r1.mod_revision, r2.mod_revision)
    with pytest.raises(RevisionConflict):
        await store.delete("/registry/nodes/node-1", expected_mod_revision=r1.mod_revision)
    # Failed preconditions consume no revision.
    assert store.revision == r2.mod_revision
    assert (
        await store.update("/registry/nodes/node-1", {"metadata": {}})
    ).mod_revision == r2.mod_revision + 1


async def test_concurrent_cas_only_one_wins(store) -> None:
    r = await store.create(P + "default/c", pod("c"))
    results = await asyncio.gather(
        *(store.update(P + "default/c", pod("c", x=i), r.mod_revision) for i in range(20)),
        return_exceptions=True,
    )
    wins = [x for x in results if not isinstance(x, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(x, RevisionConflict) for x in results if isinstance(x, BaseException))
    assert store.get(P + "default/c") == wins[0]


async def test_concurrent_creates_of_one_key(store) -> None:
    b = store.revision
    results = await asyncio.gather(
        *(store.create(P + "default/one", pod(str(i))) for i in range(10)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert sum(isinstance(r, KeyExists) for r in results) == 9
    assert store.revision == b + 1


async def test_list_order_prefix_limit_count(store) -> None:
    names = [f"p{i:03d}" for i in range(30)]
    random.Random(7).shuffle(names)
    for n in names:
        await store.create(P + f"default/{n}", pod(n))
    await store.create(P + "default2/zz", pod("zz", "default2"))
    await store.create("/registry/services/default/s", {"metadata": {"name": "s"}})
    recs, rev, more = store.list(P + "default/")
    assert [r.key for r in recs] == [P + f"default/p{i:03d}" for i in range(30)]
    assert (rev, more) == (store.revision, False)
    assert store.count(P) == 31
    assert store.count(P + "default/") == 30
    recs, _, more = store.list(P + "default/", start_after=P + "default/p009", limit=5)
    assert [r.key for r in recs] == [P + f"default/p{i:03d}" for i in range(10, 15)]
    assert more is True
    recs, _, more = store.list(P + "default/", start_after=P + "default/p024", limit=5)
    assert len(recs) == 5 and more is False


async def test_paginated_list_is_a_consistent_snapshot(store) -> None:
    for i in range(50):
        await store.create(P + f"ns/p{i:02d}", pod(f"p{i:02d}", "ns", v=0))
    expected = {r.key: r.value for r in store.list(P + "ns/")[0]}
    page, rv, more = store.list(P + "ns/", limit=20)
    got = [*page]
    # Concurrent churn between pages: updates, deletes (both sides of the cursor), new keys.
    await store.update(P + "ns/p30", pod("p30", "ns", v=1))
    await store.delete(P + "ns/p05")
    await store.delete(P + "ns/p45")
    await store.create(P + "ns/p25a", pod("p25a", "ns"))
    await store.create(P + "ns/p99", pod("p99", "ns"))
    while more:
        page, served, more = store.list(P + "ns/", limit=20, start_after=got[-1].key, revision=rv)
        assert served == rv
        got.extend(page)
    assert {r.key: r.value for r in got} == expected
    assert [r.key for r in got] == sorted(expected)
    assert store.count(P + "ns/") == 50 - 2 + 2


async def test_compaction_expires_old_revisions(store) -> None:
    b = store.revision
    for i in range(10):
        await store.create(P + f"x/{i}", pod(str(i)))
    await store.compact(b + 6)
    assert store.compact_revision == b + 6
    with pytest.raises(Compacted) as ei:
        store.list(P, revision=b + 5)
    assert (ei.value.compact_revision, ei.value.requested) == (b + 6, b + 5)
    with pytest.raises(Compacted):
        store.watch(P, b + 5)
    assert len(store.list(P, revision=b + 6)[0]) == 6
    w = store.watch(P, b + 6)
    assert [(await w.next(1)).record.mod_revision for _ in range(4)] == [b + 7, b + 8, b + 9, b + 10]
    w.close()


async def test_retention_window_auto_compaction(kind: str, tmp_path: Path) -> None:
    clock = FakeClock()
    s = make_store(kind, tmp_path, history_seconds=60, min_history=0, clock=clock)
    await s.open()
    try:
        b = s.revision
        for i in range(5):
            await s.create(P + f"a/{i}", pod(str(i)))
        clock.now += 30
        for i in range(5):
            await s.create(P + f"b/{i}", pod(str(i)))
        clock.now += 40  # the first five are now 70 s old, the next five 40 s
        assert s.compact_now() == b + 5
        with pytest.raises(Compacted):
            s.watch(P, b + 4)
        assert len(s.list(P, revision=b + 5)[0]) == 5
    finally:
        await s.close()


async def test_watch_replays_history_then_live(store) -> None:
    r1 = await store.create(P + "d/a", pod("a"))
    r2 = await store.update(P + "d/a", pod("a", x=1))
    await store.create("/registry/services/d/s", {"metadata": {}})
    w = store.watch(P, r1.mod_revision)
    ev = await w.next(1)
    assert (ev.type, ev.record, ev.prev) == (MODIFIED, r2, r1)
    assert await w.next(0.05) is None  # the service is filtered out; nothing else yet
    d = await store.delete(P + "d/a")
    ev = await w.next(1)
    assert (ev.type, ev.record, ev.prev) == (DELETED, d, r2)
    w.close()
    with pytest.raises(StopAsyncIteration):
        await w.__anext__()
    assert store.watcher_count == 0


async def test_watch_from_a_future_revision_skips_up_to_it(store) -> None:
    await store.create(P + "f/a", pod("a"))
    w = store.watch(P, store.revision + 2)
    revs = [(await store.create(P + f"f/{i}", pod(str(i)))).mod_revision for i in range(4)]
    got = [(await w.next(1)).record.mod_revision for _ in range(2)]
    assert got == revs[2:]
    assert await w.next(0) is None
    w.close()


async def test_100_watchers_get_every_event_in_order(store) -> None:
    start = store.revision
    watchers = [store.watch(P, start) for _ in range(100)]
    other = store.watch("/registry/services/", start)

    async def writer(wid: int) -> list[int]:
        revs = []
        for i in range(25):
            key = P + f"w{wid}/p{i % 5}"
            cur = store.get(key)
            if cur is None:
                revs.append((await store.create(key, pod(str(i)))).mod_revision)
            elif i % 7 == 0:
                revs.append((await store.delete(key)).mod_revision)
            else:
                revs.append((await store.update(key, pod(str(i)), cur.mod_revision)).mod_revision)
        return revs

    acked = sorted(r for revs in await asyncio.gather(*(writer(i) for i in range(8))) for r in revs)
    assert len(acked) == 200
    streams: list[list[Event]] = []
    for w in watchers:
        evs = [await w.next(5) for _ in range(len(acked))]
        assert await w.next(0) is None
        streams.append(evs)
    assert [e.record.mod_revision for e in streams[0]] == acked
    for evs in streams[1:]:
        # The same Event objects are shared by all watchers: no per-watcher copies or re-encoding.
        assert all(a is b for a, b in zip(evs, streams[0], strict=True))
    types = {e.type for e in streams[0]}
    assert types == {ADDED, MODIFIED, DELETED}
    assert await other.next(0) is None
    for w in [*watchers, other]:
        w.close()


async def test_slow_watcher_is_dropped(store) -> None:
    slow = store.watch(P, store.revision, queue_size=5)
    fast = store.watch(P, store.revision, queue_size=5)
    received: list[int] = []

    async def consume() -> None:
        async for ev in fast:
            received.append(ev.record.mod_revision)

    task = asyncio.create_task(consume())
    revs = []
    for i in range(20):
        revs.append((await store.create(P + f"s/{i}", pod(str(i)))).mod_revision)
        await asyncio.sleep(0)
    await wait_for(lambda: len(received) == 20)
    assert received == revs
    assert slow.closed and "overflow" in (slow.closed_reason or "")
    with pytest.raises(WatchClosed) as ei:
        async for _ in slow:
            pass
    assert ei.value.error is True
    assert store.watcher_count == 1
    fast.close()
    await asyncio.wait_for(task, 5)


async def test_close_ends_watches_and_rejects_writes(kind: str, tmp_path: Path) -> None:
    s = make_store(kind, tmp_path)
    await s.open()
    w = s.watch(P, s.revision)
    await s.create(P + "a/b", pod("b"))
    await s.close()
    got = [ev async for ev in w]  # buffered events are still delivered, then the stream ends
    assert [e.record.key for e in got] == [P + "a/b"]
    with pytest.raises(StoreClosed):
        await s.create(P + "a/c", pod("c"))


async def test_list_10000_under_100ms(store) -> None:
    import time

    big = {"spec": {"containers": [{"name": "c", "image": "nginx", "args": ["x" * 200]}]}}
    await asyncio.gather(
        *(store.create(P + f"big/p{i:05d}", pod(f"p{i}", "big", **big)) for i in range(10_000))
    )
    rv = store.revision
    best = min(_timed(lambda: store.list(P)) for _ in range(3))
    assert best < 0.1, best
    await store.update(P + "big/p00000", pod("p0", "big"))
    best_past = min(_timed(lambda: store.list(P, revision=rv)) for _ in range(3))
    assert best_past < 0.1, best_past
    assert len(store.list(P, revision=rv)[0]) == 10_000
    t0 = time.perf_counter()
    assert store.count(P) == 10_000
    assert time.perf_counter() - t0 < 0.01


def _timed(fn) -> float:
    import time

    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
