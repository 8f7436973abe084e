"""Pure endpoint picker for the userspace proxy: round-robin or random, ClientIP affinity."""

from __future__ import annotations

import random
from collections.abc import Sequence

Addr = tuple[str, int]


class Balancer:
    """Chooses a backend for a new connection/flow.

    Round-robin walks the endpoint list (kept in the given order); ``random`` draws
    uniformly. With ``affinity_timeout`` set, a client IP sticks to the endpoint it last
    used until the entry has been idle that long or the endpoint disappears.
    """

    __slots__ = ("endpoints", "mode", "affinity_timeout", "_next", "_affinity", "_rng")

    def __init__(self, endpoints: Sequence[Addr] = (), mode: str = "rr", affinity_timeout: float | None = None,
                 rng: random.Random | None = None) -> None:
        if mode not in ("rr", "random"):
            raise ValueError(f"unknown balancing mode {mode!r}")
        self.endpoints: tuple[Addr, ...] = tuple(endpoints)
        self.mode = mode
        self.affinity_timeout = affinity_timeout
        self._next = 0
        self._affinity: dict[str, tuple[Addr, float]] = {}
        self._rng = rng or random.Random()

    def update(self, endpoints: Sequence[Addr], affinity_timeout: float | None) -> None:
        eps = tuple(endpoints)
        if eps != self.endpoints:
            live = set(eps)
            self._affinity = {c: v for c, v in self._affinity.items() if v[0] in live}
            self.endpoints = eps
            self._next = self._next % len(eps) if eps else 0
        if affinity_timeout != self.affinity_timeout:
            self.affinity_timeout = affinity_timeout
            if affinity_timeout is None:
                self._affinity.clear()

    def pick(self, client_ip: str, now: float, exclude: Sequence[Addr] = ()) -> Addr | None:
        eps = self.endpoints
        if not eps:
            return None
        if self.affinity_timeout is not None:
            hit = self._affinity.get(client_ip)
            if hit is not None and now - hit[1] < self.affinity_timeout and hit[0] not in exclude:
                self._affinity[client_ip] = (hit[0], now)
                return hit[0]
        n = len(eps)
        if self.mode == "random":
            choices = [e for e in eps if e not in exclude] if exclude else eps
            if not choices:
                return None
            ep = choices[self._rng.randrange(len(choices))]
        else:
            for _ in range(n):
                ep = eps[self._next]
                self._next = (self._next + 1) % n
                if ep not in exclude:
                    break
            else:
                return None
        if self.affinity_timeout is not None:
            self._affinity[client_ip] = (ep, now)
        return ep

    def forget(self, client_ip: str) -> None:
        self._affinity.pop(client_ip, None)

    def expire(self, now: float) -> None:
        if self.affinity_timeout is None:
            return
        limit = self.affinity_timeout
        self._affinity = {c: v for c, v in self._affinity.items() if now - v[1] < limit}
