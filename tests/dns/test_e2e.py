"""End to end: objects created through the API server show up in DNS answers within 100 ms."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import dns.asyncquery
import dns.exception
import dns.message
import dns.rcode
import pytest

from servicenet.dns.model import DnsConfig
from servicenet.dns.server import DnsServer

testing = pytest.importorskip("servicenet.testing")
Z = "cluster.local."


async def answer(port: int, name: str, qtype: str = "A") -> tuple[int, list[str]]:
    m = await dns.asyncquery.udp(dns.message.make_query(name, qtype), "127.0.0.1", port=port, timeout=1)
    return m.rcode(), sorted(rd.to_text() for rrs in m.answer for rd in rrs)


async def until(port: int, name: str, want: tuple[int, list[str]], qtype: str = "A", limit: float = 5.0) -> float:
    """Poll until the answer matches; return how long it took."""
    t0 = time.monotonic()
    while True:
        got = await answer(port, name, qtype)
        if got == want:
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit:
            raise AssertionError(f"{name} {qtype}: {got} != {want}")
        await asyncio.sleep(0.002)


# The DNS server has no periodic relist: a change shows only when the watch pushes it, so without
# the push ``until`` runs out (5 s). The bound below tells a push from anything slower; the
# latency itself is a benchmark figure (bench/dns/programming.py, bench.cluster.scale), not a test's, because a
# loaded CI machine stretches it.
PUSHED = 1.0


async def test_api_changes_reach_dns_quickly(tmp_path: Path) -> None:
    async with testing.running_apiserver(tmp_path) as api:
        dns_server = DnsServer(api.client, config=DnsConfig(forward=False), listen=[("127.0.0.1", 0)])
        await dns_server.start()
        try:
            await dns_server.wait_ready(10)
            port = dns_server.bound[0][2]
            name = f"web.default.svc.{Z}"
            assert (await answer(port, name))[0] == dns.rcode.NXDOMAIN
            created = await api.client.create("v1", "services", "default", {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}})
            ip = created["spec"]["clusterIP"]
            assert await until(port, name, (dns.rcode.NOERROR, [ip])) < PUSHED
            await api.client.create("v1", "services", "default", {
                "apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
                "spec": {"clusterIP": "None", "selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]}})
            await api.client.create("discovery.k8s.io/v1", "endpointslices", "default", {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "db-x1", "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.244.0.5"], "hostname": "db-0", "conditions": {"ready": True}}],
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]})
            assert await until(port, f"db-0.db.default.svc.{Z}", (dns.rcode.NOERROR, ["10.244.0.5"])) < PUSHED
            assert await until(port, f"_pg._tcp.db.default.svc.{Z}",
                               (dns.rcode.NOERROR, [f"0 100 5432 db-0.db.default.svc.{Z}"]), "SRV") < PUSHED
            await api.client.delete("v1", "services", "default", "web")
            assert await until(port, name, (dns.rcode.NXDOMAIN, [])) < PUSHED
        finally:
            await dns_server.stop()


async def test_servicenet_dns_command(tmp_path: Path) -> None:
    """`servicenet dns --kubeconfig ...` as its own process, against a live API server."""
    import signal
    import socket
    import sys

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with testing.running_apiserver(tmp_path) as api:
        created = await api.client.create("v1", "services", "default", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "cmd"},
            "spec": {"ports": [{"name": "http", "port": 80}]}})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; from servicenet.cli import main; sys.exit(main())", "dns",
            "--kubeconfig", str(api.kubeconfig), "--dns-listen", f"127.0.0.1:{port}", "--no-forward",
            "--health-listen", "127.0.0.1:0", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    got = await answer(port, f"cmd.default.svc.{Z}")
                    if got == (dns.rcode.NOERROR, [created["spec"]["clusterIP"]]):
                        break
                except dns.exception.Timeout:
                    pass
                assert proc.returncode is None, await proc.stderr.read()  # type: ignore[union-attr]
                assert time.monotonic() < deadline, "servicenet dns never answered"
                await asyncio.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 10) == 0
