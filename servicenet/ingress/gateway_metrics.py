"""Prometheus metrics of the Gateway data plane: the Ingress access-log metrics (per route and
backend: requests by status code, response bytes, a latency histogram) under ``servicenet_gateway_``
names, plus how each sync was applied. Route labels read ``<Kind-less ns/name> :<port> <host><path>``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import prometheus_client
from prometheus_client.metrics_core import Metric


class Renamed:
    """A collector re-publishing another registry's families with a name prefix swapped."""

    def __init__(self, inner: Any, old: str = "", new: str = "") -> None:
        self.inner, self.old, self.new = inner, old, new

    def describe(self) -> list[Any]:
        return []

    def _name(self, name: str) -> str:
        return self.new + name[len(self.old):] if self.old and name.startswith(self.old) else name

    def collect(self) -> Iterator[Metric]:
        for fam in self.inner.collect():
            out = Metric(self._name(fam.name), fam.documentation, fam.type, fam.unit)
            out.samples = [s._replace(name=self._name(s.name)) for s in fam.samples]
            yield out


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = prometheus_client.CollectorRegistry()
        self.access = prometheus_client.CollectorRegistry()  # the AccessLog's families, renamed below
        self.registry.register(Renamed(self.access, "servicenet_ingress_", "servicenet_gateway_"))
        self.syncs = prometheus_client.Counter("servicenet_gateway_syncs", "Gateway syncs by how they were applied",
                                               ["how"], registry=self.registry)
        self.sync_seconds = prometheus_client.Histogram("servicenet_gateway_sync_seconds",
                                                        "Gateway API change to data plane applied",
                                                        registry=self.registry)
