"""Requests through a balancer: per-try timeouts, budgeted retries, hedging, deadline propagation.

``call`` (async) and ``call_sync`` run one logical request as one or more attempts. An attempt is
a function of the picked :class:`Backend` and the time it may take; it returns a result (which
``failed`` may still classify as a retryable failure, e.g. HTTP 503) or raises. Retries go to
another endpoint when there is one and are allowed only while the :class:`RetryBudget` has room.
The deadline is a context variable: nested calls see what is left, and adapters send it on as
``x-servicenet-timeout-ms`` (and gRPC as its own timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from servicenet.lb.balancer import Balancer, NoEndpoints
from servicenet.lb.budget import RetryBudget
from servicenet.lb.policies import Backend

T = TypeVar("T")
DEADLINE_HEADER = "x-servicenet-timeout-ms"
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("servicenet_lb_deadline", default=None)

CONNECT_ERRORS: tuple[type[BaseException], ...] = (ConnectionRefusedError, ConnectionResetError,
                                                    ConnectionAbortedError, BrokenPipeError)


class DeadlineExceeded(TimeoutError):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """Run the block under a deadline ``seconds`` from now (or the caller's, if sooner)."""
    at = time.monotonic() + seconds
    cur = _deadline.get()
    if cur is not None and cur < at:
        at = cur
    tok = _deadline.set(at)
    try:
        yield at
    finally:
        _deadline.reset(tok)


def remaining() -> float | None:
    at = _deadline.get()
    return None if at is None else at - time.monotonic()


def deadline_from_headers(headers: Any) -> contextlib.AbstractContextManager[Any]:
    """Server side: adopt the caller's deadline from ``x-servicenet-timeout-ms`` (if any)."""
    v = headers.get(DEADLINE_HEADER) if headers is not None else None
    try:
        ms = float(v) if v is not None else None
    except ValueError:
        ms = None
    return deadline(ms / 1000.0) if ms is not None and ms >= 0 else contextlib.nullcontext()


def propagate(headers: dict[str, str], limit: float | None) -> None:
    if limit is not None:
        headers[DEADLINE_HEADER] = str(max(int(limit * 1000), 0))


@dataclass
class RequestPolicy:
    timeout: float | None = None  # per attempt
    retries: int = 2  # at most this many extra attempts (each also needs budget)
    budget: RetryBudget | None = field(default_factory=RetryBudget)
    backoff: float = 0.0  # pause before a retry (seconds, x attempt number)
    hedge_after: float | None = None  # send a second attempt if the first has not answered by then
    idempotent: bool = False  # retries after the request was sent, and hedging, need this
    failed: Callable[[Any], bool] = lambda result: False
    retryable: Callable[[BaseException], bool] = lambda exc: isinstance(exc, CONNECT_ERRORS)


def _limit(policy: RequestPolicy) -> float | None:
    left = remaining()
    if left is not None and left <= 0:
        raise DeadlineExceeded("deadline exceeded")
    if policy.timeout is None:
        return left
    return policy.timeout if left is None else min(left, policy.timeout)


def _may_retry(policy: RequestPolicy, attempt: int, exc: BaseException | None) -> bool:
    if attempt >= policy.retries:
        return False
    if exc is None and not policy.idempotent:
        return False  # a failed answer means the request was processed: only idempotent ones repeat
    if exc is not None and not (policy.idempotent or policy.retryable(exc)):
        return False
    left = remaining()
    if left is not None and left <= 0:
        return False
    return policy.budget is None or policy.budget.try_withdraw()


def call_sync(balancer: Balancer, attempt: Callable[[Backend, float | None], T], *, key: Any = None,
              policy: RequestPolicy | None = None) -> T:
    policy = policy or RequestPolicy()
    if policy.budget is not None:
        policy.budget.deposit()
    prev: Backend | None = None
    n = 0
    while True:
        limit = _limit(policy)
        b = balancer.pick(key, exclude=prev)
        t0 = time.perf_counter()
        try:
            res = attempt(b, limit)
        except BaseException as exc:
            balancer.done(b, False, time.perf_counter() - t0)
            if isinstance(exc, Exception) and _may_retry(policy, n, exc):
                prev, n = b, n + 1
                if policy.backoff:
                    time.sleep(policy.backoff * n)
                continue
            raise
        bad = policy.failed(res)
        balancer.done(b, not bad, time.perf_counter() - t0)
        if bad and _may_retry(policy, n, None):
            prev, n = b, n + 1
            if policy.backoff:
                time.sleep(policy.backoff * n)
            continue
        return res


async def _one(balancer: Balancer, attempt: Callable[[Backend, float | None], Awaitable[T]], b: Backend,
               limit: float | None, policy: RequestPolicy) -> tuple[bool, T]:
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(limit):
            res = await attempt(b, limit)
    except asyncio.CancelledError:
        balancer.done(b, True, None)  # a hedge that lost is no verdict on its endpoint
        raise
    except BaseException:
        balancer.done(b, False, time.perf_counter() - t0)
        raise
    bad = policy.failed(res)
    balancer.done(b, not bad, time.perf_counter() - t0)
    return bad, res


async def call(balancer: Balancer, attempt: Callable[[Backend, float | None], Awaitable[T]], *,
               key: Any = None, policy: RequestPolicy | None = None) -> T:
    policy = policy or RequestPolicy()
    if policy.budget is not None:
        policy.budget.deposit()
    prev: Backend | None = None
    n = 0
    while True:
        limit = _limit(policy)
        b = balancer.pick(key, exclude=prev)
        try:
            if policy.hedge_after is not None and policy.idempotent:
                bad, res = await _hedged(balancer, attempt, b, limit, policy, key)
            else:
                bad, res = await _one(balancer, attempt, b, limit, policy)
        except Exception as exc:
            if _may_retry(policy, n, exc):
                prev, n = b, n + 1
                if policy.backoff:
                    await asyncio.sleep(policy.backoff * n)
                continue
            raise
        if bad and _may_retry(policy, n, None):
            prev, n = b, n + 1
            if policy.backoff:
                await asyncio.sleep(policy.backoff * n)
            continue
        return res


async def _hedged(balancer: Balancer, attempt: Callable[[Backend, float | None], Awaitable[T]],
                  b: Backend, limit: float | None, policy: RequestPolicy, key: Any) -> tuple[bool, T]:
    first = asyncio.ensure_future(_one(balancer, attempt, b, limit, policy))
    tasks = {first}
    try:
        done, _ = await asyncio.wait(tasks, timeout=policy.hedge_after)
        if not done and (policy.budget is None or policy.budget.try_withdraw()):
            try:
                b2 = balancer.pick(key, exclude=b)
            except NoEndpoints:
                b2 = None
            if b2 is not None:
                left = None if limit is None else max(limit - (policy.hedge_after or 0.0), 0.0)
                tasks.add(asyncio.ensure_future(_one(balancer, attempt, b2, left, policy)))
        last_exc: BaseException | None = None
        last: tuple[bool, T] | None = None
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t.exception() is not None:
                    last_exc = t.exception()
                    continue
                bad, res = t.result()
                if not bad:
                    return bad, res
                last = (bad, res)
        if last is not None:
            return last
        assert last_exc is not None
        raise last_exc
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
