"""etcd leases for keys with a time to live (Events), shared between writes as kube-apiserver does.

A lease per write would cost etcd a grant per Event. Instead a lease is reused by the writes that
come while it still has at least the wanted time to live left. Each grant adds a little slack to
the TTL: 5 % of it, at most a minute. That slack is as long as one lease can be reused, and it
bounds how much longer than its TTL an object may live. A lease also serves at most
``max_objects`` keys, so that revoking it deletes a bounded number at once. etcd deletes every key
of a lease when the lease expires, and the watch carries those deletions to every API server's
cache like any other.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable


class Leases:
    """The lease to attach a write to. ``grant(seconds)`` asks etcd for a lease and returns its id."""

    def __init__(self, grant: Callable[[int], Awaitable[int]], *, max_reuse: float = 60.0,
                 max_objects: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        self._grant = grant
        self._max_reuse = max_reuse
        self._max_objects = max_objects
        self._clock = clock
        self._lock = asyncio.Lock()
        self._id = 0
        self._expires = 0.0  # when the current lease runs out (by our clock, from before the grant)
        self._attached = 0
        self.granted = 0

    async def lease_for(self, ttl: float) -> int:
        """A lease id that keeps a key for at least ``ttl`` seconds from now."""
        async with self._lock:
            now = self._clock()
            if self._id and now + ttl < self._expires and self._attached < self._max_objects:
                self._attached += 1
                return self._id
            seconds = math.ceil(ttl + min(ttl * 0.05, self._max_reuse))
            self._id = await self._grant(seconds)
            self._expires = now + seconds
            self._attached = 1
            self.granted += 1
            return self._id

    def forget(self) -> None:
        """Stop reusing the current lease (etcd said it does not know it, e.g. after a restore)."""
        self._id = 0
