"""The proxy's sync planner (pure): from what happened since the last sync, what the next one does.

Events in (:class:`ServiceChanged`, :class:`SliceChanged`, :class:`NodeChanged`,
:class:`RoutesAdded`, :class:`SyncDone`, :class:`SyncFailed`), a :class:`Plan` out
(:meth:`SyncPlanner.next`). No I/O, no clock: the caller passes the time.

The rules, all of them:

1. The first sync is full.
2. A full sync is due again when ``full_sync_period`` has passed since the last successful full
   sync, when the Node's labels change (the topology zone is one of them), and when the Node's
   addresses become known after start (NodePorts listen on them).
3. Any other sync is partial: it recomputes only the services touched since the last sync. A
   Service event touches that service; an EndpointSlice event touches the service its
   ``kubernetes.io/service-name`` label names (a slice without the label touches none). Other
   Node changes (status heartbeats) touch nothing: the sync still runs, with nothing to recompute.
4. A failed sync leaves its work pending: the next sync is full and still carries the services
   the failed one was to recompute, together with those touched meanwhile.
5. Kernel modes route the service ranges inside the node namespace. The routes are due from the
   start, and again when the Node's addresses become known; they stay due until the shell
   reports :class:`RoutesAdded` (it cannot add them before it knows the node's address).
   Userspace mode never adds routes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

ServiceKey = tuple[str, str]  # (namespace, name)


class SyncKind(enum.Enum):
    FULL = "full"
    PARTIAL = "partial"


@dataclass(frozen=True, slots=True)
class Plan:
    kind: SyncKind
    services: frozenset[ServiceKey]  # touched since the last sync (a full sync recomputes every service anyway)
    routes: bool  # add the node namespace's routes first
    reason: str  # why this kind: "first", "failed", "period", "node labels", "node addresses", "changes"

    @property
    def full(self) -> bool:
        return self.kind is SyncKind.FULL


# --- events ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ServiceChanged:
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class SliceChanged:
    namespace: str
    service: str  # the service-name label; "" when the slice has none


@dataclass(frozen=True, slots=True)
class NodeChanged:
    labels_changed: bool = False
    addresses_learned: bool = False  # the Node's addresses were unknown until this event


@dataclass(frozen=True, slots=True)
class RoutesAdded:
    pass


@dataclass(frozen=True, slots=True)
class SyncDone:
    plan: Plan
    at: float  # monotonic seconds


@dataclass(frozen=True, slots=True)
class SyncFailed:
    plan: Plan


Event = ServiceChanged | SliceChanged | NodeChanged | RoutesAdded | SyncDone | SyncFailed


class SyncPlanner:
    """The pending work between syncs, as data (see the module docstring for the rules)."""

    def __init__(self, full_sync_period: float, kernel: bool) -> None:
        self.full_sync_period = full_sync_period
        self.kernel = kernel
        self.dirty: set[ServiceKey] = set()
        self.full_reason: str | None = "first"  # a full sync is due, and why
        self.routes = kernel  # rule 5
        self.last_full: float | None = None

    def event(self, ev: Event) -> None:
        if isinstance(ev, ServiceChanged):
            self.dirty.add((ev.namespace, ev.name))
        elif isinstance(ev, SliceChanged):
            if ev.service:
                self.dirty.add((ev.namespace, ev.service))
        elif isinstance(ev, NodeChanged):
            if ev.addresses_learned:
                self._want_full("node addresses")
                self.routes = self.kernel
            if ev.labels_changed:
                self._want_full("node labels")
        elif isinstance(ev, RoutesAdded):
            self.routes = False
        elif isinstance(ev, SyncDone):
            if ev.plan.full:
                self.last_full = ev.at
        elif isinstance(ev, SyncFailed):
            self.dirty |= ev.plan.services
            self._want_full("failed")
        else:
            raise TypeError(f"not a planner event: {ev!r}")

    def _want_full(self, reason: str) -> None:
        if self.full_reason is None:
            self.full_reason = reason

    def next(self, now: float) -> Plan:
        """The plan for a sync starting at ``now`` (monotonic seconds); takes the pending work.

        Report its outcome with :class:`SyncDone` or :class:`SyncFailed`."""
        reason = self.full_reason
        if reason is None and self.last_full is not None and now - self.last_full > self.full_sync_period:
            reason = "period"
        plan = Plan(SyncKind.FULL if reason else SyncKind.PARTIAL, frozenset(self.dirty), self.routes,
                    reason or "changes")
        self.dirty = set()
        self.full_reason = None
        return plan
