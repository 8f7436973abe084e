"""Load-balancing policies: pick one backend from the eligible tuple (pure, no I/O, no locks).

Every policy is rebuilt when the eligible set changes (``rebuild``) and then answers ``pick`` in
O(1) or O(log n). The caller (:class:`servicenet.lb.balancer.Balancer`) holds the lock and keeps
the per-backend counters that the load-aware policies read.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from itertools import accumulate

from servicenet.lb.hashing import KetamaRing, MaglevTable, hash64
from servicenet.lb.model import Endpoint

PENALTY = 1e9  # Finagle's: an endpoint with requests in flight but no latency sample yet is avoided


class Backend:
    """One endpoint plus the mutable state the policies and outlier detection keep about it."""

    __slots__ = ("ep", "outstanding", "cost", "stamp", "picks", "successes", "failures", "consecutive",
                 "ejected_until", "ejections", "win_ok", "win_fail", "latency_sum", "active_ok")

    def __init__(self, ep: Endpoint) -> None:
        self.ep = ep
        self.outstanding = 0
        self.cost = 0.0  # peak-EWMA latency (seconds)
        self.stamp = 0.0
        self.picks = 0
        self.successes = 0
        self.failures = 0
        self.consecutive = 0
        self.ejected_until = 0.0
        self.ejections = 0
        self.win_ok = 0
        self.win_fail = 0
        self.latency_sum = 0.0
        self.active_ok = True

    @property
    def key(self) -> str:
        return self.ep.key

    def decayed_cost(self, now: float, tau: float) -> float:
        """Finagle's peak EWMA read: decay toward 0 since the last update (an idle peak fades)."""
        td = now - self.stamp
        if td > 0 and self.cost:
            self.cost *= math.exp(-td / tau)
        self.stamp = now
        return self.cost

    def observe(self, rtt: float, now: float, tau: float) -> None:
        if rtt > self.cost:
            self.cost = rtt  # peak: jump up at once
        else:
            w = math.exp(-max(now - self.stamp, 0.0) / tau)
            self.cost = self.cost * w + rtt * (1.0 - w)
        self.stamp = now

    def __repr__(self) -> str:
        return f"Backend({self.ep.key}, outstanding={self.outstanding}, cost={self.cost:.4f})"


class Policy:
    name = "policy"
    needs_key = False

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rnd = (rng or random.Random()).random

    def rebuild(self, backends: Sequence[Backend]) -> None:
        pass

    def pick(self, backends: Sequence[Backend], key: int | None, now: float) -> Backend:
        raise NotImplementedError

    def score(self, b: Backend, now: float) -> float | None:
        """What the policy weighs this backend by right now (for ``servicenet endpoints``)."""
        return float(b.ep.weight)


def _uniform_weights(backends: Sequence[Backend]) -> bool:
    return all(b.ep.weight == backends[0].ep.weight for b in backends)


class RoundRobin(Policy):
    """Rotate; with unequal weights, follow a precomputed smooth weighted schedule (nginx's order)."""

    name = "round_robin"

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__(rng)
        self._next = 0
        self._schedule: list[int] = []

    def rebuild(self, backends: Sequence[Backend]) -> None:
        self._schedule = []
        if backends and not _uniform_weights(backends):
            ws = [max(b.ep.weight, 0) for b in backends]
            g = math.gcd(*ws) or 1
            ws = [w // g for w in ws]
            scale = max(1, sum(ws) // 10_000 + 1)
            ws = [max(1, w // scale) if w else 0 for w in ws]
            current = [0] * len(ws)
            total = sum(ws)
            for _ in range(total):
                for i, w in enumerate(ws):
                    current[i] += w
                best = max(range(len(ws)), key=current.__getitem__)
                current[best] -= total
                self._schedule.append(best)
        # start each rebuild at a random offset so many clients do not march in lockstep
        self._next = int(self._rnd() * max(1, len(self._schedule) or len(backends)))

    def pick(self, backends: Sequence[Backend], key: int | None, now: float) -> Backend:
        i = self._next
        self._next = i + 1
        if self._schedule:
            return backends[self._schedule[i % len(self._schedule)]]
        return backends[i % len(backends)]


class Random(Policy):
    name = "random"

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__(rng)
        self._cum: list[int] = []

    def rebuild(self, backends: Sequence[Backend]) -> None:
        self._cum = [] if _uniform_weights(backends) else list(accumulate(b.ep.weight for b in backends))

    def pick(self, backends: Sequence[Backend], key: int | None, now: float) -> Backend:
        if self._cum:
            return backends[bisect.bisect(self._cum, self._rnd() * self._cum[-1])]
        return backends[int(self._rnd() * len(backends))]


class _P2C(Policy):
    def _two(self, n: int) -> tuple[int, int]:
        r = self._rnd
        i = int(r() * n)
        j = int(r() * (n - 1))
        return i, (j + 1 if j >= i else j)

    def load(self, b: Backend, now: float) -> float:
        raise NotImplementedError

    def pick(self, backends: Sequence[Backend], key: int | None, now: float) -> Backend:
        n = len(backends)
        if n == 1:
            return backends[0]
        i, j = self._two(n)
        a, b = backends[i], backends[j]
        return a if self.load(a, now) <= self.load(b, now) else b

    def score(self, b: Backend, now: float) -> float | None:
        return self.load(b, now)


class LeastOutstanding(_P2C):
    """Power of two choices on requests in flight, divided by weight (Envoy's least request)."""

    name = "least_outstanding"

    def load(self, b: Backend, now: float) -> float:
        return (b.outstanding + 1) / b.ep.weight


class PeakEwma(_P2C):
    """Power of two choices on peak-EWMA latency x (outstanding + 1) (Finagle/Linkerd)."""

    name = "peak_ewma"

    def __init__(self, rng: random.Random | None = None, tau: float = 10.0) -> None:
        super().__init__(rng)
        self.tau = tau

    def load(self, b: Backend, now: float) -> float:
        cost = b.decayed_cost(now, self.tau)
        if cost == 0.0 and b.outstanding:
            return PENALTY + b.outstanding
        return cost * (b.outstanding + 1) / b.ep.weight

    def pick(self, backends: Sequence[Backend], key: int | None, now: float) -> Backend:
        # the same as _P2C.pick with load() inlined: this is the per-request hot path
        n = len(backends)
        if n == 1:
            return backends[0]
        r = self._rnd
        i = int(r() * n)
        j = int(r() * (n - 1))
        a = backends[i]
        b = backends[j + 1 if j >= i else j]
        tau = self.tau
        exp = math.exp
        la = lb = 0.0
        for k, x in enumerate((a, b)):
            td = now - x.stamp
            if td > 0.0 and x.cost:
                x.cost *= exp(-td / tau)
            x.stamp = now
            if x.cost == 0.0 and x.outstanding:
                load = PENALTY + x.outstanding
            else:
                load = x.cost * (x.outstanding + 1) / x.ep.weight
            if k:
                lb = load
            else:
                la = load
        return a if la <= lb else b


class _Hashing(Policy):
    needs_key = True

    def __init__(self, rng: random.Random | None = None) -> None:
        super().__init__(rng)
        self._fallback = Random(rng)

    def rebuild(self, backends: Sequence[Backend]) -> None:
        self._fallback.rebuild(backends)

    def pick(self, backends: Sequence[Backend], key: int | None, now: float) -> Backend:
        if key is None:
            return self._fallback.pick(backends, None, now)
        return backends[self._table.lookup(key)]  # type: ignore[attr-defined]


class RingHash(_Hashing):
    name = "ring_hash"

    def rebuild(self, backends: Sequence[Backend]) -> None:
        super().rebuild(backends)
        self._table = KetamaRing([b.key for b in backends], [b.ep.weight for b in backends])


class Maglev(_Hashing):
    name = "maglev"

    def rebuild(self, backends: Sequence[Backend]) -> None:
        super().rebuild(backends)
        self._table = MaglevTable([b.key for b in backends], [b.ep.weight for b in backends])


POLICIES: dict[str, type[Policy]] = {p.name: p for p in (RoundRobin, Random, LeastOutstanding, PeakEwma,
                                                          RingHash, Maglev)}


def make(name: str | Policy, rng: random.Random | None = None) -> Policy:
    if isinstance(name, Policy):
        return name
    try:
        return POLICIES[name](rng)
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}") from None


def key_hash(key: str | bytes | int | None) -> int | None:
    if key is None or isinstance(key, int):
        return key
    return hash64(key)
