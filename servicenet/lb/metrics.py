"""Prometheus metrics for a balancer (optional: needs ``prometheus-client``).

Picks per endpoint, outcomes, ejections and latency per endpoint, plus retry and budget use.
"""

from __future__ import annotations

from typing import Any

from servicenet.lb.balancer import Balancer
from servicenet.lb.budget import RetryBudget
from servicenet.lb.policies import Backend


class PrometheusObserver:
    def __init__(self, balancer: Balancer, registry: Any = None, budget: RetryBudget | None = None) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:  # optional dependency
            raise RuntimeError("servicenet.lb metrics need prometheus-client (pip install "
                               "'servicenet[lb-metrics]')") from exc
        reg = registry or prom.REGISTRY
        lb = balancer.name or "default"
        self._lb = lb
        kw: dict[str, Any] = {"registry": reg}
        self.picks = prom.Counter("servicenet_lb_picks_total", "Requests sent to each endpoint",
                                  ["balancer", "endpoint"], **kw)
        self.results = prom.Counter("servicenet_lb_results_total", "Outcomes per endpoint",
                                    ["balancer", "endpoint", "outcome"], **kw)
        self.ejections = prom.Counter("servicenet_lb_ejections_total", "Outlier ejections",
                                      ["balancer", "endpoint"], **kw)
        self.latency = prom.Histogram("servicenet_lb_latency_seconds", "Attempt latency per endpoint",
                                      ["balancer", "endpoint"], **kw)
        if budget is not None:
            gauge = prom.Gauge("servicenet_lb_retry_budget_balance", "Retries the budget still allows",
                               ["balancer"], **kw)
            gauge.labels(lb).set_function(budget.balance)
            exhausted = prom.Gauge("servicenet_lb_retry_budget_exhausted", "Retries refused by the budget",
                                   ["balancer"], **kw)
            exhausted.labels(lb).set_function(lambda: budget.exhausted)
            used = prom.Gauge("servicenet_lb_retries", "Retries granted by the budget", ["balancer"], **kw)
            used.labels(lb).set_function(lambda: budget.retries)
        balancer.observer = self

    def picked(self, b: Backend) -> None:
        self.picks.labels(self._lb, b.key).inc()

    def finished(self, b: Backend, ok: bool, latency: float | None) -> None:
        self.results.labels(self._lb, b.key, "success" if ok else "failure").inc()
        if latency is not None:
            self.latency.labels(self._lb, b.key).observe(latency)

    def ejected(self, b: Backend) -> None:
        self.ejections.labels(self._lb, b.key).inc()
