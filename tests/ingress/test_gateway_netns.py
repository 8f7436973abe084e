"""Acceptance, netns mode (root): the gateway controller beside the ingress controller of a node
listens on the node's IP inside the node's network namespace, on each listener's port; an outside
machine (a namespace of the test's own) reaches an HTTPRoute's backend on another outside machine,
and the Gateway's status shows the node IP."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from servicenet.ingress.controller import IngressConfig, IngressController
from servicenet.ingress.gateway_controller import GatewayConfig, GatewayController, WithGateway
from tests.e2e.cluster import running_cluster

from .gw_harness import BUNDLE, MANIFEST
from .harness import run, until
from .outside import outside_machines

pytestmark = pytest.mark.root


async def test_gateway_listens_on_node_ip_in_netns(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, "netns") as c:
        assert c.netns
        node_ip = c.agent.network.node_ip
        await c.kubectl("apply", "--server-side", "-f", str(BUNDLE))
        await c.kubectl("wait", "--for", "condition=established", "--timeout=30s", "crd", "--all")
        client = c.api.new_client()
        ing = IngressController(client, IngressConfig(state_dir=tmp_path / "ingress", http_port=80, https_port=443,
                                                      node_name=c.node))
        both = WithGateway(ing, GatewayController(client, GatewayConfig(state_dir=tmp_path / "gateway")),
                           wait_for_api=True, poll=0.2)
        await both.start()
        try:
            async with outside_machines(c.netns, ["app", "client"]) as m:
                await m["app"].echo("app", 8001)
                manifest = MANIFEST.format(port=8080, backend=8001).replace("127.0.0.1", m["app"].ip)
                await c.kubectl("apply", "-f", "-", input=manifest.encode())

                async def served() -> bool:
                    rc, out = await run(*m["client"].prefix, "curl", "-s", "--max-time", "2", "-H", "Host: app.test",
                                        f"http://{node_ip}:8080/app/x")
                    return rc == 0 and '"name": "app"' in out
                await until(served, 60, 0.2, what="the HTTPRoute served on the node IP from outside")

                async def address() -> str | None:
                    _, out, _ = await c.kubectl("get", "gateway", "web", "-o", "jsonpath={.status.addresses[*].value}")
                    return out or None
                assert await until(address, 30, what="Gateway status addresses") == node_ip
                assert both.gateway.cfg.netns == c.netns
        finally:
            with contextlib.suppress(Exception):
                await both.stop()
            await client.close()
