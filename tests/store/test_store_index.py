"""Pure core: write planning and the MVCC index, with literal expectations (no I/O)."""

from __future__ import annotations

import pytest

from servicenet.store import (
    ADDED,
    DELETED,
    MODIFIED,
    Compacted,
    Event,
    FutureRevision,
    Index,
    KeyExists,
    KeyNotFound,
    Record,
    RevisionConflict,
)
from servicenet.store._plan import encode_at, plan_create, plan_delete, plan_update


def rec(key: str, rev: int, create: int | None = None, body: str = "") -> Record:
    return Record(key, f'{{"v":"{body or key}@{rev}"}}'.encode(), create or rev, rev)


# ------------------------------------------------------------------ planning
def test_encode_sets_resource_version_without_mutating() -> None:
    obj = {"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "7"}}
    assert encode_at(obj, 42) == b'{"kind":"Pod","metadata":{"name":"a","resourceVersion":"42"}}'
    assert obj == {"kind": "Pod", "metadata": {"name": "a", "resourceVersion": "7"}}
    assert encode_at({"kind": "X"}, 3) == b'{"kind":"X","metadata":{"resourceVersion":"3"}}'


def test_plan_create_update_delete() -> None:
    ev = plan_create(None, "/k", {"metadata": {"name": "k"}}, 5)
    assert ev == Event(ADDED, Record("/k", b'{"metadata":{"name":"k","resourceVersion":"5"}}', 5, 5), None)
    with pytest.raises(KeyExists):
        plan_create(ev.record, "/k", {}, 6)

    up = plan_update(ev.record, "/k", {"metadata": {"name": "k"}, "x": 1}, 9, 5)
    assert up.type == MODIFIED
    assert up.record == Record("/k", b'{"metadata":{"name":"k","resourceVersion":"9"},"x":1}', 5, 9)
    assert up.prev is ev.record
    with pytest.raises(RevisionConflict) as ei:
        plan_update(up.record, "/k", {}, 10, 5)
    assert (ei.value.expected, ei.value.actual) == (5, 9)
    with pytest.raises(KeyNotFound):
        plan_update(None, "/k", {}, 10, None)

    de = plan_delete(up.record, "/k", 12, None)
    assert de.type == DELETED
    assert de.record == Record("/k", b'{"metadata":{"name":"k","resourceVersion":"12"},"x":1}', 5, 12)
    assert de.prev is up.record
    with pytest.raises(RevisionConflict):
        plan_delete(up.record, "/k", 12, 8)


# --------------------------------------------------------------------- index
def build() -> Index:
    """a@1 b@2 c@3, then b modified @4, a deleted @5, d created @6 (times 0..5)."""
    ix = Index(history_seconds=10, min_history=0)
    a1, b2, c3 = rec("/p/a", 1), rec("/p/b", 2), rec("/p/c", 3)
    b4 = rec("/p/b", 4, create=2)
    a5 = rec("/p/a", 5, create=1)
    d6 = rec("/p/d", 6)
    events = [
        Event(ADDED, a1, None),
        Event(ADDED, b2, None),
        Event(ADDED, c3, None),
        Event(MODIFIED, b4, b2),
        Event(DELETED, a5, a1),
        Event(ADDED, d6, None),
    ]
    for t, ev in enumerate(events):
        ix.apply(ev, float(t))
    return ix


def keys_revs(records: list[Record]) -> list[tuple[str, int]]:
    return [(r.key, r.mod_revision) for r in records]


def test_list_now_and_at_past_revisions() -> None:
    ix = build()
    recs, served, more = ix.list("/p/")
    assert (keys_revs(recs), served, more) == ([("/p/b", 4), ("/p/c", 3), ("/p/d", 6)], 6, False)
    assert keys_revs(ix.list("/p/", revision=3)[0]) == [("/p/a", 1), ("/p/b", 2), ("/p/c", 3)]
    assert keys_revs(ix.list("/p/", revision=4)[0]) == [("/p/a", 1), ("/p/b", 4), ("/p/c", 3)]
    assert keys_revs(ix.list("/p/", revision=5)[0]) == [("/p/b", 4), ("/p/c", 3)]
    assert ix.list("/p/", revision=0)[0] == []
    with pytest.raises(FutureRevision):
        ix.list("/p/", revision=7)


def test_list_pagination_at_revision() -> None:
    ix = build()
    page1 = ix.list("/p/", limit=2, revision=3)
    assert (keys_revs(page1[0]), page1[1], page1[2]) == ([("/p/a", 1), ("/p/b", 2)], 3, True)
    page2 = ix.list("/p/", limit=2, start_after="/p/b", revision=3)
    assert (keys_revs(page2[0]), page2[2]) == ([("/p/c", 3)], False)
    # Exactly `limit` left: no more.
    assert ix.list("/p/", limit=3, revision=3)[2] is False
    # Current-state pagination.
    assert keys_revs(ix.list("/p/", limit=1, start_after="/p/b")[0]) == [("/p/c", 3)]
    assert ix.list("/p/", limit=1, start_after="/p/c")[2] is False


def test_prefix_boundaries_and_count() -> None:
    ix = Index()
    for i, key in enumerate(["/r/pods/default/a", "/r/pods/default2/a", "/r/pods/dev/x", "/r/pod"], 1):
        ix.apply(Event(ADDED, rec(key, i), None), 0.0)
    assert [r.key for r in ix.list("/r/pods/default/")[0]] == ["/r/pods/default/a"]
    assert ix.count("/r/pods/") == 3
    assert ix.count("/r/") == 4
    assert ix.count("") == 4
    assert ix.count("/r/pods/default/") == 1
    assert ix.count("/r/pods/", start_after="/r/pods/default/a") == 2
    assert ix.count("/r/pods/", start_after="/r/pods/default2/") == 2  # need not be a key
    assert ix.count("/r/pods/", start_after="/r/pods/dev/x") == 0
    assert ix.count("/r/pods/", start_after="/a") == 3
    assert ix.count("/r/pods/", start_after="/z") == 0
    # start_after before the prefix range is ignored; after it yields nothing.
    assert [r.key for r in ix.list("/r/pods/d", start_after="/a")[0]] == [
        "/r/pods/default/a",
        "/r/pods/default2/a",
        "/r/pods/dev/x",
    ]
    assert ix.list("/r/pods/", start_after="/z")[0] == []


def test_events_after_and_compaction() -> None:
    ix = build()
    assert [e.revision for e in ix.events_after("/p/", 3)] == [4, 5, 6]
    assert [e.revision for e in ix.events_after("/p/b", 0)] == [2, 4]
    assert ix.compact(3) == 3
    assert [e.revision for e in ix.events_after("/p/", 3)] == [4, 5, 6]
    with pytest.raises(Compacted) as ei:
        ix.events_after("/p/", 2)
    assert (ei.value.compact_revision, ei.value.requested) == (3, 2)
    with pytest.raises(Compacted):
        ix.list("/p/", revision=2)
    assert keys_revs(ix.list("/p/", revision=3)[0]) == [("/p/a", 1), ("/p/b", 2), ("/p/c", 3)]
    # Compacting beyond the head clips to the head.
    assert ix.compact(100) == 6
    assert ix.history_len == 0


def test_trim_by_time_and_min_history() -> None:
    ix = build()  # events at t=0..5, window 10 s
    assert ix.trim(9.5) == 0  # nothing older than 10 s
    assert ix.trim(12.5) == 3  # revisions 1..3 were applied at t=0,1,2, before the cutoff 2.5
    assert ix.history_len == 3
    keep = Index(history_seconds=10, min_history=3)
    for t in range(6):
        keep.apply(Event(ADDED, rec(f"/q/{t}", t + 1), None), float(t))
    assert keep.trim(100.0) == 3
    assert keep.history_len == 3


def test_max_history_cap() -> None:
    ix = Index(min_history=0, max_history=2)
    for i in range(1, 6):
        ix.apply(Event(ADDED, rec(f"/k/{i}", i), None), 0.0)
    assert ix.history_len == 2
    assert ix.compact_revision == 3
    assert len(ix) == 5


def test_apply_rejects_non_increasing_revision() -> None:
    ix = build()
    with pytest.raises(ValueError):
        ix.apply(Event(ADDED, rec("/p/z", 6), None), 9.0)
