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


# -- the renderers' golden tests (iptables and nftables) share their inputs ---------------------------
P80 = [port(80, "p80")]


def es80(svc: str, ips: list[str], node: str = "node1", **kw: Any) -> dict[str, Any]:
    """A ns1 EndpointSlice of ``svc`` (port p80) with one endpoint per IP on ``node``."""
    return eslice("ns1", svc, [endpoint(ip, node=node, **kw) for ip in ips], [{"name": "p80", "port": 80}])


# (golden name, services, slices): each renderer test module has a GOLDEN_<name> for each
GOLDEN_CASES = [
    ("NODEPORT", [service("ns1", "svc2", "172.30.0.42", [port(80, "p80", node_port=3001)], type_="NodePort")],
     [es80("svc2", ["10.180.0.1"])]),
    ("LB", [service("ns1", "svc3", "172.30.0.43", [port(80, "p80", node_port=3003)], type_="LoadBalancer",
                    lb_ips=["1.2.3.4"])], [es80("svc3", ["10.180.0.1"])]),
    ("AFFINITY", [service("ns1", "svc1", "172.30.0.41", P80, affinity=10800)],
     [es80("svc1", ["10.180.0.1", "10.180.0.2"])]),
    ("NOEP", [service("ns1", "svc4", "172.30.0.44", P80)], []),
    ("LOCAL", [service("ns1", "svc5", "172.30.0.45", [port(80, "p80", node_port=3005)], type_="LoadBalancer",
                       lb_ips=["5.6.7.8"], etp="Local", hcnp=30000)],
     [eslice("ns1", "svc5", [endpoint("10.180.0.1", node="node1"), endpoint("10.180.1.1", node="node2")],
             [{"name": "p80", "port": 80}])]),
]


def big_world_objects(n: int, *, affinity: bool = True, extra_eps: int = 0) -> tuple[list[dict], list[dict]]:
    """n Services and their slices: 1-4 endpoints each (plus ``extra_eps``), one NodePort, one
    eTP=Local LoadBalancer and, with ``affinity``, every fifth one ClientIP affinity."""
    svcs, slices = [], []
    for i in range(n):
        kw: dict = {}
        if affinity and i % 5 == 1:
            kw = {"affinity": 60}
        if i == 2:
            kw = {"type_": "NodePort"}
        if i == 3:
            kw = {"type_": "LoadBalancer", "lb_ips": ["5.6.7.8"], "etp": "Local", "hcnp": 30100}
        p = port(80, "http", node_port=30000 + i if "type_" in kw else None)
        svcs.append(service("ns1", f"s{i}", f"172.30.1.{i + 1}", [p], **kw))
        eps = [endpoint(f"10.180.{i}.{j}", node="node1" if j else "node2") for j in range(1 + i % 4 + extra_eps)]
        slices.append(eslice("ns1", f"s{i}", eps, [{"name": "http", "port": 80}]))
    return svcs, slices
