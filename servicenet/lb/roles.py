"""Read-your-writes role selection for a replicated database behind a headless Service.

Writes go to the primary; reads go to replicas, except that a session that wrote within
``ryw_window`` seconds reads from the primary too (so it sees its own write before replicas
catch up). The role comes from a pod label (``label``, value ``primary``) or, by default, from
the StatefulSet ordinal (``web-0`` is the primary).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from servicenet.lb.balancer import Balancer
from servicenet.lb.model import Endpoint, Topology, role_of


class RoleRouter:
    def __init__(self, policy: str = "round_robin", *, label: str | None = None, primary_ordinal: int = 0,
                 ryw_window: float = 2.0, clock: Callable[[], float] = time.monotonic, **balancer_kw: Any) -> None:
        self.ryw_window = ryw_window
        self._clock = clock

        def is_primary(e: Endpoint) -> bool:
            return role_of(e, label, primary_ordinal) == "primary"

        self.primary = Balancer("round_robin", select=is_primary, clock=clock, name="primary", **balancer_kw)
        self.replicas = Balancer(policy, select=lambda e: not is_primary(e), clock=clock, name="replica",
                                 **balancer_kw)

    def update(self, endpoints: Iterable[Endpoint], topology: Topology | None = None) -> None:
        eps = list(endpoints)
        self.primary.update(eps, topology)
        self.replicas.update(eps, topology)

    def session(self) -> Session:
        return Session(self)


class Session:
    """One client's view: remembers its last write."""

    def __init__(self, router: RoleRouter) -> None:
        self.router = router
        self.last_write = float("-inf")

    def for_write(self) -> Balancer:
        self.last_write = self.router._clock()
        return self.router.primary

    def for_read(self) -> Balancer:
        r = self.router
        if r._clock() - self.last_write < r.ryw_window or not r.replicas.eligible:
            return r.primary
        return r.replicas
