"""Builders for Gateway API objects (gateway.networking.k8s.io/v1) in the ingress tests."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]
GW = "gateway.networking.k8s.io/v1"
CONTROLLER = "servicenet.io/gateway-controller"


def _md(name: str, ns: str | None, created: str, generation: int = 1) -> Obj:
    md: Obj = {"name": name, "creationTimestamp": created, "generation": generation}
    if ns is not None:
        md["namespace"] = ns
    return md


def gateway_class(name: str = "sn", controller: str = CONTROLLER) -> Obj:
    return {"apiVersion": GW, "kind": "GatewayClass", "metadata": _md(name, None, "2026-01-01T00:00:00Z"),
            "spec": {"controllerName": controller}}


def listener(name: str, port: int, protocol: str = "HTTP", hostname: str = "", certs: list[Obj] | None = None,
             mode: str = "", from_: str = "", selector: Obj | None = None, kinds: list[str] | None = None) -> Obj:
    li: Obj = {"name": name, "port": port, "protocol": protocol}
    if hostname:
        li["hostname"] = hostname
    if certs is not None or mode:
        li["tls"] = {"mode": mode or "Terminate"}
        if certs is not None:
            li["tls"]["certificateRefs"] = certs
    ar: Obj = {}
    if from_:
        ar["namespaces"] = {"from": from_}
        if selector is not None:
            ar["namespaces"]["selector"] = selector
    if kinds is not None:
        ar["kinds"] = [{"group": "gateway.networking.k8s.io", "kind": k} for k in kinds]
    if ar:
        li["allowedRoutes"] = ar
    return li


def gateway(name: str, *listeners: Obj, ns: str = "default", cls: str = "sn",
            created: str = "2026-01-01T00:00:00Z") -> Obj:
    return {"apiVersion": GW, "kind": "Gateway", "metadata": _md(name, ns, created),
            "spec": {"gatewayClassName": cls, "listeners": list(listeners)}}


def parent(gw: str, section: str = "", ns: str = "", port: int | None = None) -> Obj:
    p: Obj = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": gw}
    if section:
        p["sectionName"] = section
    if ns:
        p["namespace"] = ns
    if port is not None:
        p["port"] = port
    return p


def bref(name: str, port: int = 80, weight: int = 1, ns: str = "", kind: str = "") -> Obj:
    r: Obj = {"name": name, "port": port, "weight": weight}
    if ns:
        r["namespace"] = ns
    if kind:
        r["kind"] = kind
        r["group"] = "example.com"
    return r


def match(path: tuple[str, str] = ("PathPrefix", "/"), method: str = "", headers: dict[str, str] | None = None,
          query: dict[str, str] | None = None) -> Obj:
    m: Obj = {"path": {"type": path[0], "value": path[1]}}
    if method:
        m["method"] = method
    if headers:
        m["headers"] = [{"name": k, "value": v} for k, v in headers.items()]
    if query:
        m["queryParams"] = [{"name": k, "value": v} for k, v in query.items()]
    return m


def hrule(*refs: Obj, matches: list[Obj] | None = None, filters: list[Obj] | None = None,
          timeouts: Obj | None = None) -> Obj:
    r: Obj = {"matches": matches or [match()], "backendRefs": list(refs)}
    if filters:
        r["filters"] = filters
    if timeouts:
        r["timeouts"] = timeouts
    return r


def route(kind: str, name: str, parents: list[Obj], rules: list[Obj], hostnames: list[str] | None = None,
          ns: str = "default", created: str = "2026-01-01T00:00:00Z", generation: int = 1) -> Obj:
    spec: Obj = {"parentRefs": parents, "rules": rules}
    if hostnames:
        spec["hostnames"] = hostnames
    return {"apiVersion": GW, "kind": kind, "metadata": _md(name, ns, created, generation), "spec": spec}


def httproute(name: str, parents: list[Obj], *rules: Obj, hostnames: list[str] | None = None, ns: str = "default",
              created: str = "2026-01-01T00:00:00Z") -> Obj:
    return route("HTTPRoute", name, parents, list(rules), hostnames, ns, created)


def grant(ns: str, from_ns: str, from_kind: str = "HTTPRoute", to_kind: str = "Service", name: str = "g") -> Obj:
    return {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": from_kind, "namespace": from_ns}],
                     "to": [{"group": "", "kind": to_kind}]}}


def conds(status: Obj) -> dict[str, tuple[str, str]]:
    """type -> (status, reason) of a conditions list holder."""
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions") or []}
