"""Builders for the API objects the ingress tests use."""

from __future__ import annotations

import base64
from typing import Any

Obj = dict[str, Any]
CLASS = {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
         "metadata": {"name": "servicenet", "annotations": {"ingressclass.kubernetes.io/is-default-class": "true"}},
         "spec": {"controller": "servicenet.io/ingress-controller"}}


def backend(svc: str, port: int | str) -> Obj:
    return {"service": {"name": svc, "port": {"number": port} if isinstance(port, int) else {"name": port}}}


def path(p: str, svc: str, port: int | str = 80, ptype: str = "Prefix") -> Obj:
    return {"path": p, "pathType": ptype, "backend": backend(svc, port)}


def ingress(name: str, rules: list[Obj], *, ns: str = "default", cls: str | None = None,
            annotations: dict[str, str] | None = None, tls: list[Obj] | None = None,
            default_backend: Obj | None = None, created: str = "2026-01-01T00:00:00Z") -> Obj:
    spec: Obj = {"rules": rules}
    if cls is not None:
        spec["ingressClassName"] = cls
    if tls is not None:
        spec["tls"] = tls
    if default_backend is not None:
        spec["defaultBackend"] = default_backend
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations or {},
                         "creationTimestamp": created}, "spec": spec}


def rule(host: str, *paths: Obj) -> Obj:
    r: Obj = {"http": {"paths": list(paths)}}
    if host:
        r["host"] = host
    return r


def service(name: str, ports: list[tuple[str, int]], ns: str = "default", app_protocol: str = "") -> Obj:
    ps = []
    for n, p in ports:
        e: Obj = {"name": n, "port": p, "targetPort": p, "protocol": "TCP"}
        if app_protocol:
            e["appProtocol"] = app_protocol
        ps.append(e)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"ports": ps}}


def slice_(svc: str, addrs: list[str], ports: list[tuple[str, int]], ns: str = "default", name: str = "",
           ready: bool | None = True, serving: bool | None = None, terminating: bool | None = None) -> Obj:
    cond: Obj = {}
    for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating)):
        if v is not None:
            cond[k] = v
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or f"{svc}-manual", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports],
            "endpoints": [{"addresses": [a], "conditions": cond} for a in addrs]}


def tls_secret(name: str, pem_cert: bytes, pem_key: bytes, ns: str = "default") -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": ns},
            "data": {"tls.crt": base64.b64encode(pem_cert).decode(), "tls.key": base64.b64encode(pem_key).decode()}}
