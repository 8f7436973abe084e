"""Ingress status and Event objects (pure)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from servicenet.api.wire import meta as meta_of
from servicenet.ingress.model import Problem


def desired_status(addresses: tuple[str, ...], http_port: int, https_port: int) -> dict[str, Any]:
    """``status.loadBalancer``: one entry per address, with ports when they are not 80/443."""
    out = []
    for a in addresses:
        e: dict[str, Any] = {"ip": a}
        if (http_port, https_port) != (80, 443):
            e["ports"] = [{"port": http_port, "protocol": "TCP"}, {"port": https_port, "protocol": "TCP"}]
        out.append(e)
    return {"ingress": out} if out else {}


def new_event(obj: dict[str, Any], p: Problem, component: str) -> dict[str, Any]:
    md = meta_of(obj)
    ts = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{md.get('name', 'x')}.{time.time_ns():x}", "namespace": md.get("namespace") or "default"},
        "involvedObject": {"kind": obj.get("kind") or p.kind, "apiVersion": obj.get("apiVersion") or
                           "networking.k8s.io/v1", "name": md.get("name", ""), "namespace": md.get("namespace", ""),
                           "uid": md.get("uid", ""), "resourceVersion": md.get("resourceVersion", "")},
        "reason": p.reason, "message": p.message, "type": p.type,
        "source": {"component": component}, "reportingComponent": component, "reportingInstance": component,
        "count": 1, "firstTimestamp": ts, "lastTimestamp": ts,
    }
