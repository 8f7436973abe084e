"""Prometheus metrics for balancers (optional: attach a :class:`PrometheusObserver`).

Picks per endpoint, outcomes, ejections and latency per endpoint, retries and retry-budget use.
One :class:`LbMetrics` per registry serves any number of balancers (label ``balancer``).
"""

from __future__ import annotations

import prometheus_client as prom

from servicenet.lb.balancer import Balancer
from servicenet.lb.budget import RetryBudget
from servicenet.lb.policies import Backend


class LbMetrics:
    def __init__(self, registry: prom.CollectorRegistry | None = None) -> None:
        reg = registry if registry is not None else prom.REGISTRY
        self.registry = reg
        self.picks = prom.Counter("servicenet_lb_picks_total", "Requests sent to each endpoint",
                                  ["balancer", "endpoint"], registry=reg)
        self.results = prom.Counter("servicenet_lb_results_total", "Outcomes per endpoint",
                                    ["balancer", "endpoint", "outcome"], registry=reg)
        self.ejections = prom.Counter("servicenet_lb_ejections_total", "Outlier ejections per endpoint",
                                      ["balancer", "endpoint"], registry=reg)
        self.latency = prom.Histogram("servicenet_lb_latency_seconds", "Attempt latency per endpoint",
                                      ["balancer", "endpoint"], registry=reg)
        self.retries = prom.Gauge("servicenet_lb_retries", "Retries the retry budget granted",
                                  ["balancer"], registry=reg)
        self.refused = prom.Gauge("servicenet_lb_retries_refused", "Retries the retry budget refused",
                                  ["balancer"], registry=reg)
        self.balance = prom.Gauge("servicenet_lb_retry_budget_balance", "Retries the budget allows now",
                                  ["balancer"], registry=reg)


class PrometheusObserver:
    """Counts a balancer's picks, outcomes and ejections (and, given one, its retry budget's use)."""

    def __init__(self, balancer: Balancer, metrics: LbMetrics, budget: RetryBudget | None = None) -> None:
        self.m = metrics
        self.name = balancer.name or "default"
        if budget is not None:
            metrics.retries.labels(self.name).set_function(lambda: budget.retries)
            metrics.refused.labels(self.name).set_function(lambda: budget.exhausted)
            metrics.balance.labels(self.name).set_function(budget.balance)
        balancer.observer = self

    def picked(self, b: Backend) -> None:
        self.m.picks.labels(self.name, b.key).inc()

    def finished(self, b: Backend, ok: bool, latency: float | None) -> None:
        self.m.results.labels(self.name, b.key, "success" if ok else "failure").inc()
        if latency is not None:
            self.m.latency.labels(self.name, b.key).observe(latency)

    def ejected(self, b: Backend) -> None:
        self.m.ejections.labels(self.name, b.key).inc()
