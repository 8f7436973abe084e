"""The watch hub's direct-delivery sink: fan-out hands a batch to a parked consumer's sink instead of
buffering it, and falls back to the buffer (keeping order) whenever the sink cannot take it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from servicenet.store import ADDED, Event, Record
from servicenet.store.watch import WatchHub


def ev(rev: int) -> Event:
    return Event(ADDED, Record(f"/registry/configmaps/ns/c{rev}", b"{}", rev, rev), None)


async def parked(w: object) -> asyncio.Task[Event | None]:
    task = asyncio.create_task(w.next(timeout=5))  # type: ignore[attr-defined]
    await asyncio.sleep(0)  # let it park on its waiter
    return task


async def test_sink_takes_batches_while_consumer_waits() -> None:
    hub = WatchHub()
    w = hub.add("/registry/configmaps/", [], 10)
    got: list[int] = []

    def sink(events: Sequence[Event]) -> bool:
        got.extend(e.revision for e in events)
        return True
    w.set_sink(sink)
    task = await parked(w)
    hub.publish([ev(1), ev(2)])
    hub.publish([ev(3)])
    assert got == [1, 2, 3] and w.pending == 0 and not task.done()
    w.close()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 1)


async def test_declining_or_failing_sink_falls_back_to_the_buffer_in_order() -> None:
    hub = WatchHub()
    w = hub.add("/registry/configmaps/", [], 10)
    answers = iter([False])
    got: list[int] = []

    def sink(events: Sequence[Event]) -> bool:
        if next(answers, None) is None:
            raise RuntimeError("broken sink")
        got.extend(e.revision for e in events)
        return False
    w.set_sink(sink)
    task = await parked(w)
    hub.publish([ev(1)])  # declined: buffered, the consumer wakes
    hub.publish([ev(2)])  # the buffer is not empty: not offered to the sink, buffered behind 1
    assert got == [1] and w.pending == 2
    first = await task
    assert first is not None and first.revision == 1
    second = await w.next(timeout=0)
    assert second is not None and second.revision == 2
    task = await parked(w)
    hub.publish([ev(3)])  # the sink raises: disabled, the event is buffered
    third = await task
    assert third is not None and third.revision == 3
    hub.publish([ev(4)])  # nobody parked: buffered
    assert w.pending == 1


async def test_sink_not_used_with_history_pending_or_consumer_busy() -> None:
    hub = WatchHub()
    w = hub.add("/registry/configmaps/", [ev(1)], 10)
    calls: list[int] = []
    w.set_sink(lambda events: calls.append(len(events)) is None)
    hub.publish([ev(2)])  # replayed history still buffered: the live event queues behind it
    assert calls == [] and w.pending == 2
