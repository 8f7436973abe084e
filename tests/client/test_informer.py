"""Informer behaviour over a fake transport: re-list on 410, reconnect with backoff, the index."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from servicenet.client import ApiError
from servicenet.client.informer import BACKOFF_CAP, BACKOFF_START, Cache, Informer, next_backoff

from .fake import FakeApi, SleepRecorder, event, pod

Events = list[tuple[str, str, str | None]]


def recorder(inf: Informer) -> Events:
    seen: Events = []

    def on(etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        seen.append((etype, obj["metadata"]["name"], old["metadata"]["resourceVersion"] if old else None))

    inf.add_handler(on)
    return seen


async def run_until_idle(api: FakeApi, inf: Informer) -> None:
    await inf.start()
    try:
        await asyncio.wait_for(api.idle.wait(), 2.0)  # every scripted connection consumed
    finally:
        await inf.stop()


async def test_watch_events_update_cache_and_resume_from_last_rv() -> None:
    api = FakeApi([pod("a", 5)], revision=5)
    api.scripts.append([event("MODIFIED", pod("a", 6)), event("ADDED", pod("b", 7)),
                        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}}])
    sleep = SleepRecorder()
    inf = Informer(api, "v1", "pods", sleep=sleep)  # type: ignore[arg-type]
    seen = recorder(inf)
    await run_until_idle(api, inf)
    assert seen == [("ADDED", "a", None), ("MODIFIED", "a", "5"), ("ADDED", "b", None)]
    assert api.watches == ["5", "9"]  # the second watch resumes after the bookmark, no re-list
    assert api.lists == 1 and inf.synced


async def test_410_relists_and_emits_the_difference() -> None:
    api = FakeApi([pod("a", 5), pod("b", 5)], revision=5)

    def compact() -> None:  # while the informer was away: a deleted, b changed, c created
        del api.items["a"]
        api.items["b"] = pod("b", 8)
        api.items["c"] = pod("c", 9)
        api.revision = 9

    def expire() -> Iterator[dict[str, Any]]:
        compact()
        yield {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}

    api.scripts.append(expire())
    sleep = SleepRecorder()
    inf = Informer(api, "v1", "pods", sleep=sleep)  # type: ignore[arg-type]
    seen = recorder(inf)
    await run_until_idle(api, inf)
    assert api.lists == 2 and inf.relists == 2
    # as client-go's Replace: the listed objects first, then deletions of what the list lacked
    assert seen[2:] == [("MODIFIED", "b", "5"), ("ADDED", "c", None), ("DELETED", "a", None)]
    assert sorted(o["metadata"]["name"] for o in inf.list()) == ["b", "c"]
    assert api.watches == ["5", "9"]  # the new watch starts at the re-list's revision
    assert sleep.delays == []  # a 410 re-lists at once


async def test_a_relist_is_taken_page_by_page() -> None:
    api = FakeApi([pod(f"p{i}", i + 1) for i in range(25)], revision=30)
    inf = Informer(api, "v1", "pods", sleep=SleepRecorder(), page_size=10)  # type: ignore[arg-type]
    seen = recorder(inf)
    await run_until_idle(api, inf)
    assert api.lists == 1 and api.pages == 3
    assert len(inf.list()) == 25 and [e[0] for e in seen] == ["ADDED"] * 25
    assert api.watches == ["30"]


async def test_410_from_the_watch_request_itself_relists() -> None:
    api = FakeApi([pod("a", 5)], revision=5)
    api.scripts.append([ApiError(410, {"reason": "Expired"})])
    inf = Informer(api, "v1", "pods", sleep=SleepRecorder())  # type: ignore[arg-type]
    await run_until_idle(api, inf)
    assert api.lists == 2


async def test_reconnect_backs_off_and_resets_after_a_good_watch() -> None:
    api = FakeApi([pod("a", 5)], revision=5)
    for _ in range(3):
        api.scripts.append([ConnectionResetError("peer went away")])
    api.scripts.append([event("MODIFIED", pod("a", 6))])  # a watch that worked, then ended
    api.scripts.append([ApiError(500, {"reason": "InternalError"})])
    sleep = SleepRecorder()
    inf = Informer(api, "v1", "pods", sleep=sleep)  # type: ignore[arg-type]
    await run_until_idle(api, inf)
    # 3 failures double the delay; the good watch resets it (the informer also pauses after a clean end)
    bases = [BACKOFF_START, BACKOFF_START * 2, BACKOFF_START * 4, BACKOFF_START, BACKOFF_START * 2]
    assert len(sleep.delays) == len(bases)
    for got, base in zip(sleep.delays, bases, strict=True):
        assert 0.5 * base <= got < 1.5 * base, (got, base)
    assert api.lists == 1  # transport errors never re-list
    assert api.watches == ["5", "5", "5", "5", "6", "6"]  # the last one stays open


@pytest.mark.parametrize("start, steps, want", [
    (BACKOFF_START, 1, BACKOFF_START * 2), (BACKOFF_START, 5, BACKOFF_START * 32), (BACKOFF_START, 12, BACKOFF_CAP),
])
def test_next_backoff(start: float, steps: int, want: float) -> None:
    b = start
    for _ in range(steps):
        b = next_backoff(b)
    assert b == pytest.approx(want)


def test_cache_index_follows_updates_and_removals() -> None:
    c = Cache()
    c.upsert(pod("a", 1, app="web"))
    c.add_index("app", lambda o: [o["metadata"]["labels"]["app"]] if "app" in o["metadata"]["labels"] else [])
    assert [o["metadata"]["name"] for o in c.by_index("app", "web")] == ["a"]  # indexed when added late
    c.upsert(pod("b", 2, app="web"))
    c.upsert(pod("a", 3, app="db"))  # moves a from web to db
    assert [o["metadata"]["name"] for o in c.by_index("app", "web")] == ["b"]
    assert [o["metadata"]["name"] for o in c.by_index("app", "db")] == ["a"]
    c.remove(pod("b", 2))
    assert c.by_index("app", "web") == [] and "web" not in c._indexes["app"]  # empty buckets go away
    c.upsert(pod("a", 4))  # no label: in no bucket
    assert c.by_index("app", "db") == []
    assert c.by_index("app", "nothing") == []
