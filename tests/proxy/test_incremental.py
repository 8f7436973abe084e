"""The proxy recomputes only touched services; the result must equal a full recompute."""

from __future__ import annotations

import random
from typing import Any

from servicenet.api import wellknown as wk
from servicenet.proxy import model
from servicenet.proxy.server import ProxyConfig, ProxyServer
from servicenet.proxy.source import StaticSource


class IndexedSource:
    def __init__(self) -> None:
        self.svcs: dict[tuple[str, str], dict[str, Any]] = {}
        self.eps: dict[tuple[str, str], dict[str, Any]] = {}

    def services(self) -> list[dict[str, Any]]:
        return list(self.svcs.values())

    def slices(self) -> list[dict[str, Any]]:
        return list(self.eps.values())

    def node(self) -> None:
        return None

    def add_listener(self, fn: Any) -> None:
        pass

    def service(self, ns: str, name: str) -> dict[str, Any] | None:
        return self.svcs.get((ns, name))

    def slices_for(self, ns: str, name: str) -> list[dict[str, Any]]:
        return [s for s in self.eps.values() if s["metadata"]["namespace"] == ns
                and s["metadata"]["labels"][wk.SERVICE_NAME_LABEL] == name]


def svc(i: int, port: int) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": f"s{i}"},
            "spec": {"type": "ClusterIP", "clusterIP": f"10.96.0.{i + 20}", "clusterIPs": [f"10.96.0.{i + 20}"],
                     "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": 8080}]}}


def eps(i: int, ips: list[str], ready: bool) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": f"s{i}-x",
                         "labels": {wk.SERVICE_NAME_LABEL: f"s{i}"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}, "nodeName": "n1"} for ip in ips]}


def test_incremental_equals_full_recompute() -> None:
    rng = random.Random(7)
    src = IndexedSource()
    proxy = ProxyServer(ProxyConfig(mode="userspace", node_name="n1"), source=src)  # type: ignore[arg-type]
    for i in range(30):
        src.svcs[("default", f"s{i}")] = svc(i, 80)
        src.eps[("default", f"s{i}")] = eps(i, [f"10.244.0.{i + 2}"], True)
    prev = model.compute(src.services(), src.slices(), "n1")
    for n in prev.services:
        proxy._ports_by_svc.setdefault((n.namespace, n.name), set()).add(n)
    for _round in range(200):
        i = rng.randrange(40)
        key = ("default", f"s{i}")
        op = rng.choice(["svc-add", "svc-del", "port", "eps", "eps-del", "unready"])
        if op == "svc-add":
            src.svcs[key] = svc(i, 80)
        elif op == "svc-del":
            src.svcs.pop(key, None)
        elif op == "port":
            src.svcs[key] = svc(i, rng.choice([80, 81]))
        elif op == "eps":
            src.eps[key] = eps(i, [f"10.244.1.{rng.randrange(250)}" for _ in range(rng.randrange(1, 4))], True)
        elif op == "eps-del":
            src.eps.pop(key, None)
        else:
            src.eps[key] = eps(i, [f"10.244.2.{i}"], False)
        state, changed = proxy._recompute(prev, {key})
        full = model.compute(src.services(), src.slices(), "n1")
        assert dict(state.services) == dict(full.services)
        assert changed == model.changed_services(prev, full)
        prev = state


def test_static_source_is_indexed_and_reports_removals() -> None:
    """StaticSource answers the per-service lookups a partial sync makes, and set() reports the
    objects it removes (the proxy would otherwise never recompute a deleted service)."""
    src = StaticSource([svc(1, 80), svc(2, 80)], [eps(1, ["10.244.0.3"], True), eps(2, ["10.244.0.4"], True)])
    seen: list[tuple[str, str]] = []
    src.add_listener(lambda kind, obj: seen.append((kind, obj["metadata"]["name"])))
    assert src.service("default", "s1") == svc(1, 80) and src.service("default", "s9") is None
    assert src.slices_for("default", "s2") == [eps(2, ["10.244.0.4"], True)] and src.slices_for("x", "s2") == []
    src.set(services=[svc(2, 80)], slices=[])
    assert seen == [("service", "s1"), ("service", "s2"), ("service", "s2"), ("slice", "s1-x"), ("slice", "s2-x")]
