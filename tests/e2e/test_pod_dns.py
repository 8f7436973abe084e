"""Acceptance (DNS): the walkthrough names, resolved with nslookup/dig, also from inside a pod (netns)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from servicenet.dns.model import DnsConfig
from servicenet.dns.server import DnsServer

from .cluster import Cluster, ready, running_cluster, until

MANIFESTS = Path(__file__).parent.parent / "apiserver" / "manifests"


async def _web_and_hostnames(c: Cluster, port_patch: bool) -> dict[str, str]:
    text = (MANIFESTS / "web-sts.yaml").read_text()
    if port_patch:
        text = text.replace("containerPort: 80", "containerPort: 8080").replace("port: 80", "port: 8080")
    await c.kubectl("apply", "-f", "-", input=text.encode())
    await c.kubectl("apply", "-f", str(MANIFESTS / "hostnames.yaml"))

    async def all_ready() -> dict[str, str] | None:
        ps = (await c.client.list("v1", "pods", "default"))["items"]
        ok = {p["metadata"]["name"]: p["status"]["podIP"] for p in ps if ready(p)}
        return ok if len(ok) == 5 else None

    return await until(all_ready, 60, what="web-0, web-1 and 3 hostnames pods ready")


async def dig(server: tuple[str, int], name: str, *extra: str) -> list[str]:
    # No retry: a reply dig flags (";; Warning: query response not set" was seen once under load)
    # fails the test. Two ways to get one are fixed: two servers handed the same port-0 port
    # (common.netns binds before setting SO_REUSEPORT) and the forwarder relaying its own query from
    # a self-connected UDP socket (tests/dns/test_forwarder_responses.py).
    proc = await asyncio.create_subprocess_exec(
        "dig", "+short", "+time=2", "+tries=2", "-p", str(server[1]), f"@{server[0]}", name, *extra,
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    text = out.decode()
    flagged = [line for line in text.splitlines() if line.startswith(";;")]
    assert not flagged or "connection timed out" in text, f"dig flagged the reply: {text}"
    return sorted(w for line in text.splitlines() if not line.startswith(";") for w in line.split())


async def test_walkthrough_names_over_dig(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, "loopback") as c:
        dns = DnsServer(c.api.new_client(), config=DnsConfig(), listen=[("127.0.0.1", 0)])
        await dns.start()
        try:
            server = (dns.bound[0][1], dns.bound[0][2])
            ips = await _web_and_hostnames(c, port_patch=True)
            web = sorted([ips["web-0"], ips["web-1"]])

            async def headless() -> bool:
                return await dig(server, "nginx.default.svc.cluster.local") == web

            await until(headless, 10, what="headless answer")
            assert await dig(server, "web-0.nginx.default.svc.cluster.local") == [ips["web-0"]]
            assert await dig(server, "web-1.nginx.default.svc.cluster.local") == [ips["web-1"]]
            svc = await c.client.get("v1", "services", "default", "hostnames")
            assert await dig(server, "hostnames.default.svc.cluster.local") == [svc["spec"]["clusterIP"]]
            # a Deployment pod's name under a headless Service is NXDOMAIN
            pod = next(n for n in ips if n.startswith("hostnames-"))
            proc = await asyncio.create_subprocess_exec(
                "dig", "-p", str(server[1]), f"@{server[0]}", f"{pod}.nginx.default.svc.cluster.local",
                stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            assert "status: NXDOMAIN" in out.decode()
            # nslookup prints both headless addresses
            proc = await asyncio.create_subprocess_exec(
                "nslookup", f"-port={server[1]}", "nginx.default.svc.cluster.local", server[0],
                stdout=asyncio.subprocess.PIPE)
            out, _ = await proc.communicate()
            assert all(f"Address: {ip}" in out.decode() for ip in web)
        finally:
            await dns.stop()


@pytest.mark.root
async def test_short_names_resolve_inside_a_pod(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, "netns") as c:
        dns = DnsServer(c.api.new_client(), config=DnsConfig(), listen=[("127.0.0.1", 0)],
                        netns=c.netns, dns_ip="10.96.0.10")
        await dns.start()
        try:
            ips = await _web_and_hostnames(c, port_patch=False)
            web = sorted([ips["web-0"], ips["web-1"]])
            await c.client.create("v1", "pods", "default", {
                "metadata": {"name": "client"},
                "spec": {"containers": [{"name": "c", "image": "tutum/dnsutils", "command": ["sleep", "600"]}]}})
            await until(lambda: _pod_ready(c, "client"), 30, what="client pod")

            async def lookup(name: str) -> list[str]:
                rc, out, _ = await c.kubectl("exec", "client", "--", "dig", "+short", "+search", "+time=2",
                                             name, check=False)
                return sorted(out.split()) if rc == 0 else []

            await until(lambda: _eq(lookup("nginx"), web), 15, what="nginx via search path")
            assert await lookup("web-0.nginx") == [ips["web-0"]]
            assert await lookup("nginx.default") == web
            _, resolv, _ = await c.kubectl("exec", "client", "--", "cat", "/etc/resolv.conf")
            assert "nameserver 10.96.0.10" in resolv
            assert "search default.svc.cluster.local svc.cluster.local cluster.local" in resolv
            assert "options ndots:5" in resolv
            # nslookup, as in the walkthrough, also goes through the search path
            _, out, _ = await c.kubectl("exec", "client", "--", "nslookup", "web-1.nginx")
            assert f"Address: {ips['web-1']}" in out
        finally:
            await dns.stop()


async def _pod_ready(c: Cluster, name: str) -> bool:
    return ready(await c.client.get("v1", "pods", "default", name))


async def _eq(coro, want):  # type: ignore[no-untyped-def]
    return (await coro) == want
