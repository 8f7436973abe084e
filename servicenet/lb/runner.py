"""Sources for synchronous programs: run them on an event loop in a daemon thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from servicenet.lb.sources import Source


class BackgroundSources:
    """``with BackgroundSources(src): ...`` keeps ``src`` feeding its balancers from a thread."""

    def __init__(self, *sources: Source | Callable[[], Source]) -> None:
        self._specs = sources
        self.sources: list[Source] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="servicenet-lb", daemon=True)

    def _run(self, coro: Awaitable[Any], timeout: float | None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)  # type: ignore[arg-type]

    def start(self, timeout: float | None = 30.0) -> BackgroundSources:
        self._thread.start()

        async def go() -> None:
            for spec in self._specs:  # sources own asyncio objects: build them on the loop
                s = spec if isinstance(spec, Source) else spec()
                self.sources.append(s)
                await s.start()

        self._run(go(), timeout)
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        async def halt() -> None:
            for s in self.sources:
                await s.stop()

        try:
            self._run(halt(), timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            self._loop.close()

    def __enter__(self) -> BackgroundSources:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
