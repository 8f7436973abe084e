"""Watch streams and the fan-out hub.

Events are shared, immutable objects: fan-out appends the same ``Event`` to each matching watcher's
buffer, and prefix matching is done once per distinct prefix per committed batch.

A consumer parked in :meth:`Watch.next` with nothing buffered may install a *sink*: fan-out then
hands it the batch directly (e.g. to write it to the watcher's socket) instead of buffering it and
waking the consumer's task; the per-event task switch is most of a watcher's cost. A sink that
declines (returns False: its socket is backed up or closing) or fails gets the ordinary buffered
path, so order and the backlog limit hold.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Sequence

from ._types import Event, WatchClosed


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Watch:
    """An ordered stream of events for one key prefix. Iterate it, or call ``next(timeout)``."""

    __slots__ = ("prefix", "closed_reason", "_buf", "_cap", "_waiter", "_error", "_on_close", "_floor", "_sink")

    def __init__(
        self,
        prefix: str,
        replay: Iterable[Event],
        queue_size: int,
        on_close: Callable[[Watch], None] | None = None,
        floor: int = 0,
    ) -> None:
        self.prefix = prefix
        # A watch from a revision the store has not reached yet skips live events up to it.
        self._floor = floor
        self.closed_reason: str | None = None
        self._buf: deque[Event] = deque(replay)
        # Replayed history does not count against the live backlog allowance.
        self._cap = max(1, queue_size) + len(self._buf)
        self._waiter: asyncio.Future[None] | None = None
        self._error = False
        self._on_close = on_close
        self._sink: Callable[[Sequence[Event]], bool] | None = None

    def set_sink(self, sink: Callable[[Sequence[Event]], bool] | None) -> None:
        """Deliver batches straight to ``sink`` while the consumer waits with an empty buffer
        (see the module docstring); ``sink`` returns False to have a batch buffered instead."""
        self._sink = sink

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    @property
    def pending(self) -> int:
        return len(self._buf)

    # ------------------------------------------------------------ producer side
    def _push(self, events: Sequence[Event]) -> None:
        if self.closed_reason is not None:
            return
        if self._floor:
            floor = self._floor
            if events[-1].record.mod_revision <= floor:
                return
            events = [e for e in events if e.record.mod_revision > floor]
            self._floor = 0
        sink = self._sink
        if sink is not None and not self._buf:
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                try:
                    if sink(events):
                        return
                except Exception:  # a broken sink must not break the fan-out: buffer from now on
                    self._sink = None
        if len(self._buf) + len(events) > self._cap:
            self._finish(f"watch queue overflow ({self._cap} events pending): consumer too slow", True)
            return
        self._buf.extend(events)
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _finish(self, reason: str, error: bool) -> None:
        if self.closed_reason is not None:
            return
        self.closed_reason = reason
        self._error = error
        if error:
            self._buf.clear()  # the stream is broken; free the backlog now
        self._wake()
        if self._on_close is not None:
            cb, self._on_close = self._on_close, None
            cb(self)

    # ------------------------------------------------------------ consumer side
    def close(self, reason: str = "closed by client") -> None:
        self._finish(reason, False)

    async def next(self, timeout: float | None = None) -> Event | None:
        """The next event; ``None`` on timeout; raises ``WatchClosed`` once closed and drained."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._buf:
                return self._buf.popleft()
            if self.closed_reason is not None:
                raise WatchClosed(self.closed_reason, self._error)
            waiter = loop.create_future()
            self._waiter = waiter
            try:
                if deadline is None:
                    await waiter
                else:
                    if deadline - loop.time() <= 0:
                        return None
                    # a plain timer that completes the waiter: cheaper than a timeout scope, and
                    # this runs once per event per watcher
                    timer = loop.call_at(deadline, _expire, waiter)
                    try:
                        await waiter
                    finally:
                        timer.cancel()
                    if not self._buf and self.closed_reason is None and loop.time() >= deadline:
                        return None
            finally:
                self._waiter = None

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> Event:
        try:
            ev = await self.next()
        except WatchClosed as e:
            if e.error:
                raise
            raise StopAsyncIteration from None
        assert ev is not None
        return ev


def _resource_root(key: str) -> str:
    """``/registry/<group>/<resource>/`` of a store key (the key itself when it is shorter)."""
    i = key.find("/", 1)
    if i > 0:
        i = key.find("/", i + 1)
        if i > 0:
            i = key.find("/", i + 1)
    return key[: i + 1] if i > 0 else key


_Route = tuple[tuple[str, list[Watch], bool], ...]


class WatchHub:
    """Registry of live watchers grouped by prefix.

    Fan-out finds a key's watchers through a route cached per resource root (``/registry/<group>/
    <resource>/``): the prefixes that hold every key of that resource, and the longer ones (a
    namespace, a name) that need a check per key. Prefixes of other resources are never looked at,
    so an event costs the same however many other resources are watched."""

    _MAX_ROUTES = 4096

    def __init__(self) -> None:
        self._by_prefix: dict[str, list[Watch]] = {}
        self._routes: dict[str, _Route] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_prefix.values())

    def add(self, prefix: str, replay: list[Event], queue_size: int, floor: int = 0) -> Watch:
        w = Watch(prefix, replay, queue_size, self._remove, floor)
        lst = self._by_prefix.get(prefix)
        if lst is None:
            lst = self._by_prefix[prefix] = []
            self._routes.clear()  # a new prefix: every route may gain it
        lst.append(w)
        return w

    def _remove(self, w: Watch) -> None:
        lst = self._by_prefix.get(w.prefix)
        if lst is None:
            return
        try:
            lst.remove(w)
        except ValueError:
            return
        if not lst:
            del self._by_prefix[w.prefix]
            self._routes.clear()

    def _route(self, key: str) -> _Route:
        """(prefix, its watchers, whether every key of ``key``'s resource matches it) for each
        prefix that can match ``key``. Exact: a prefix of the key is either a prefix of its root
        (matches every key under the root) or extends the root (checked per key)."""
        root = _resource_root(key)
        route = self._routes.get(root)
        if route is None:
            route = tuple((p, ws, root.startswith(p)) for p, ws in self._by_prefix.items()
                          if root.startswith(p) or p.startswith(root))
            if len(self._routes) >= self._MAX_ROUTES:
                self._routes.clear()
            self._routes[root] = route
        return route

    def publish(self, events: Sequence[Event]) -> None:
        """Deliver a committed batch (revision order) to every matching watcher."""
        if not events or not self._by_prefix:
            return
        if len(events) == 1:  # the usual batch: every matching watcher gets this same sequence
            key = events[0].record.key
            for prefix, watchers, whole in self._route(key):
                if whole or key.startswith(prefix):
                    for w in tuple(watchers):
                        w._push(events)
            return
        matched: dict[str, tuple[list[Watch], list[Event]]] = {}
        # A key under the previous key's root reuses its route: every prefix of such a key is a
        # prefix of that root or extends it, so it is in the route.
        root, route = "", ()
        for e in events:
            key = e.record.key
            if not (root and key.startswith(root)):
                root = _resource_root(key)
                route = self._route(key)
            for prefix, watchers, whole in route:
                if whole or key.startswith(prefix):
                    m = matched.get(prefix)
                    if m is None:
                        matched[prefix] = (watchers, [e])
                    else:
                        m[1].append(e)
        for watchers, evs in matched.values():
            for w in tuple(watchers):
                w._push(evs)

    def close_all(self, reason: str) -> None:
        for watchers in list(self._by_prefix.values()):
            for w in list(watchers):
                w._finish(reason, False)
        self._by_prefix.clear()
        self._routes.clear()
