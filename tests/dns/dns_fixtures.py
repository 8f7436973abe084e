"""Kubernetes object builders shared by the DNS tests."""

from __future__ import annotations

from typing import Any

from servicenet.dns.model import DnsConfig
from servicenet.dns.records import RecordIndex
from servicenet.dns.responder import Responder


def ns(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def svc(name: str, namespace: str = "default", ips: list[str] | None = None, ports: list[dict] | None = None,
        headless: bool = False, external: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": ports if ports is not None else [{"name": "http", "protocol": "TCP", "port": 80}]}
    if external is not None:
        spec.update(type="ExternalName", externalName=external)
    elif headless:
        spec.update(clusterIP="None", clusterIPs=["None"])
    else:
        spec.update(clusterIP=(ips or ["10.96.0.10"])[0], clusterIPs=ips or ["10.96.0.10"])
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def ep(addr: str | list[str], hostname: str | None = None, ready: bool | None = True,
       pod: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"addresses": [addr] if isinstance(addr, str) else addr}
    if ready is not None:
        e["conditions"] = {"ready": ready}
    if hostname:
        e["hostname"] = hostname
    if pod:
        e["targetRef"] = {"kind": "Pod", "name": pod, "namespace": "default"}
    return e


def eps(name: str, service: str, endpoints: list[dict], namespace: str = "default",
        ports: list[dict] | None = None, family: str = "IPv4", label: bool = True) -> dict[str, Any]:
    labels = {"kubernetes.io/service-name": service} if label else {}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "addressType": family, "endpoints": endpoints,
            "ports": ports if ports is not None else [{"name": "http", "protocol": "TCP", "port": 8080}]}


def pod(name: str, ip: str, namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}]}}


def cluster(config: DnsConfig | None = None) -> tuple[RecordIndex, Responder]:
    """A small cluster covering every record kind."""
    idx = RecordIndex(config or DnsConfig(forward=False))
    for n in ("default", "kube-system", "other"):
        idx.upsert_namespace(ns(n))
    idx.upsert_service(svc("kubernetes", ips=["10.96.0.1"], ports=[{"name": "https", "protocol": "TCP", "port": 443}]))
    idx.upsert_service(svc("web", ips=["10.96.0.20", "fd00::20"],
                           ports=[{"name": "http", "protocol": "TCP", "port": 80},
                                  {"name": "dns", "protocol": "UDP", "port": 53},
                                  {"protocol": "TCP", "port": 81}]))
    idx.upsert_slice(eps("web-1", "web", [ep("10.244.1.5"), ep("10.244.1.6", hostname="named-pod")]))
    idx.upsert_service(svc("v6only", ips=["fd00::30"]))
    idx.upsert_service(svc("empty", ips=["10.96.0.40"]))
    idx.upsert_service(svc("hl", headless=True, ports=[{"name": "peer", "protocol": "TCP", "port": 2380}]))
    idx.upsert_slice(eps("hl-a", "hl", [ep("10.244.2.1", hostname="db-0"), ep("10.244.2.2", hostname="db-1"),
                                        ep("10.244.2.3", ready=False, hostname="db-2"),
                                        ep("10.244.2.4", ready=None, pod="db-pod-3")],
                         ports=[{"name": "peer", "protocol": "TCP", "port": 2380}]))
    idx.upsert_slice(eps("hl-b", "hl", [ep("fd00::2:5", hostname="db-5")], family="IPv6",
                         ports=[{"name": "peer", "protocol": "TCP", "port": 2380}]))
    idx.upsert_service(svc("hl-empty", headless=True))
    idx.upsert_slice(eps("hl-empty-a", "hl-empty", [ep("10.244.3.1", ready=False)]))
    idx.upsert_service(svc("ext", external="www.example.org", ports=[]))
    idx.upsert_service(svc("ext-in", external="web.default.svc.cluster.local", ports=[]))
    idx.upsert_service(svc("api", "other", ips=["10.96.5.5"]))
    idx.upsert_slice(eps("stray", "nothing-here", [ep("10.244.9.9")], label=False))
    idx.set_synced()
    return idx, Responder(idx)
