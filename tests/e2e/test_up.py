"""`servicenet up` as a user runs it: one process, kubectl, curl through the proxy, dig, clean SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from servicenet.testing import kubectl, read_banner, up_argv

from .cluster import until

MANIFESTS = Path(__file__).parent.parent / "apiserver" / "manifests"

pytestmark = pytest.mark.loopback_vips  # binds the loopback plan's fixed ClusterIPs (see tests/conftest.py)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(*argv: str, timeout: float = 10.0) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode()


@pytest.mark.parametrize("network", ["loopback", pytest.param("netns", marks=pytest.mark.root)])
async def test_up_serves_the_walkthrough_and_stops_cleanly(tmp_path: Path, network: str) -> None:
    _, host_routes = await run("ip", "-4", "route", "show", "table", "all")
    ing_http, ing_https = (80, 443) if network == "netns" else (_free_port(), _free_port())
    proc = await asyncio.create_subprocess_exec(
        *up_argv(tmp_path, "--network", network, "--ingress-http-port", str(ing_http),
                 "--ingress-https-port", str(ing_https)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        banner = await read_banner(proc, 60)
        assert f"is up (network mode: {network})" in banner
        ing_ip = "127.0.0.1" if network == "loopback" else r"10\.244\.0\.1"
        assert re.search(rf"ingress https\s+{ing_ip}:{ing_https}", banner), banner
        assert re.search(rf"ingress http\s+{ing_ip}:{ing_http}", banner), banner
        dns_port = int(re.search(r"dns dns\s+127\.0\.0\.1:(\d+)", banner).group(1))  # type: ignore[union-attr]
        kc = tmp_path / "kubeconfig"
        _, out, _ = await kubectl(kc, "get", "ingressclass", "servicenet", "-o",
                                  "jsonpath={.spec.controller}")
        assert out == "servicenet.io/ingress-controller", out
        _, out, _ = await kubectl(kc, "apply", "-f", str(MANIFESTS / "hostnames.yaml"))
        assert "service/hostnames created" in out

        async def three_ready() -> bool:
            _, out, _ = await kubectl(kc, "get", "ep", "hostnames", "-o", "jsonpath={.subsets[*].addresses[*].ip}",
                                      check=False)
            return len(out.split()) == 3

        await until(three_ready, 60, what="3 endpoints")
        _, ip, _ = await kubectl(kc, "get", "svc", "hostnames", "-o", "jsonpath={.spec.clusterIP}")
        _, names, _ = await kubectl(kc, "get", "pods", "-l", "app=hostnames", "-o", "name")
        pods = {n.split("/", 1)[1] for n in names.split()}
        rc, answer = await run("dig", "+short", "-p", str(dns_port), "@127.0.0.1",
                               "hostnames.default.svc.cluster.local")
        assert answer.split() == [ip]
        if network == "loopback":
            curl = ["curl", "-s", "--max-time", "3", f"http://{ip}/"]
        else:
            netns = re.search(r"node netns\s+(\S+)", banner).group(1)  # type: ignore[union-attr]
            curl = ["ip", "netns", "exec", netns, "curl", "-s", "--max-time", "3", f"http://{ip}/"]
        seen = set()

        async def all_pods_answer() -> bool:
            rc, body = await run(*curl)
            if rc == 0:
                seen.add(body.strip())
            return seen == pods

        await until(all_pods_answer, 30, interval=0.01, what="every pod answering through the ClusterIP")
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 60)
    assert rc == 0
    # nothing of ours is left: no pod processes from this data dir, no namespaces
    rc, ps = await run("ps", "-eo", "args")
    assert str(tmp_path) not in ps
    if network == "netns":
        ns = netns  # noqa: F821 - set above when netns
        rc, lst = await run("ip", "netns", "list")
        assert ns.rsplit("-", 1)[0] not in lst
    assert os.path.exists(tmp_path / "kubeconfig")
    _, after = await run("ip", "-4", "route", "show", "table", "all")
    assert after == host_routes, "the host's routing table changed"  # network safety: ours stay in our netns


@pytest.mark.parametrize("mode", ["iptables", "nftables"])
async def test_kernel_proxy_modes_need_the_netns_network(tmp_path: Path, mode: str) -> None:
    """Loopback mode has no node namespace: a kernel proxy mode would program the host's own rules."""
    rc, out = await run(sys.executable, "-m", "servicenet.cli", "up", "--network", "loopback",
                        "--proxy-mode", mode, "--data-dir", str(tmp_path), "--api-listen", "127.0.0.1:0",
                        timeout=30)
    assert rc == 2 and "needs --network netns" in out, out
    assert not (tmp_path / "kubeconfig").exists()  # refused before anything started
