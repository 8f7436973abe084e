"""A Finagle-style retry budget: retries may add ``percent`` of recent requests plus a floor (pure).

Each request deposits; each retry withdraws. Over a sliding ``ttl`` window the balance is
``min_per_sec * ttl + percent * requests - retries``; a retry is allowed only while it is >= 1.
Finagle's defaults: 20 % of requests, 10 retries per second, a 10-second window.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RetryBudget:
    def __init__(self, percent: float = 0.2, min_per_sec: float = 10.0, ttl: float = 10.0,
                 buckets: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        if not 0.0 <= percent <= 1000.0:
            raise ValueError("percent must be within [0, 1000]")
        self.percent = percent
        self.min_per_sec = min_per_sec
        self.ttl = ttl
        self._width = ttl / buckets
        self._n = buckets
        self._deposits = [0] * buckets
        self._withdrawals = [0] * buckets
        self._epoch = 0  # index of the current bucket (monotonic count of widths)
        self._clock = clock
        self._lock = threading.Lock()
        self.retries = 0
        self.exhausted = 0

    def _advance(self) -> int:
        e = int(self._clock() / self._width)
        if e != self._epoch:
            for k in range(self._epoch + 1, min(e, self._epoch + self._n) + 1):
                self._deposits[k % self._n] = 0
                self._withdrawals[k % self._n] = 0
            self._epoch = e
        return e % self._n

    def deposit(self) -> None:
        with self._lock:
            self._deposits[self._advance()] += 1

    def balance(self) -> float:
        with self._lock:
            self._advance()
            return (self.min_per_sec * self.ttl + self.percent * sum(self._deposits)
                    - sum(self._withdrawals))

    def try_withdraw(self) -> bool:
        with self._lock:
            i = self._advance()
            bal = self.min_per_sec * self.ttl + self.percent * sum(self._deposits) - sum(self._withdrawals)
            if bal < 1.0:
                self.exhausted += 1
                return False
            self._withdrawals[i] += 1
            self.retries += 1
            return True
