"""ProxyServer in userspace mode: static source, and the real API server + informers."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time

import aiohttp
import pytest

from servicenet.proxy.server import ProxyConfig, ProxyServer
from servicenet.proxy.source import StaticSource
from servicenet.testing import running_apiserver

from . import helpers as h

RNG = random.Random(os.getpid() ^ time.time_ns())


def _free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


async def _backend(ip: str, port: int, name: str) -> asyncio.AbstractServer:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(name.encode())
        w.close()
    return await asyncio.start_server(handle, ip, port)


async def _get(ip: str, port: int) -> str:
    r, w = await asyncio.wait_for(asyncio.open_connection(ip, port), 3)
    data = await asyncio.wait_for(r.read(), 3)
    w.close()
    return data.decode()


async def _until(pred, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_userspace_component_with_static_source() -> None:
    vip = f"127.96.{RNG.randrange(100, 250)}.{RNG.randrange(2, 250)}"
    pod = f"127.64.{RNG.randrange(100, 250)}.{RNG.randrange(2, 250)}"
    target, port = _free_port(), _free_port(vip)
    srv = await _backend(pod, target, "pod-a")
    svc = h.service("default", "web", vip, [h.port(port, "http", target=target)])
    es = h.eslice("default", "web", [h.endpoint(pod, node="node-1")], [{"name": "http", "port": target}])
    source = StaticSource([svc], [es])
    proxy = ProxyServer(ProxyConfig(mode="userspace", min_sync_period=0.01), source=source)
    await proxy.start()
    try:
        assert await _get(vip, port) == "pod-a"
        source.set(slices=[h.eslice("default", "web", [], [{"name": "http", "port": target}])])
        await _until(lambda: not proxy.userspace.listeners)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(vip, port)
        async with aiohttp.ClientSession() as http:
            async with http.get(proxy.health_url + "/livez") as resp:
                assert resp.status == 200 and (await resp.json(content_type=None))["nodeEligible"] is True
            async with http.get(proxy.health_url + "/metrics") as resp:
                text = await resp.text()
        assert "kubeproxy_sync_proxy_rules_last_timestamp_seconds" in text
        assert "kubeproxy_network_programming_duration_seconds_bucket" in text
        assert proxy.describe()["mode"] == "userspace"
    finally:
        await proxy.stop()
        srv.close()


@pytest.fixture
async def loop_api(tmp_path):  # type: ignore[no-untyped-def]
    """An API server whose service CIDR is a loopback range (userspace mode can bind it)."""
    async with running_apiserver(tmp_path, service_cidrs=[f"127.96.{RNG.randrange(100, 250)}.0/24"]) as running:
        yield running


async def test_userspace_component_against_api(loop_api) -> None:  # type: ignore[no-untyped-def]
    """Informers on the real API server; the LB allocator writes status; the proxy follows."""
    api = loop_api
    vip_port = _free_port()
    pod = f"127.64.{RNG.randrange(100, 250)}.{RNG.randrange(2, 250)}"
    target = _free_port()
    srv = await _backend(pod, target, "pod-b")
    client = api.client
    svc = await client.create("v1", "services", "default", {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": vip_port, "targetPort": target}]}})
    await client.create("discovery.k8s.io/v1", "endpointslices", "default", h.eslice(
        "default", "web", [h.endpoint(pod, node="node-1")], [{"name": "http", "port": target}], name="web-1"))
    lb_pool = f"127.98.{RNG.randrange(100, 250)}.0/24"
    proxy = ProxyServer(ProxyConfig(mode="userspace", min_sync_period=0.01, lb_pool=lb_pool), client=client)
    await proxy.start()
    try:
        cip = svc["spec"]["clusterIP"]
        await _until(lambda: (cip, vip_port, "TCP") in proxy.userspace.listeners)
        assert await _get(cip, vip_port) == "pod-b"

        async def lb_ip() -> str | None:
            got = await client.get("v1", "services", "default", "web")
            ing = got.get("status", {}).get("loadBalancer", {}).get("ingress") or []
            return ing[0]["ip"] if ing else None
        deadline = time.monotonic() + 5
        while (ip := await lb_ip()) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert ip.startswith(lb_pool.rsplit(".", 1)[0])
        await _until(lambda: (ip, vip_port, "TCP") in proxy.userspace.listeners)
        assert await _get(ip, vip_port) == "pod-b"
    finally:
        await proxy.stop()
        srv.close()
