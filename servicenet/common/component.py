"""The protocol every long-running servicenet component implements."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Iterable
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@runtime_checkable
class Component(Protocol):
    name: str

    async def start(self) -> None:
        """Return once the component serves (or has synced enough to be useful)."""

    async def stop(self) -> None:
        """Shut down cleanly and remove whatever the component created."""

    def describe(self) -> dict[str, str]:
        """What the component listens on, for ``servicenet up`` to print."""


async def cancel_and_wait(task: asyncio.Task[Any] | asyncio.Future[Any] | None) -> None:
    """Cancel a background task and wait until it has finished (its cancellation swallowed)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def cancel_all(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel every background task, then wait for each to finish; what they raise on the way out
    (their cancellation, or an error they died of) is swallowed: a stop must not fail on it."""
    live = [t for t in tasks if t is not None]
    for t in live:
        t.cancel()
    for t in live:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t


async def bounded(aw: Awaitable[T], timeout: float | None) -> T:
    """Await ``aw`` for at most ``timeout`` seconds (``TimeoutError`` after that).

    Use this instead of ``asyncio.wait_for``: on Python 3.11 ``wait_for`` returns the result and
    drops the cancellation when the awaited future completes in the same loop iteration as a
    ``cancel()`` of the caller, so a component's ``stop()`` could wait forever on a task that
    never learned it was cancelled. ``asyncio.timeout`` keeps the cancellation."""
    async with asyncio.timeout(timeout):
        return await aw
