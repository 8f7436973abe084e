"""flowcontrol.Deadlines: one sweep enforces every request's deadline (what the 504 rests on)."""

from __future__ import annotations

import asyncio
import time

from servicenet.apiserver.flowcontrol import Deadlines


async def test_a_task_past_its_deadline_is_cancelled_within_a_tick() -> None:
    d = Deadlines(tick=0.02)
    loop = asyncio.get_running_loop()
    started = time.monotonic()

    async def slow() -> None:
        await asyncio.sleep(10)

    task = asyncio.ensure_future(slow())
    await asyncio.sleep(0)
    d.add(task, loop.time() + 0.1, loop)
    try:
        await task
        raise AssertionError("not cancelled")
    except asyncio.CancelledError:
        pass
    assert 0.09 < time.monotonic() - started < 1.0
    assert d.finish(task) is True and d.finish(task) is False  # told once
    assert d.pending() == 0


async def test_a_task_done_in_time_is_left_alone_and_the_sweep_stops() -> None:
    d = Deadlines(tick=0.01)
    loop = asyncio.get_running_loop()
    fast = asyncio.ensure_future(asyncio.sleep(0.02, "ok"))
    slow = asyncio.ensure_future(asyncio.sleep(10))
    d.add(fast, loop.time() + 5, loop)
    d.add(slow, loop.time() + 0.05, loop)
    assert await fast == "ok"
    assert d.finish(fast) is False
    await asyncio.gather(slow, return_exceptions=True)
    assert slow.cancelled() and d.finish(slow) is True
    assert d.pending() == 0
    await asyncio.sleep(0.05)
    assert d._sweep_at is None  # nothing pending: no timer left armed
