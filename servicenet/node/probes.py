"""Readiness, liveness and startup probes: the pure part (no I/O).

:class:`ProbeSpec` reads a container's probe with upstream's defaults; :class:`ProbeTracker` is
the threshold state machine (time is passed in). Running one check is I/O and lives in
:mod:`servicenet.node.prober`; the container shell loops ``due -> prober.run_probe -> observe``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from servicenet.api.views import Obj

__all__ = ["ProbeKind", "ProbeSpec", "ProbeTracker"]


class ProbeKind(Enum):
    READINESS = "readinessProbe"
    LIVENESS = "livenessProbe"
    STARTUP = "startupProbe"


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    kind: ProbeKind
    handler: Obj
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_container(cls, container: Obj, kind: ProbeKind) -> ProbeSpec | None:
        p = container.get(kind.value)
        if not p:
            return None
        handler = {k: p[k] for k in ("httpGet", "tcpSocket", "exec", "grpc") if k in p}
        return cls(kind=kind, handler=handler,
                   initial_delay=float(p.get("initialDelaySeconds") or 0),
                   period=float(p.get("periodSeconds") or 10),
                   timeout=float(p.get("timeoutSeconds") or 1),
                   success_threshold=int(p.get("successThreshold") or 1),
                   failure_threshold=int(p.get("failureThreshold") or 3))


class ProbeTracker:
    """Consecutive-result thresholds and scheduling for one probe of one container run.

    ``result`` starts as the kind's initial value (readiness/startup: False, liveness: True) and
    flips only after ``success_threshold`` consecutive successes / ``failure_threshold``
    consecutive failures.
    """

    def __init__(self, spec: ProbeSpec, started_at: float) -> None:
        self.spec = spec
        self.result: bool = spec.kind is ProbeKind.LIVENESS
        self._last: bool | None = None
        self._run = 0
        self._due = started_at + spec.initial_delay

    def due(self) -> float:
        return self._due

    def observe(self, ok: bool, now: float) -> bool | None:
        """Record one probe outcome at ``now``; return the new result if it flipped."""
        self._due = max(self._due + self.spec.period, now)
        if self._last is ok:
            self._run += 1
        else:
            self._last, self._run = ok, 1
        needed = self.spec.success_threshold if ok else self.spec.failure_threshold
        if self._run < needed or self.result is ok:
            return None
        self.result = ok
        return ok
