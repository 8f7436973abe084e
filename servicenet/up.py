"""``servicenet up``: the composition of every component into one embedded cluster.

Each component is built exactly as its own command would build it and talks to the others only
through the API. This module only decides the address plan per network mode and the order:
controllers, node agent (it creates the node network namespace), DNS, the proxy, then ingress.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from servicenet.client import ApiClient, ApiError
from servicenet.common import log

_log = log.get("up")

POD_CIDRS = {"netns": "10.244.0.0/24", "loopback": "127.64.0.0/24", "virtual": "10.244.0.0/20"}


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
                "metadata": {"name": "kube-dns", "namespace": "kube-system",
                             "labels": {"k8s-app": "kube-dns"}},
                "subsets": [{"addresses": [{"ip": self.ip}],
                             "ports": [{"name": "dns", "port": self.port, "protocol": "UDP"},
                                       {"name": "dns-tcp", "port": self.port, "protocol": "TCP"}]}]}

    async def start(self) -> None:
        self._resolve()
        try:
            cur = await self.client.get("v1", "endpoints", "kube-system", "kube-dns")
        except ApiError as exc:
            if exc.status != 404:
                raise
            await self.client.create("v1", "endpoints", "kube-system", self.body())
            return
        body = self.body()
        body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
        await self.client.update("v1", "endpoints", "kube-system", "kube-dns", body)

    async def stop(self) -> None:
        try:
            await self.client.delete("v1", "endpoints", "kube-system", "kube-dns")
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
    if on("controller-manager"):
        from servicenet.controllers.manager import ControllerManager

        out.append(ControllerManager(client))
    if on("node"):
        from servicenet.node.agent import NodeAgent

        out.append(NodeAgent(client, node_name=args.node_name, network=network, pod_cidr=POD_CIDRS[network],
                             cluster_dns_ip=dns_ip, data_dir=str(Path(args.data_dir) / "node")))
    if on("dns"):
        from servicenet.dns.model import DnsConfig
        from servicenet.dns.server import DnsServer

        listen = [tuple(x) for x in args.dns_listen]
        if network == "netns":
            out.append(DnsServer(client, config=DnsConfig(pods="insecure"), listen=listen,  # type: ignore[arg-type]
                                 health_listen=("127.0.0.1", 0), netns_from_node=True, dns_ip=dns_ip))
            out.append(KubeDnsEndpoints(client, dns_ip, 53))
        else:
            dns = DnsServer(client, config=DnsConfig(pods="insecure"), listen=listen,  # type: ignore[arg-type]
                            health_listen=("127.0.0.1", 0))
            out.append(dns)
            out.append(KubeDnsEndpoints(client, dns=dns))
    if on("proxy"):
        from servicenet.proxy.server import build_for_up

        out.append(build_for_up(client=client, args=args, network=network, api=api))
    if on("ingress"):
        from servicenet.ingress.cli import build_for_up as ingress_for_up

        out.append(ingress_for_up(client, args, network))
    return out
