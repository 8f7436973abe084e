"""Acceptance, netns mode (root): the walkthrough end to end. Two outside machines (namespaces of
the test's own) serve the UI on 8001 and the API on 8004; selector-less Services + EndpointSlices
point at them; the TLS Secret comes from ``kubectl create secret tls`` and the bbs.test.com Ingress from kubectl apply; the ingress
data plane listens on the node IP's 80/443; curl with the test CA checks every answer, directly and
through an outside HAProxy in another namespace balancing the nodes' 443 as in the walkthrough."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from servicenet.ingress.controller import IngressConfig, IngressController
from tests.e2e.cluster import running_cluster

from .harness import run, until
from .objects import CLASS
from .outside import outside_machines
from .pki import CA
from .walkthrough import INGRESS_YAML, backends_yaml, check_walkthrough

pytestmark = pytest.mark.root

LB_CFG = """\
defaults
    mode tcp
    timeout connect 5s
    timeout client 300s
    timeout server 300s
frontend https
    bind {lb}:443
    default_backend nodes_https
frontend http
    bind {lb}:80
    default_backend nodes_http
backend nodes_https
    balance roundrobin
{https}
backend nodes_http
    balance roundrobin
{http}
"""


async def test_walkthrough_netns(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, "netns") as c:
        assert c.netns
        node_ip = c.agent.network.node_ip
        await c.client.create("networking.k8s.io/v1", "ingressclasses", None, CLASS)
        client = c.api.new_client()
        ctl = IngressController(client, IngressConfig(state_dir=tmp_path / "ingress", http_port=80, https_port=443,
                                                      node_name=c.node))
        await ctl.start()
        try:
            async with outside_machines(c.netns, ["ui", "api", "lb"]) as m:
                await m["ui"].echo("ui", 8001)
                await m["api"].echo("api", 8004)
                ca = CA.new()
                (tmp_path / "ca.pem").write_bytes(ca.pem)
                crt, key, _ = ca.leaf("bbs.test.com")
                await c.kubectl("apply", "-f", "-", input=backends_yaml((m["ui"].ip, 8001),
                                                                        (m["api"].ip, 8004)).encode())
                (tmp_path / "tls.crt").write_bytes(crt)
                (tmp_path / "tls.key").write_bytes(key)
                await c.kubectl("create", "secret", "tls", "bbs-tls", "--cert", str(tmp_path / "tls.crt"),
                                "--key", str(tmp_path / "tls.key"))
                await c.kubectl("apply", "-f", "-", input=INGRESS_YAML.encode())

                async def published() -> str | None:
                    _, out, _ = await c.kubectl("get", "ingress", "bbs", "-o",
                                                "jsonpath={.status.loadBalancer.ingress[*].ip}")
                    return out or None

                assert await until(published, 30, what="Ingress status") == node_ip
                await until(lambda: ctl.table.certs and "bbs.test.com" in {r.host for r in ctl.table.routes},
                            30, what="the Ingress programmed")
                # from an outside machine straight to the node IP
                await check_walkthrough(m["lb"].prefix, tmp_path / "ca.pem", node_ip, 443, 80, tmp=tmp_path)
                # and through an outside load balancer over every node's 443 (one node here)
                lb_cfg = tmp_path / "lb.cfg"
                nodes = [node_ip]
                lb_cfg.write_text(LB_CFG.format(
                    lb=m["lb"].ip,
                    https="\n".join(f"    server n{i} {ip}:443 check" for i, ip in enumerate(nodes)),
                    http="\n".join(f"    server n{i} {ip}:80 check" for i, ip in enumerate(nodes))))
                rc, out = await run("haproxy", "-c", "-f", str(lb_cfg))
                assert rc == 0, out
                await m["lb"].start("haproxy", "-db", "-f", str(lb_cfg))

                async def lb_up() -> bool:
                    rc, _ = await run(*m["lb"].prefix, "curl", "-s", "-o", "/dev/null", "--max-time", "2",
                                      f"http://{m['lb'].ip}/")
                    return rc == 0

                await until(lb_up, 20, what="the outside load balancer")
                await check_walkthrough(m["lb"].prefix, tmp_path / "ca.pem", m["lb"].ip, 443, 80,
                                        upload_mb=(2, 250), tmp=tmp_path)
        finally:
            with contextlib.suppress(Exception):
                await ctl.stop()
            await client.close()
