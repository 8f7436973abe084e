"""kill -9 of the proxy process: the rules stay, established connections live on, and the next
proxy converges to exactly the current state; SIGTERM removes the table (nftables, netns mode)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from servicenet.common.netns import socket_in_netns

from .cluster import until
from .proxy_stack import ProxyStack, proxy_stack

pytestmark = [pytest.mark.root, pytest.mark.asyncio]


@pytest.fixture(autouse=True)
def _need_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("kernel tests need root in CI")
        pytest.skip("needs root")


@contextmanager
def proxy_process(s: ProxyStack, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    argv = [sys.executable, "-m", "servicenet.cli", "proxy", "--kubeconfig", str(s.c.api.kubeconfig),
            "--mode", "nftables", "--node-name", s.c.node, "--netns", str(s.c.netns),
            "--cluster-cidr", "10.244.0.0/16", "--service-cidr", "10.96.0.0/12", "--min-sync-period", "0",
            "--health-listen", "127.0.0.1:0"]
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    except BaseException:
        sys.stderr.write(f"--- {log} ---\n{log.read_text(errors='replace')[-4000:]}\n")  # shown on failure
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def _get(sock: socket.socket) -> str:
    """One HTTP/1.1 request on an open connection; the body (the pod's name)."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: hostnames\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096) or b"EOF"
        assert not data.endswith(b"EOF"), data
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(4096)
    return body.decode()


async def _served_by(s: ProxyStack, vip: str, n: int = 30) -> set[str]:
    counts = await s.curl_loop(None, f"http://{vip}:80", n)
    return set(counts)


async def test_kill9_restart_converges_and_keeps_established_connections(tmp_path: Path) -> None:
    async with proxy_stack(tmp_path, "nftables") as s:
        svc, pods = await s.hostnames()
        vip = svc["spec"]["clusterIP"]
        await s.proxy.stop()  # a real process takes over (the in-process proxy removes its table)
        rc, tables = await s.c.exec_in_node("nft", "list", "tables")
        assert "kube-proxy" not in tables, tables

        with proxy_process(s, tmp_path / "proxy1.log") as first:
            async def serving() -> bool:
                return await _served_by(s, vip, 20) == set(pods)

            await until(serving, 30, interval=0.2, what="the first proxy process serves the VIP")
            loop = asyncio.get_running_loop()
            conn = socket_in_netns(s.c.netns, socket.AF_INET, socket.SOCK_STREAM)
            conn.settimeout(10)
            await loop.run_in_executor(None, conn.connect, (vip, 80))
            held = await loop.run_in_executor(None, _get, conn)
            assert held in pods
            first.send_signal(signal.SIGKILL)
            first.wait(10)

        # nobody programs the kernel now: the rules stay, old and new connections still work
        assert await loop.run_in_executor(None, _get, conn) == held
        assert await _served_by(s, vip) == set(pods)
        # the world changes meanwhile: another pod goes away and the Deployment replaces it
        victim = next(p for p in pods if p != held)
        await s.c.kubectl("delete", "pod", victim, "--grace-period=0", "--force")

        async def replaced() -> dict[str, str] | None:
            ps = await s.ready_pods("app=hostnames")
            now = {p["metadata"]["name"]: p["status"]["podIP"] for p in ps}
            return now if len(now) == 3 and victim not in now else None

        now = await until(replaced, 60, interval=0.2, what="the Deployment replaced the deleted pod")

        with proxy_process(s, tmp_path / "proxy2.log") as second:
            async def converged() -> bool:
                return await _served_by(s, vip, 60) == set(now)

            await until(converged, 60, interval=0.2, what="the restarted proxy converges to the new pods")
            rc, ruleset = await s.c.exec_in_node("nft", "list", "table", "ip", "kube-proxy")
            assert rc == 0 and pods[victim] not in ruleset, ruleset
            assert all(ip in ruleset for ip in now.values()), ruleset
            # the connection opened before the kill still reaches the same pod
            assert await loop.run_in_executor(None, _get, conn) == held
            conn.close()
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0
        rc, tables = await s.c.exec_in_node("nft", "list", "tables")
        assert "kube-proxy" not in tables, tables
