"""``servicenet up``: the composition of every component into one embedded cluster.

Each component is built exactly as its own command would build it and talks to the others only
through the API. This module only decides the address plan per network mode and the order:
controllers, node agent (it creates the node network namespace), DNS, the proxy, then ingress.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from servicenet.api import wellknown as wk
from servicenet.apiserver.podaccess import ComponentClients, KubernetesEndpoint
from servicenet.client import ApiClient, ApiError
from servicenet.common import log
from servicenet.common.userns import ENV_HOLDER
from servicenet.controllers.manager import ControllerManager
from servicenet.dns import server as dns_server
from servicenet.ingress import cli as ingress_cli
from servicenet.node.agent import NodeAgent
from servicenet.proxy import server as proxy_server
from servicenet.proxy.hostports import HostPorts, LoopbackPortNotes

_log = log.get("up")
INGRESS_HOST_PORTS = (8080, 8443)  # the host side of the ingress in userns mode (as loopback mode)


class KubeDnsEndpoints:
    """Publishes where the cluster DNS answers as the Endpoints of the selector-less
    ``kube-system/kube-dns`` Service (the mirroring controller turns them into a slice), so the
    proxy forwards the kube-dns ClusterIP to it like any other Service."""

    name = "kube-dns-endpoints"

    def __init__(self, client: ApiClient, ip: str | None = None, port: int | None = None,
                 dns: Any = None) -> None:
        self.client = client
        self.ip = ip or ""
        self.port = port or 0
        self.dns = dns  # when given, its first host listener (bound port) is the endpoint

    def _resolve(self) -> None:
        if self.dns is None:
            return
        for netns, host, port in self.dns.bound:
            if netns is None:
                self.ip = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
                self.port = port
                return

    def body(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": wk.KUBE_DNS_SERVICE, "namespace": wk.KUBE_DNS_NAMESPACE,
                             "labels": {"k8s-app": "kube-dns"}},
                "subsets": [{"addresses": [{"ip": self.ip}],
                             "ports": [{"name": "dns", "port": self.port, "protocol": "UDP"},
                                       {"name": "dns-tcp", "port": self.port, "protocol": "TCP"}]}]}

    async def start(self) -> None:
        self._resolve()
        try:
            cur = await self.client.get("v1", "endpoints", wk.KUBE_DNS_NAMESPACE, wk.KUBE_DNS_SERVICE)
        except ApiError as exc:
            if exc.status != 404:
                raise
            await self.client.create("v1", "endpoints", wk.KUBE_DNS_NAMESPACE, self.body())
            return
        body = self.body()
        body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
        await self.client.update("v1", "endpoints", wk.KUBE_DNS_NAMESPACE, wk.KUBE_DNS_SERVICE, body)

    async def stop(self) -> None:
        try:
            await self.client.delete("v1", "endpoints", wk.KUBE_DNS_NAMESPACE, wk.KUBE_DNS_SERVICE)
        except Exception:  # the API server may already be gone
            pass

    def describe(self) -> dict[str, str]:
        return {"endpoint": f"{self.ip}:{self.port}"}


def build_components(args: argparse.Namespace, network: str, client: ApiClient, api: Any) -> list[Any]:
    """Every component ``up`` runs, in start order (``--only`` filters them)."""
    wanted = {c for c in (getattr(args, "only", "") or "").split(",") if c}

    def on(name: str) -> bool:
        return not wanted or name in wanted

    out: list[Any] = []
    dns_ip = api.services.dns_ip()
    ids = None
    if getattr(api, "security", None) is not None:  # each component its own identity (least privilege)
        ids = ComponentClients(api)
        out.append(ids)

    def client_for(component: str) -> ApiClient:
        return ids.client(component, args.node_name) if ids is not None else client

    if on("controller-manager"):
        out.append(ControllerManager(client_for("controller-manager")))
    node = None
    if on("node"):
        node = NodeAgent(client_for("node"), node_name=args.node_name, network=network,
                         pod_cidr=wk.address_plan(network).pod_cidr, cluster_dns_ip=dns_ip,
                         data_dir=str(Path(args.data_dir) / "node"))
        out.append(node)
    if ids is not None and network != "virtual":  # where pods reach the API (the kubernetes Service)
        out.append(KubernetesEndpoint(api, node))
    if on("dns"):
        dns = dns_server.build_for_up(client=client_for("dns"), args=args, network=network, api=api)
        out.append(dns)
        # where pods reach it: the kube-dns ClusterIP in netns mode, else its first host listener
        out.append(KubeDnsEndpoints(client, dns_ip, 53) if network == "netns" else KubeDnsEndpoints(client, dns=dns))
    if on("proxy"):
        out.append(proxy_server.build_for_up(client=client_for("proxy"), args=args, network=network, api=api))
    if on("ingress"):
        out.append(ingress_cli.build_for_up(client_for("ingress"), args, network, admin=client))
    out.extend(host_side_components(args, network, client, node))  # rootless: the host's view
    return out


def host_side_components(args: Any, network: str, client: Any, node: Any) -> list[Any]:
    """What ``up`` adds for the host's view: forwarders in the userns mode, the low-port
    annotation in loopback mode without root (``client``: the admin client, it patches Services)."""
    wanted = {c for c in (getattr(args, "only", "") or "").split(",") if c}
    if network == "netns" and os.environ.get(ENV_HOLDER) and node is not None:
        fixed: tuple[tuple[str, int, int], ...] = ()
        if not wanted or "ingress" in wanted:
            fixed = (("ingress-http", INGRESS_HOST_PORTS[0], getattr(args, "ingress_http_port", None) or 80),
                     ("ingress-https", INGRESS_HOST_PORTS[1], getattr(args, "ingress_https_port", None) or 443))
        return [HostPorts(client, lambda: (node.network.node_netns, node.network.node_ip), fixed)]
    if network == "loopback" and os.geteuid() != 0 and (not wanted or "proxy" in wanted):
        return [LoopbackPortNotes(client)]
    return []
