"""The protocol every long-running servicenet component implements."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol, runtime_checkable


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
