"""Passive outlier detection as Envoy's: eject on consecutive failures or a failure rate (pure).

Ejection time grows exponentially with the number of recent ejections (base x 2^(n-1), capped);
a host that stays healthy for an interval earns one ejection back. At most
``max_ejection_percent`` of hosts are ejected at a time (at least one), and when fewer than
``panic_threshold`` percent of hosts are usable the balancer ignores ejections altogether (panic
mode), so a sick fleet still gets traffic spread over all of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from servicenet.lb.policies import Backend


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    consecutive_failures: int = 5
    interval: float = 10.0
    base_ejection: float = 30.0
    max_ejection: float = 300.0
    max_ejection_percent: float = 10.0
    failure_percentage_threshold: float = 85.0  # eject above this failure % in an interval
    failure_percentage_min_hosts: int = 5
    failure_percentage_request_volume: int = 50
    panic_threshold: float = 50.0
    enabled: bool = True


class OutlierDetector:
    def __init__(self, config: OutlierConfig = OutlierConfig()) -> None:
        self.config = config
        self.next_check = 0.0  # the earliest time tick() has something to do
        self.ejections_total = 0
        self._interval_at = 0.0  # the end of the current failure-rate interval

    def _allowed(self, backends: Sequence[Backend]) -> bool:
        ejected = sum(1 for b in backends if b.ejected_until)
        cap = max(1, int(len(backends) * self.config.max_ejection_percent / 100.0))
        return ejected < cap

    def _eject(self, b: Backend, now: float) -> None:
        b.ejections += 1
        span = min(self.config.base_ejection * 2 ** (b.ejections - 1), self.config.max_ejection)
        b.ejected_until = now + span
        b.consecutive = 0
        self.ejections_total += 1
        self.next_check = min(self.next_check, b.ejected_until) if self.next_check else b.ejected_until

    def on_result(self, b: Backend, ok: bool, now: float, backends: Sequence[Backend]) -> bool:
        """Record one outcome; True when it ejected ``b`` (the eligible set changed)."""
        if ok:
            b.consecutive = 0
            b.win_ok += 1
            return False
        b.consecutive += 1
        b.win_fail += 1
        c = self.config
        if (c.enabled and not b.ejected_until and b.consecutive >= c.consecutive_failures
                and self._allowed(backends)):
            self._eject(b, now)
            return True
        return False

    def tick(self, now: float, backends: Sequence[Backend]) -> bool:
        """Return ejected hosts whose time is up, and run the interval's failure-rate check."""
        changed = False
        c = self.config
        soonest = now + c.interval
        for b in backends:
            if b.ejected_until:
                if b.ejected_until <= now:
                    b.ejected_until = 0.0
                    changed = True
                else:
                    soonest = min(soonest, b.ejected_until)
        if c.enabled and now >= self._interval_end(now):
            active = [b for b in backends if b.win_ok + b.win_fail >= c.failure_percentage_request_volume]
            if len(active) >= c.failure_percentage_min_hosts:
                for b in active:
                    pct = 100.0 * b.win_fail / (b.win_ok + b.win_fail)
                    if not b.ejected_until and pct > c.failure_percentage_threshold and self._allowed(backends):
                        self._eject(b, now)
                        changed = True
            for b in backends:
                if not b.ejected_until and b.ejections and b.win_fail == 0:
                    b.ejections -= 1  # a healthy interval earns one ejection back
                b.win_ok = b.win_fail = 0
            self._interval_at = now + c.interval
        self.next_check = min(soonest, self._interval_at)
        return changed

    def _interval_end(self, now: float) -> float:
        if not self._interval_at:
            self._interval_at = now + self.config.interval
        return self._interval_at


def eligible(backends: Sequence[Backend], panic_threshold: float) -> tuple[tuple[Backend, ...], bool]:
    """The backends not ejected and passing active checks, or all of them in panic mode."""
    healthy = tuple(b for b in backends if not b.ejected_until and b.active_ok)
    if backends and 100.0 * len(healthy) / len(backends) < panic_threshold:
        return tuple(backends), True
    return healthy, False
