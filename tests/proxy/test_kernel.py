"""Kernel tests (root): program iptables/nftables inside throwaway namespaces and send real traffic.

Topology per test: node namespace ``sn-<id>-n`` with bridge ``sn-<id>-br`` (10.244.0.1/24)
and three "pod" namespaces ``sn-<id>-p<i>`` (10.244.0.1<i>) on veths, each running a tiny
HTTP server that answers its own name. The client (curl) runs in the node namespace.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import pytest

from servicenet.proxy.model import changed_services, compute
from servicenet.proxy.render_iptables import IptablesConfig
from servicenet.proxy.render_nftables import NftConfig
from servicenet.proxy.server import ProxyConfig, ProxyServer
from servicenet.proxy.source import StaticSource
from servicenet.proxy.sync import IptablesBackend, NftablesBackend

from . import helpers as h

pytestmark = pytest.mark.root

VIP = "10.96.0.20"
NODE_IP = "10.244.0.1"
SERVER = r"""
import sys, http.server, socketserver
name = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (name + "\n").encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    def server_bind(self):  # without HTTPServer's reverse lookup of the address (a DNS timeout here)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = name, self.server_address[1]
S((sys.argv[2], 8080), H).serve_forever()
"""


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def batch(netns: str, commands: list[str]) -> None:
    """``ip -n NETNS -batch -``: the commands in order, failing on the first that fails."""
    r = subprocess.run(["ip", "-n", netns, "-batch", "-"], input="\n".join(commands) + "\n", capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, f"ip -n {netns} -batch: {r.stderr}"


@dataclass
class Topo:
    node: str
    pods: list[str]
    ips: list[str]

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.node, *argv, check=check)


@pytest.fixture
def topo() -> Iterator[Topo]:
    if os.geteuid() != 0:
        pytest.fail("kernel tests need root")
    sid = "sn-" + uuid.uuid4().hex[:6]
    node, br = f"{sid}-n", f"{sid}-br"
    pods = [f"{sid}-p{i}" for i in range(3)]
    ips = [f"10.244.0.1{i}" for i in range(3)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for ns in (node, *pods):
            sh("ip", "netns", "add", ns)
        # one `ip -batch` per namespace: the same commands, a few processes instead of dozens
        node_cmds = ["link set lo up", f"link add {br} type bridge", f"addr add {NODE_IP}/24 dev {br}",
                     f"link set {br} up", f"route add 10.96.0.0/12 dev {br}",
                     f"route add 10.255.255.0/24 dev {br}"]  # the last: the LB pool
        for i, pod in enumerate(pods):
            node_cmds += [f"link add {sid}-v{i} type veth peer name {sid}-c{i} netns {pod}",
                          f"link set {sid}-v{i} master {br} up"]
        batch(node, node_cmds)
        for i, (pod, ip) in enumerate(zip(pods, ips, strict=True)):
            batch(pod, ["link set lo up", f"addr add {ip}/24 dev {sid}-c{i}", f"link set {sid}-c{i} up",
                        f"route add default via {NODE_IP}"])
            procs.append(subprocess.Popen(["ip", "netns", "exec", pod, "python3", "-S", "-c", SERVER, f"pod{i}", ip],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        t = Topo(node, pods, ips)
        deadline = time.monotonic() + 30
        for ip, proc in zip(ips, procs, strict=True):  # wait for every server to answer directly
            while t.run("curl", "-s", "--max-time", "1", f"http://{ip}:8080/", check=False).returncode != 0:
                assert proc.poll() is None, f"pod server {ip} died: {proc.stderr.read()!r}"  # type: ignore[union-attr]
                assert time.monotonic() < deadline, f"pod server {ip} did not start"
                time.sleep(0.05)
        yield t
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for ns in (*pods, node):
            sh("ip", "netns", "del", ns, check=False)


def _state(ips: list[str], *, affinity: int | None = None, node_port: int = 30080):
    svc = h.service("default", "web", VIP, [h.port(80, "http", node_port=node_port, target=8080)],
                    type_="NodePort", affinity=affinity)
    es = h.eslice("default", "web", [h.endpoint(ip) for ip in ips], [{"name": "http", "port": 8080}])
    return compute([svc], [es], "node1", [NODE_IP])


async def _acurl(t: Topo, *args: str) -> str:
    """curl in the node namespace without blocking the event loop (servers of the test live on it)."""
    proc = await asyncio.create_subprocess_exec("ip", "netns", "exec", t.node, "curl", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return out.decode()


def _curl_many(t: Topo, url: str, n: int) -> Counter[str]:
    """n sequential requests, each on a new connection, from one curl process (bounded by --max-time)."""
    args = ["curl", "-s", "--max-time", "60", "-H", "Connection: close"]
    for _ in range(n):
        args += [url]
    out = t.run(*args, check=False).stdout
    return Counter(out.split())


def _backends(netns: str) -> list[tuple[str, object]]:
    # "nftables-text": every transaction through nft -f (no netlink writer)
    nft_cfg = NftConfig(cluster_cidr="10.244.0.0/16", service_cidrs=("10.96.0.0/12",))
    return [("iptables", IptablesBackend(netns, IptablesConfig(cluster_cidr="10.244.0.0/16"))),
            ("iptables-legacy", IptablesBackend(netns, IptablesConfig(cluster_cidr="10.244.0.0/16"), variant="legacy")),
            ("nftables", NftablesBackend(netns, nft_cfg)),
            ("nftables-text", NftablesBackend(netns, nft_cfg, netlink=False))]


def _save(mode: str) -> str:
    return "iptables-legacy-save" if mode == "iptables-legacy" else "iptables-save"


@pytest.mark.parametrize("mode", ["iptables", "iptables-legacy", "nftables", "nftables-text"])
async def test_data_path(topo: Topo, mode: str) -> None:
    backend = dict(_backends(topo.node))[mode]
    await backend.apply(_state(topo.ips), None)  # type: ignore[attr-defined]
    if mode.startswith("iptables"):
        nat = topo.run(_save(mode), "-t", "nat").stdout
        assert "-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES" in nat
        assert nat.count(":KUBE-SEP-") == 3 and "--probability 0.33333333" in nat
    else:
        ruleset = topo.run("nft", "list", "table", "ip", "kube-proxy").stdout
        assert re.search(r"dnat ip to numgen random mod 3( offset \d+)? map @service-endpoints-0", ruleset), ruleset
        assert f"{VIP} . tcp . 80 : goto service-" in ruleset and "chain endpoint-" not in ruleset
        emap = topo.run("nft", "list", "map", "ip", "kube-proxy", "service-endpoints-0").stdout
        assert all(f"{ip} . 8080" in emap for ip in topo.ips), emap

    # spread over 600 new connections
    spread = _curl_many(topo, f"http://{VIP}/", 600)
    assert sum(spread.values()) == 600, spread
    assert set(spread) == {"pod0", "pod1", "pod2"}
    assert all(0.20 <= c / 600 <= 0.47 for c in spread.values()), spread

    # NodePort on the node address
    assert sum(_curl_many(topo, f"http://{NODE_IP}:30080/", 30).values()) == 30

    # readiness flip: pod0 leaves -> never chosen for new connections
    await backend.apply(_state(topo.ips[1:]), None)  # type: ignore[attr-defined]
    after = _curl_many(topo, f"http://{VIP}/", 100)
    assert sum(after.values()) == 100 and "pod0" not in after, after

    # affinity: one client sticks to one pod
    await backend.apply(_state(topo.ips, affinity=300), None)  # type: ignore[attr-defined]
    sticky = _curl_many(topo, f"http://{VIP}/", 50)
    assert len(sticky) == 1 and sum(sticky.values()) == 50, sticky
    if mode.startswith("nftables"):  # affinity keeps upstream's per-endpoint chains
        ruleset = topo.run("nft", "list", "table", "ip", "kube-proxy").stdout
        assert len(re.findall(r"chain endpoint-[A-Z2-7]{8}-", ruleset)) == 3 and "numgen random mod 3 vmap" in ruleset

    # no endpoints: immediate refusal
    await backend.apply(_state([]), None)  # type: ignore[attr-defined]
    t0 = time.monotonic()
    r = topo.run("curl", "-s", "--max-time", "5", f"http://{VIP}/", check=False)
    assert r.returncode == 7 and time.monotonic() - t0 < 1.0, (r.returncode, r.stderr)

    # stopping removes every rule
    await backend.cleanup()  # type: ignore[attr-defined]
    if mode.startswith("iptables"):
        for table in ("nat", "filter"):
            assert "KUBE-" not in topo.run(_save(mode), "-t", table).stdout
    else:
        assert "kube-proxy" not in topo.run("nft", "list", "tables").stdout


@pytest.mark.parametrize("mode", ["iptables", "iptables-legacy", "nftables", "nftables-text"])
async def test_partial_sync_and_restart_converge(topo: Topo, mode: str) -> None:
    svc2 = h.service("default", "old", "10.96.0.21", [h.port(80, "http", target=8080)])
    es2 = h.eslice("default", "old", [h.endpoint(topo.ips[2])], [{"name": "http", "port": 8080}])
    web = h.service("default", "web", VIP, [h.port(80, "http", target=8080)])

    def st(ips: list[str], with_old: bool):
        es = h.eslice("default", "web", [h.endpoint(ip) for ip in ips], [{"name": "http", "port": 8080}])
        return compute([web, *([svc2] if with_old else [])], [es, es2], "node1", [NODE_IP])

    first = dict(_backends(topo.node))[mode]
    s1 = st(topo.ips, True)
    await first.apply(s1, None)  # type: ignore[attr-defined]
    s2 = st(topo.ips[:2], True)
    await first.apply(s2, changed_services(s1, s2))  # type: ignore[attr-defined]
    assert set(_curl_many(topo, f"http://{VIP}/", 60)) == {"pod0", "pod1"}
    assert set(_curl_many(topo, "http://10.96.0.21/", 5)) == {"pod2"}

    # "restart": a fresh backend, a smaller world; the full sync must drop the stale service
    second = dict(_backends(topo.node))[mode]
    await second.apply(st(topo.ips[:1], False), None)  # type: ignore[attr-defined]
    if mode.startswith("iptables"):
        nat = topo.run(_save(mode), "-t", "nat").stdout
        assert nat.count(":KUBE-SEP-") == 1 and nat.count(":KUBE-SVC-") == 1, nat
        assert sum(1 for ln in nat.splitlines() if "-j KUBE-SERVICES" in ln) == 2  # jumps not duplicated
    else:
        ruleset = topo.run("nft", "list", "table", "ip", "kube-proxy").stdout
        assert len(re.findall(r"chain service-[A-Z2-7]{8}-", ruleset)) == 1, ruleset
        assert f"dnat to {topo.ips[0]}:8080" in ruleset and "10.96.0.21" not in ruleset, ruleset
        assert topo.ips[1] not in ruleset and topo.ips[2] not in ruleset, ruleset  # endpoint maps, hairpin pairs
        assert ruleset.count("jump services") == 2
    assert set(_curl_many(topo, f"http://{VIP}/", 20)) == {"pod0"}
    r = topo.run("curl", "-s", "--max-time", "3", "http://10.96.0.21/", check=False)
    assert r.returncode != 0
    await second.cleanup()  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
async def test_proxy_server_in_netns(topo: Topo, mode: str) -> None:
    """The component end to end: static source, kernel mode, healthz, health check node port."""
    svc = h.service("default", "web", VIP, [h.port(80, "http", node_port=30080, target=8080)],
                    type_="LoadBalancer", lb_ips=["10.255.255.7"], etp="Local", hcnp=31000)
    es = h.eslice("default", "web", [h.endpoint(ip) for ip in topo.ips], [{"name": "http", "port": 8080}])
    source = StaticSource([svc], [es])
    proxy = ProxyServer(ProxyConfig(mode=mode, node_name="node1", netns=topo.node, node_ips=(NODE_IP,), cluster_cidr="10.244.0.0/16",
                                    service_cidrs=("10.96.0.0/12",), min_sync_period=0.05), source=source)
    await proxy.start()
    try:
        assert set(_curl_many(topo, f"http://{VIP}/", 60)) == {"pod0", "pod1", "pod2"}
        assert sum(_curl_many(topo, "http://10.255.255.7/", 10).values()) == 10
        async with aiohttp.ClientSession() as http:
            async with http.get(proxy.health_url + "/healthz") as resp:
                body = await resp.json(content_type=None)
                assert resp.status == 200 and body["nodeEligible"] is True and "lastUpdated" in body
            async with http.get(proxy.health_url + "/metrics") as resp:
                text = await resp.text()
                assert "kubeproxy_sync_proxy_rules_duration_seconds_count" in text
        hc = await _acurl(topo, "-s", "-i", "--max-time", "3", f"http://{NODE_IP}:31000/")
        assert hc.startswith("HTTP/1.1 200") and '"localEndpoints": 3' in hc
        # all endpoints move to another node: LB health check says 503
        es_remote = h.eslice("default", "web", [h.endpoint(ip, node="node2") for ip in topo.ips],
                             [{"name": "http", "port": 8080}])
        before = proxy.runner.runs
        source.set(slices=[es_remote])
        deadline = time.monotonic() + 5
        while proxy.runner.runs == before or proxy.health.oldest_pending is not None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        hc = await _acurl(topo, "-s", "-i", "--max-time", "3", f"http://{NODE_IP}:31000/")
        assert hc.startswith("HTTP/1.1 503") and '"localEndpoints": 0' in hc
    finally:
        await proxy.stop()
    if mode == "iptables":
        assert "KUBE-" not in topo.run("iptables-save", "-t", "nat").stdout
    else:
        assert "kube-proxy" not in topo.run("nft", "list", "tables").stdout


async def test_node_addresses_known_only_after_start(topo: Topo) -> None:
    """The proxy can start before its Node is listed (a fresh process racing the node informer).
    Once the Node's InternalIP shows up, the proxy must add the route for the service range in the
    node namespace (it has no default route) and serve the VIP, without a restart."""
    topo.run("ip", "route", "del", "10.96.0.0/12")
    svc = h.service("default", "web", VIP, [h.port(80, "http", target=8080)])
    es = h.eslice("default", "web", [h.endpoint(ip) for ip in topo.ips], [{"name": "http", "port": 8080}])
    source = StaticSource([svc], [es])
    proxy = ProxyServer(ProxyConfig(mode="nftables", node_name="node1", netns=topo.node,
                                    cluster_cidr="10.244.0.0/16", service_cidrs=("10.96.0.0/12",),
                                    min_sync_period=0.0), source=source)
    await proxy.start()
    try:
        assert proxy.node_ips == () and "10.96.0.0/12" not in topo.run("ip", "route").stdout
        node = {"metadata": {"name": "node1", "labels": {}},
                "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}}
        source._node = node
        before = proxy.runner.runs
        source._notify("node", node)
        deadline = time.monotonic() + 10
        while proxy.runner.runs == before or proxy.health.oldest_pending is not None:
            assert time.monotonic() < deadline, "no sync after the Node appeared"
            await asyncio.sleep(0.02)
        assert proxy.node_ips == (NODE_IP,)
        assert f"10.96.0.0/12 dev {topo.node.removesuffix('-n')}-br" in topo.run("ip", "route").stdout
        assert set(_curl_many(topo, f"http://{VIP}/", 30)) == {"pod0", "pod1", "pod2"}
    finally:
        await proxy.stop()
    assert "10.96.0.0/12" not in topo.run("ip", "route").stdout  # stop() removes what it added
