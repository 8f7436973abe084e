"""How pods reach the API server, and which identity each embedded component uses.

:class:`KubernetesEndpoint` is the ``default/kubernetes`` endpoint reconciler: it publishes where
the API answers as the Endpoints of the selector-less ``kubernetes`` Service, so the service proxy
forwards the ClusterIP (``KUBERNETES_SERVICE_HOST``) to it. In netns mode the API server also
listens inside the node network namespace on the node's bridge address (pods cannot reach the
host's 127.0.0.1); in loopback mode the endpoint is the API server's own address.

:class:`ComponentClients` hands each component an API client authenticated by its own x509 client
certificate (least privilege through the bootstrap RBAC policy).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from aiohttp import web

from servicenet.api import errors
from servicenet.api import rbac_policy as policy
from servicenet.api.resources import by_plural
from servicenet.apiserver.identities import component_kubeconfig
from servicenet.apiserver.registry import WriteOptions
from servicenet.client import ApiClient
from servicenet.common import log
from servicenet.common.netns import socket_in_netns

_log = log.get("apiserver.podaccess")

IDENTITIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "controller-manager": policy.CONTROLLER_MANAGER,
    "scheduler": policy.SCHEDULER,
    "proxy": policy.PROXY,
    "dns": policy.DNS,
    "ingress": policy.INGRESS,
}


class ComponentClients:
    """One client per component identity; closed when ``up`` stops (its ``stop`` runs last)."""

    name = "identities"

    def __init__(self, api: Any) -> None:
        self.api = api
        self.clients: list[ApiClient] = []

    def client(self, component: str, node_name: str | None = None) -> ApiClient:
        if component == "node":
            user, groups = policy.node_identity(node_name or "node-1")
            key = f"node-{node_name or 'node-1'}"
        else:
            user, groups = IDENTITIES[component]
            key = component
        path = component_kubeconfig(self.api.config.data_dir, self.api.url, key, user, groups)
        c = ApiClient.from_kubeconfig(path, user_agent=f"servicenet-{component}")
        self.clients.append(c)
        return c

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for c in self.clients:
            with contextlib.suppress(Exception):
                await c.close()

    def describe(self) -> dict[str, str]:
        return {}


class KubernetesEndpoint:
    name = "kubernetes-endpoint"

    def __init__(self, api: Any, node: Any = None) -> None:
        self.api = api
        self.node = node  # the NodeAgent (netns mode: listen inside its namespace)
        self.ip = ""
        self.port = 0
        self._site: web.BaseSite | None = None

    async def start(self) -> None:
        api = self.api
        netns = getattr(getattr(self.node, "network", None), "node_netns", None)
        if netns:
            self.ip, self.port = self.node.network.node_ip, api.port
            sock = socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM, bind=(self.ip, self.port))
            sock.listen(1024)
            sock.setblocking(False)
            self._site = web.SockSite(api._runner, sock, ssl_context=api.ssl_context)
            await self._site.start()
        else:
            self.ip = "127.0.0.1" if api.config.host in ("0.0.0.0", "::", "") else api.config.host
            self.port = api.port
        await self._publish()

    async def _publish(self) -> None:
        info = by_plural("", "v1", "endpoints")
        assert info is not None
        body: dict[str, Any] = {"metadata": {"name": "kubernetes", "namespace": "default"},
                                "subsets": [{"addresses": [{"ip": self.ip}],
                                             "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}]}]}
        reg = self.api.registry
        rec = self.api.store.get("/registry/core/endpoints/default/kubernetes")
        if rec is None:
            await reg.create(info, "default", body, WriteOptions())
            return
        cur = rec.obj()
        if cur.get("subsets") == body["subsets"]:
            return
        cur["subsets"] = body["subsets"]
        await reg.update(info, "default", "kubernetes", cur, WriteOptions())

    async def stop(self) -> None:
        if self._site is not None:
            with contextlib.suppress(Exception):
                await self._site.stop()
        with contextlib.suppress(errors.ApiStatusError, Exception):
            info = by_plural("", "v1", "endpoints")
            await self.api.registry.delete(info, "default", "kubernetes", {})

    def describe(self) -> dict[str, str]:
        return {"endpoint": f"{self.ip}:{self.port}"}
