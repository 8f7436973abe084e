"""Overload protection: body size limit, max requests in flight with per-user fair queueing, and
per-request timeouts (upstream's max-in-flight filter, a simplified API Priority and Fairness, and
the request-timeout filter).

* Bodies over 3 MiB are refused with 413 before they are read.
* Read-only and mutating requests get separate seat pools (upstream defaults 400 and 200).
  Long-running requests (watches, exec/attach/port-forward, follow logs, proxy) and the
  ``system:masters`` group are exempt, as upstream; so are the health endpoints and the cluster's
  own components (nodes, controller manager, scheduler, proxy, DNS, ingress).
* One user may hold at most half of a pool; past that, or when the pool is full, the request waits
  in that user's queue. Freed seats go to the queues round-robin, so a flood from one user queues
  behind itself while other users keep getting seats. A full queue, or a wait longer than
  ``queue_wait``, is a 429 with ``Retry-After`` and upstream's plain-text body.
* ``?timeout=`` (a Go duration, default 60 s) bounds every other request: past it the handler is
  cancelled and the client gets a 504 Status. A write the store already accepted still commits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from servicenet.api import errors
from servicenet.api import rbac_policy as policy
from servicenet.api.rbac import MASTERS, User
from servicenet.apiserver.authapi import USER
from servicenet.apiserver.front import Kept
from servicenet.common.component import bounded

MAX_BODY = 3 * 1024 * 1024
TOO_MANY = "Too many requests, please try again later.\n"
_LONG_SUBS = ("exec", "attach", "portforward", "proxy")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float | None:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in seconds; None if malformed."""
    text = text.strip()
    if not text:
        return None
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    return total if pos == len(text) else None


def is_long_running(request: web.Request) -> bool:
    q = request.query
    if q.get("watch") in ("1", "true", "True") or "/watch/" in request.path:
        return True
    parts = request.path.rstrip("/").split("/")
    if parts and parts[-1] in _LONG_SUBS or "proxy" in parts:
        return True
    return parts[-1:] == ["log"] and q.get("follow") in ("1", "true", "True")


# The cluster's own components (upstream gives them the system / workload-high priority levels;
# here they are simply exempt, like system:masters, so that a user flood never throttles them).
SYSTEM_USERS = frozenset({policy.CONTROLLER_MANAGER[0], policy.SCHEDULER[0], policy.PROXY[0], policy.DNS[0],
                          policy.INGRESS[0]})


def is_exempt(user: User) -> bool:
    return MASTERS in user.groups or "system:nodes" in user.groups or user.name in SYSTEM_USERS


@dataclass
class Pool:
    limit: int
    in_use: int = 0
    by_user: collections.Counter[str] = field(default_factory=collections.Counter)
    queues: dict[str, collections.deque[asyncio.Future[None]]] = field(default_factory=dict)
    order: collections.deque[str] = field(default_factory=collections.deque)  # round-robin of queued users

    def can_take(self, user: str) -> bool:
        return self.in_use < self.limit and self.by_user[user] < max(1, self.limit // 2)

    def take(self, user: str) -> None:
        self.in_use += 1
        self.by_user[user] += 1

    def give_back(self, user: str) -> None:
        self.in_use -= 1
        self.by_user[user] -= 1
        if self.by_user[user] <= 0:
            del self.by_user[user]
        self.dispatch()

    def dispatch(self) -> None:
        """Hand free seats to the queued users, one request per user in turn."""
        rounds = len(self.order)
        while self.order and self.in_use < self.limit and rounds > 0:
            user = self.order.popleft()
            q = self.queues.get(user)
            while q and q[0].done():  # timed out or cancelled waiters
                q.popleft()
            if not q:
                self.queues.pop(user, None)
                rounds = len(self.order)
                continue
            if self.by_user[user] >= max(1, self.limit // 2):
                self.order.append(user)
                rounds -= 1
                continue
            fut = q.popleft()
            self.take(user)
            fut.set_result(None)
            if q:
                self.order.append(user)
            else:
                self.queues.pop(user, None)
            rounds = len(self.order)


class Deadlines:
    """The requests' deadlines, enforced by one sweep every ``tick`` seconds while any is pending
    (``asyncio.timeout`` would arm and cancel a loop timer per request, a measurable share of a
    create). A task past its deadline is cancelled and remembered as expired; a deadline is thus
    met within one tick late."""

    def __init__(self, tick: float = 0.05) -> None:
        self.tick = tick
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweep_at: asyncio.TimerHandle | None = None

    def add(self, task: asyncio.Task[Any], deadline: float, loop: asyncio.AbstractEventLoop) -> None:
        self._due[task] = deadline
        if self._sweep_at is None:
            self._sweep_at = loop.call_later(self.tick, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        late = [t for t, d in self._due.items() if d <= now]
        for t in late:
            del self._due[t]
            self._expired.add(t)
            t.cancel()
        self._sweep_at = loop.call_later(self.tick, self._sweep, loop) if self._due else None

    def finish(self, task: asyncio.Task[Any]) -> bool:
        """Forget ``task``'s deadline; whether it had expired (and so cancelled the task)."""
        if self._due.pop(task, None) is not None:
            return False
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def pending(self) -> int:
        return len(self._due)


class FlowControl:
    def __init__(self, max_readonly: int = 400, max_mutating: int = 200, queue_length: int = 50,
                 queue_wait: float = 5.0, default_timeout: float = 60.0) -> None:
        self.deadlines = Deadlines()
        self.pools = {"ro": Pool(max_readonly), "mut": Pool(max_mutating)}
        self.queue_length = queue_length
        self.queue_wait = queue_wait
        self.default_timeout = default_timeout
        self.rejected = 0
        self._long: Kept[tuple[str, str], bool] = Kept()  # is_long_running per (path, query string)

    async def _acquire(self, pool: Pool, user: str) -> bool:
        if pool.can_take(user) and not pool.queues:
            pool.take(user)
            return True
        q = pool.queues.get(user)
        if q is None:
            q = pool.queues[user] = collections.deque()
            pool.order.append(user)
        if len(q) >= self.queue_length:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        q.append(fut)
        pool.dispatch()
        try:
            await bounded(asyncio.shield(fut), self.queue_wait)
            return True
        except TimeoutError:
            if fut.done() and not fut.cancelled():  # granted just as the wait ended
                return True
            fut.cancel()
            return False
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                pool.give_back(user)
            fut.cancel()
            raise

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > MAX_BODY:
            raise errors.ApiStatusError(413, "RequestEntityTooLarge",
                                        f"Request entity too large: limit is {MAX_BODY}")
        key = (request.path, request.query_string)
        long = self._long.get(key)
        if long is None:
            long = self._long.put(key, is_long_running(request) or key[0] in ("/healthz", "/livez", "/readyz"))
        if long:
            return await handler(request)  # type: ignore[no-any-return]
        timeout = self.default_timeout
        if key[1] and request.query.get("timeout"):
            t = parse_duration(request.query["timeout"])
            if t is None:
                raise errors.bad_request(f"invalid timeout specified in the request URL: {request.query['timeout']}")
            timeout = min(t, self.default_timeout) if t > 0 else self.default_timeout
        user: User | None = request.get(USER)
        exempt = user is not None and is_exempt(user)
        name = user.name if user is not None else ""
        pool = self.pools["ro" if request.method in ("GET", "HEAD", "OPTIONS") else "mut"]
        if not exempt:
            if not await self._acquire(pool, name):
                self.rejected += 1
                resp = web.Response(status=429, text=TOO_MANY, headers={"Retry-After": "1"})
                resp.force_close()  # a rejected (slow) client does not keep its connection either
                return resp
        task = asyncio.current_task()
        assert task is not None
        cancelling = task.cancelling()
        loop = asyncio.get_running_loop()
        self.deadlines.add(task, loop.time() + timeout, loop)
        try:
            try:
                resp = await handler(request)
            except asyncio.CancelledError:
                # past its deadline: the sweep's cancellation becomes a 504, unless another one (the
                # client went away, the server stops) is pending too (asyncio.timeout's rule)
                if self.deadlines.finish(task) and task.uncancel() <= cancelling:
                    raise errors.ApiStatusError(504, "Timeout", "Timeout: request did not complete within "
                                                                "requested timeout - context deadline exceeded") from None
                raise
            if self.deadlines.finish(task):
                task.uncancel()  # it finished as its deadline passed: it keeps its answer
            return resp  # type: ignore[no-any-return]
        finally:
            if self.deadlines.finish(task):  # another error as the deadline passed
                task.uncancel()
            if not exempt:
                with contextlib.suppress(Exception):
                    pool.give_back(name)
