"""Cluster add-ons as pods (``servicenet up --nodes``): the cluster DNS.

As kubeadm installs CoreDNS: ServiceAccount ``kube-system/coredns`` (bound to ``system:coredns``
by the bootstrap RBAC policy), a Deployment ``kube-system/coredns`` of 2 replicas of the built-in
image ``servicenet/dns`` labelled ``k8s-app: kube-dns`` and spread over nodes (preferred pod
anti-affinity on ``kubernetes.io/hostname``, as kubeadm's manifest), and the ``kube-dns`` Service
selecting those pods. The proxy of every node then forwards the kube-dns ClusterIP to them.
"""

from __future__ import annotations

from typing import Any

from servicenet.api import wellknown as wk
from servicenet.client import ApiClient, ApiError

DNS_IMAGE = "servicenet/dns"
DNS_LABELS = {"k8s-app": "kube-dns"}


def dns_deployment(replicas: int = 2) -> dict[str, Any]:
    term = {"labelSelector": {"matchExpressions": [{"key": "k8s-app", "operator": "In", "values": ["kube-dns"]}]},
            "topologyKey": "kubernetes.io/hostname"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "coredns", "namespace": wk.KUBE_DNS_NAMESPACE, "labels": dict(DNS_LABELS)},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(DNS_LABELS)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": dict(DNS_LABELS)},
                "spec": {
                    "serviceAccountName": "coredns",
                    "dnsPolicy": "Default",
                    "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                        {"weight": 100, "podAffinityTerm": term}]}},
                    "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                    {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}],
                    # port 53: CoreDNS lowers ip_unprivileged_port_start; our pods run it as root
                    "securityContext": {"runAsUser": 0},
                    "containers": [{
                        "name": "coredns", "image": DNS_IMAGE,
                        "ports": [{"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                  {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                  {"name": "metrics", "containerPort": 9153, "protocol": "TCP"}],
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 9153}, "periodSeconds": 10,
                                          "failureThreshold": 5},
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 9153}, "periodSeconds": 1},
                    }],
                },
            },
        },
    }


async def _create_or_keep(client: ApiClient, api: str, plural: str, ns: str, body: dict[str, Any]) -> None:
    try:
        await client.create(api, plural, ns, body)
    except ApiError as exc:
        if exc.status != 409:
            raise


async def install_dns(client: ApiClient, replicas: int = 2) -> None:
    """Create (or keep) the DNS add-on; the ``kube-dns`` Service gets its selector."""
    ns = wk.KUBE_DNS_NAMESPACE
    await _create_or_keep(client, "v1", "serviceaccounts", ns,
                          {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "coredns", "namespace": ns}})
    svc = await client.get("v1", "services", ns, wk.KUBE_DNS_SERVICE)
    if (svc.get("spec") or {}).get("selector") != DNS_LABELS:
        await client.patch("v1", "services", ns, wk.KUBE_DNS_SERVICE, {"spec": {"selector": dict(DNS_LABELS)}})
    try:  # endpoints an embedded `servicenet up` published for its in-process DNS
        ep = await client.get("v1", "endpoints", ns, wk.KUBE_DNS_SERVICE)
        if not any(s.get("addresses") and any(a.get("targetRef") for a in s["addresses"])
                   for s in ep.get("subsets") or []):
            await client.delete("v1", "endpoints", ns, wk.KUBE_DNS_SERVICE)
    except ApiError as exc:
        if exc.status != 404:
            raise
    await _create_or_keep(client, "apps/v1", "deployments", ns, dns_deployment(replicas))
