"""The pure core: an endpoint set and events in, picks out. Thread-safe; no sockets.

``update()`` takes the endpoint set a source reports; ``pick()`` returns a :class:`Backend` and
counts it as outstanding; ``done()`` reports the outcome and latency, which feeds the load-aware
policies and outlier detection. One lock guards the whole state; a pick does a clock read, a
float compare and the policy's O(1)/O(log n) choice under it.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from servicenet.lb import policies
from servicenet.lb.model import Endpoint, Topology, subset, usable
from servicenet.lb.outlier import OutlierConfig, OutlierDetector, eligible
from servicenet.lb.policies import Backend, Policy


class NoEndpoints(LookupError):
    """No endpoint can take a request (none reported, none ready, or every one filtered out)."""


class Observer(Protocol):
    """Metrics hook (see :mod:`servicenet.lb.metrics`)."""

    def picked(self, b: Backend) -> None: ...
    def finished(self, b: Backend, ok: bool, latency: float | None) -> None: ...
    def ejected(self, b: Backend) -> None: ...


class Balancer:
    def __init__(self, policy: str | Policy = "round_robin", *, topology: Topology = Topology(),
                 outlier: OutlierConfig = OutlierConfig(), subset_size: int = 0, client_id: int = 0,
                 select: Callable[[Endpoint], bool] | None = None, ewma_tau: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 observer: Observer | None = None, name: str = "") -> None:
        self.name = name
        self.policy = policies.make(policy, rng)
        if isinstance(self.policy, policies.PeakEwma):
            self.policy.tau = ewma_tau
        self.tau = ewma_tau
        self.topology = topology
        self.subset_size = subset_size
        self.client_id = client_id
        self.select = select
        self.outlier = OutlierDetector(outlier)
        self.observer = observer
        self._clock = clock
        self._lock = threading.Lock()
        self._changed = threading.Condition()  # its own lock: predicates may read the balancer
        self._reported: tuple[Endpoint, ...] = ()
        self._backends: dict[str, Backend] = {}
        self._members: tuple[Backend, ...] = ()
        self._eligible: tuple[Backend, ...] = ()
        self.panic = False
        self.version = 0
        self._listeners: list[Callable[[Balancer], None]] = []

    # -- events in ------------------------------------------------------------------------------------
    def update(self, endpoints: Iterable[Endpoint], topology: Topology | None = None) -> None:
        """Replace the endpoint set (state of endpoints that stay is kept)."""
        eps = tuple(endpoints)
        with self._lock:
            if topology is not None:
                self.topology = topology
            self._reported = eps
            chosen = usable(eps, self.topology)
            if self.select is not None:
                chosen = [e for e in chosen if self.select(e)]
            if self.subset_size:
                chosen = subset(chosen, self.client_id, self.subset_size)
            old = self._backends
            fresh: dict[str, Backend] = {}
            for e in sorted(chosen, key=lambda e: e.key):
                b = old.get(e.key) or Backend(e)
                b.ep = e
                fresh[e.key] = b
            for e in eps:  # keep in-flight accounting of endpoints that merely left the usable set
                if e.key not in fresh and e.key in old:
                    old[e.key].ep = e
            self._backends = fresh
            self._members = tuple(fresh.values())
            self._refresh()
            self.version += 1
            listeners = list(self._listeners)
        with self._changed:
            self._changed.notify_all()
        for fn in listeners:
            fn(self)

    def _refresh(self) -> None:
        self._eligible, self.panic = eligible(self._members, self.outlier.config.panic_threshold)
        self.policy.rebuild(self._eligible)

    def set_active(self, key: str, ok: bool) -> None:
        """An active health check's verdict for one endpoint."""
        with self._lock:
            b = self._backends.get(key)
            if b is not None and b.active_ok != ok:
                b.active_ok = ok
                self._refresh()

    def add_listener(self, fn: Callable[[Balancer], None]) -> None:
        with self._lock:
            self._listeners.append(fn)

    # -- picks out ------------------------------------------------------------------------------------
    def pick(self, key: str | bytes | int | None = None, exclude: Backend | None = None) -> Backend:
        kh = None if key is None else policies.key_hash(key)
        now = self._clock()
        with self._lock:
            if now >= self.outlier.next_check and self.outlier.tick(now, self._members):
                self._refresh()
            bs = self._eligible
            if not bs:
                raise NoEndpoints(f"no usable endpoint for {self.name or 'balancer'} "
                                  f"({len(self._reported)} reported)")
            b = self.policy.pick(bs, kh, now)
            if b is exclude and len(bs) > 1:  # a retry or hedge goes elsewhere when it can
                b = self.policy.pick(bs, kh, now)
                if b is exclude:
                    b = bs[(bs.index(b) + 1) % len(bs)]
            b.outstanding += 1
            b.picks += 1
        if self.observer is not None:
            self.observer.picked(b)
        return b

    def done(self, b: Backend, ok: bool = True, latency: float | None = None) -> None:
        now = self._clock()
        with self._lock:
            if b.outstanding > 0:
                b.outstanding -= 1
            if latency is not None:
                b.observe(latency, now, self.tau)
                b.latency_sum += latency
            if ok:
                b.successes += 1
            else:
                b.failures += 1
            ejected = self.outlier.on_result(b, ok, now, self._members)
            if ejected:
                self._refresh()
        if self.observer is not None:
            self.observer.finished(b, ok, latency)
            if ejected:
                self.observer.ejected(b)

    # -- views ----------------------------------------------------------------------------------------
    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every endpoint the source reported (ready or not)."""
        return self._reported

    @property
    def members(self) -> tuple[Backend, ...]:
        return self._members

    @property
    def eligible(self) -> tuple[Backend, ...]:
        return self._eligible

    def wait(self, predicate: Callable[[Balancer], bool], timeout: float) -> bool:
        """Block (sync users) until ``predicate(self)`` holds after an update, or the timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return True

    def table(self) -> list[dict[str, Any]]:
        """One row per reported endpoint: conditions, hints, state and the policy's current score."""
        now = self._clock()
        with self._lock:
            rows = []
            for e in self._reported:
                b = self._backends.get(e.key)
                rows.append({
                    "endpoint": e.key, "name": e.name, "conditions": e.conditions(),
                    "zone": e.zone, "node": e.node, "hints": ",".join(e.zone_hints + e.node_hints),
                    "weight": e.weight, "used": b is not None and b in self._eligible,
                    "ejected": bool(b and b.ejected_until), "outstanding": b.outstanding if b else 0,
                    "ewma_ms": round(b.cost * 1000, 3) if b else 0.0,
                    "score": self.policy.score(b, now) if b else None,
                    "picks": b.picks if b else 0,
                })
            return rows
