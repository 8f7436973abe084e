"""Client-side load balancing over headless Services (``servicenet.lb``).

A pure, thread-safe core (:class:`Balancer`: endpoint set and outcomes in, picks out), endpoint
sources behind one interface (:class:`ApiSource`, :class:`DnsSource`, :class:`StaticSource`),
request helpers (timeouts, budgeted retries, hedging, deadlines) and thin client adapters in
:mod:`servicenet.lb.adapters`. See docs/lb.md.
"""

from servicenet.lb.balancer import Balancer, NoEndpoints
from servicenet.lb.budget import RetryBudget
from servicenet.lb.calls import DeadlineExceeded, RequestPolicy, call, call_sync, deadline, remaining
from servicenet.lb.model import Endpoint, Topology, subset, usable
from servicenet.lb.outlier import OutlierConfig
from servicenet.lb.policies import POLICIES, Backend
from servicenet.lb.roles import RoleRouter
from servicenet.lb.runner import BackgroundSources
from servicenet.lb.sources import ApiSource, DnsSource, Source, StaticSource

__all__ = [
    "POLICIES", "ApiSource", "Backend", "BackgroundSources", "Balancer", "DeadlineExceeded", "DnsSource",
    "Endpoint", "NoEndpoints", "OutlierConfig", "RequestPolicy", "RetryBudget", "RoleRouter", "Source",
    "StaticSource", "Topology", "call", "call_sync", "deadline", "remaining", "subset", "usable",
]
