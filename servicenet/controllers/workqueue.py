"""A rate-limited work queue keyed by object (client-go ``workqueue`` semantics).

A key is never processed by two workers at once; adding a key that is waiting is a no-op;
adding one that is being processed re-queues it once processing is done. ``add_rate_limited``
re-adds with per-key exponential backoff until ``forget``. ``finished(key)`` waits until no worker
processes a key (another controller can let this one go first).
"""

from __future__ import annotations

import asyncio
from collections import deque


class WorkQueue:
    def __init__(self, name: str, base_delay: float = 0.005, max_delay: float = 30.0) -> None:
        self.name = name
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._settle: dict[str, list[asyncio.Future[None]]] = {}
        self._wakeup = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._closed or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._wakeup.set()

    def add_after(self, key: str, delay: float) -> None:
        if self._closed:
            return
        if delay <= 0:
            self.add(key)
            return
        old = self._timers.get(key)
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        if old is not None:
            if old.when() <= when:
                return
            old.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: str) -> None:
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        self.add_after(key, min(self.base_delay * (2**n), self.max_delay))

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)

    def processing(self, key: str) -> bool:
        return key in self._processing

    async def finished(self, key: str) -> None:
        """Return once no worker processes ``key`` (at once if none does), or the queue shuts down.
        A key that only waits in the queue does not count: behind a backlog that could be long."""
        if self._closed or key not in self._processing:
            return
        fut = asyncio.get_running_loop().create_future()
        self._settle.setdefault(key, []).append(fut)
        try:
            await fut
        finally:
            waiters = self._settle.get(key)
            if waiters is not None and fut in waiters:  # cancelled: not woken by done()
                waiters.remove(fut)
                if not waiters:
                    del self._settle[key]

    def _wake_settled(self, key: str) -> None:
        for fut in self._settle.pop(key, ()):
            if not fut.done():
                fut.set_result(None)

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    async def get(self) -> str:
        while not self._queue:
            if self._closed:
                raise asyncio.CancelledError
            self._wakeup.clear()
            await self._wakeup.wait()
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wakeup.set()
        if key in self._settle:
            self._wake_settled(key)

    def shutdown(self) -> None:
        self._closed = True
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        for key in list(self._settle):
            self._wake_settled(key)
        self._wakeup.set()
