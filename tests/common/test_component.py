"""``bounded`` and ``cancel_and_wait``: a stop() must never lose the cancellation it sends."""

from __future__ import annotations

import asyncio

import pytest

from servicenet.common.component import bounded, cancel_and_wait

pytestmark = pytest.mark.asyncio


async def test_bounded_returns_the_result() -> None:
    assert await bounded(asyncio.sleep(0, "done"), 5) == "done"


async def test_bounded_times_out() -> None:
    with pytest.raises(TimeoutError):
        await bounded(asyncio.Event().wait(), 0.01)


async def test_cancel_racing_a_completed_future_is_kept() -> None:
    """The future completes and the caller is cancelled in the same loop iteration (a thread
    finishing a netlink batch just as the proxy stops). Python 3.11's ``wait_for`` returned the
    result and swallowed the cancel; the runner then waited forever and ``stop()`` hung."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()
    reached = asyncio.Event()

    async def runner() -> None:
        reached.set()
        await bounded(fut, 60)
        await asyncio.Event().wait()  # a swallowed cancel parks the runner here for good

    task = loop.create_task(runner())
    await reached.wait()
    fut.set_result("batch sent")
    task.cancel()
    await bounded(cancel_and_wait(task), 5)
    assert task.cancelled()
