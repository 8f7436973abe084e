"""Builders for Service / EndpointSlice dicts used across the proxy tests."""

from __future__ import annotations

from typing import Any

from servicenet.api import wellknown as wk


def service(ns: str, name: str, cluster_ip: str, ports: list[dict[str, Any]], *, type_: str = "ClusterIP",
            affinity: int | None = None, etp: str | None = None, itp: str | None = None,
            external_ips: list[str] | None = None, lb_ips: list[str] | None = None,
            hcnp: int | None = None, source_ranges: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": type_, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip], "ports": ports}
    if affinity is not None:
        spec["sessionAffinity"] = "ClientIP"
        spec["sessionAffinityConfig"] = {"clientIP": {"timeoutSeconds": affinity}}
    if etp:
        spec["externalTrafficPolicy"] = etp
    if itp:
        spec["internalTrafficPolicy"] = itp
    if external_ips:
        spec["externalIPs"] = external_ips
    if hcnp:
        spec["healthCheckNodePort"] = hcnp
    if source_ranges:
        spec["loadBalancerSourceRanges"] = source_ranges
    status: dict[str, Any] = {}
    if lb_ips:
        status = {"loadBalancer": {"ingress": [{"ip": ip} for ip in lb_ips]}}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
            "spec": spec, "status": status}


def port(port: int, name: str = "", protocol: str = "TCP", node_port: int | None = None,
         target: int | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"name": name, "port": port, "protocol": protocol, "targetPort": target or port}
    if node_port:
        p["nodePort"] = node_port
    return p


def endpoint(ip: str, *, ready: bool = True, serving: bool | None = None, terminating: bool = False,
             node: str = "node1", zones: list[str] | None = None) -> dict[str, Any]:
    cond: dict[str, Any] = {"ready": ready, "serving": ready if serving is None else serving,
                            "terminating": terminating}
    ep: dict[str, Any] = {"addresses": [ip], "conditions": cond, "nodeName": node}
    if zones:
        ep["hints"] = {"forZones": [{"name": z} for z in zones]}
    return ep


def eslice(ns: str, svc: str, endpoints: list[dict[str, Any]], ports: list[dict[str, Any]],
           name: str | None = None, label: bool = True) -> dict[str, Any]:
    labels = {wk.SERVICE_NAME_LABEL: svc} if label else {}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"namespace": ns, "name": name or f"{svc}-abcde", "labels": labels},
            "endpoints": endpoints,
            "ports": [{"name": p.get("name", ""), "port": p["port"], "protocol": p.get("protocol", "TCP")}
                      for p in ports]}
