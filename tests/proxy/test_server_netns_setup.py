"""Server details found by the e2e proxy tests: routes for the virtual ranges, node-event syncs."""

from __future__ import annotations

import asyncio
import time

import pytest

from servicenet.proxy.server import ProxyConfig, ProxyConfigError, ProxyServer, route_commands
from servicenet.proxy.source import StaticSource
from servicenet.proxy.sync import SyncRunner

ADDRS = """1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
1: lo    inet 10.96.0.10/32 scope global lo\\       valid_lft forever preferred_lft forever
3: sn-ab12-br    inet 10.244.0.1/24 brd 10.244.0.255 scope global sn-ab12-br\\       valid_lft forever
"""
ROUTES = "10.244.0.0/24 dev sn-ab12-br proto kernel scope link src 10.244.0.1\n"


def test_routes_via_the_node_ip_device() -> None:
    assert route_commands(ADDRS, ROUTES, "10.244.0.1", ["10.96.0.0/12", "10.255.255.0/24"]) == [
        ["ip", "route", "add", "10.96.0.0/12", "dev", "sn-ab12-br", "src", "10.244.0.1"],
        ["ip", "route", "add", "10.255.255.0/24", "dev", "sn-ab12-br", "src", "10.244.0.1"],
    ]


def test_existing_routes_and_unknown_node_ip() -> None:
    routes = ROUTES + "10.96.0.0/12 dev sn-ab12-br scope link src 10.244.0.1\n"
    assert route_commands(ADDRS, routes, "10.244.0.1", ["10.96.0.0/12", "10.96.5.0/12"]) == []
    assert route_commands(ADDRS, ROUTES, "10.244.9.9", ["10.96.0.0/12"]) == []


async def test_only_node_label_changes_force_a_full_sync() -> None:
    node = {"metadata": {"name": "node1", "labels": {"kubernetes.io/hostname": "node1"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}}
    proxy = ProxyServer(ProxyConfig(mode="userspace", node_name="node1", min_sync_period=0.0),
                        source=StaticSource(node=node))
    await proxy.start()
    try:
        assert proxy.synced.is_set() and proxy.planner.full_reason is None
        heartbeat = {**node, "status": {**node["status"], "conditions": [{"type": "Ready", "status": "True"}]}}
        proxy._on_change("node", heartbeat)  # a status-only update (heartbeat)
        assert proxy.planner.full_reason is None
        relabelled = {**node, "metadata": {"name": "node1", "labels": {
            "kubernetes.io/hostname": "node1", "topology.kubernetes.io/zone": "z1"}}}
        proxy._on_change("node", relabelled)
        assert proxy.planner.full_reason == "node labels" and proxy.zone == "z1"
    finally:
        await asyncio.wait_for(proxy.stop(), 5)


async def test_sync_runner_stops_right_after_a_request() -> None:
    runs: list[int] = []

    async def fn() -> None:
        runs.append(1)

    r = SyncRunner(fn, 0.0, 3600.0, 30.0)
    r.start()
    await asyncio.sleep(0.01)
    r.request()
    stopping = asyncio.ensure_future(r.stop())
    done, _ = await asyncio.wait({stopping}, timeout=1.0)
    if not done:  # do not leak the task: the second cancel is not swallowed
        r._task.cancel()  # type: ignore[union-attr]
        await stopping
    assert done, "SyncRunner.stop() hung: the runner task ignored its cancellation"


async def test_kernel_modes_refuse_the_host_namespace() -> None:
    """No --netns and no Node annotation: a kernel mode must not fall back to the host's rules."""
    for mode in ("iptables", "nftables"):
        proxy = ProxyServer(ProxyConfig(mode=mode, node_name="node1"), source=StaticSource())
        with pytest.raises(ProxyConfigError, match="never programs the host"):
            await proxy.start()
        assert proxy.backend is None


async def test_userspace_mode_never_touches_the_host_routes() -> None:
    """The Node can arrive (through the informer) before start() resolves it; in userspace mode that
    must not schedule routes, which would land in the host's own routing table."""
    node = {"metadata": {"name": "node1", "labels": {}},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}}
    proxy = ProxyServer(ProxyConfig(mode="userspace", node_name="node1", min_sync_period=0.0),
                        source=StaticSource(node=node))
    proxy._on_change("node", node)
    assert proxy.planner.routes is False
    await proxy.start()
    try:
        assert proxy._routes == [] and proxy.planner.routes is False
    finally:
        await proxy.stop()


async def test_sync_runner_bursts_two_then_keeps_the_minimum_interval() -> None:
    """kube-proxy's BoundedFrequencyRunner: two syncs in quick succession both run at once, a third
    waits for the bucket to refill (one per min_interval)."""
    starts: list[float] = []
    ran = asyncio.Event()

    async def fn() -> None:
        starts.append(time.monotonic())
        ran.set()

    r = SyncRunner(fn, 0.5, 3600.0, 30.0)
    r.start()
    try:
        for _ in range(3):
            ran.clear()
            r.request()
            await asyncio.wait_for(ran.wait(), 2.0)
        assert starts[1] - starts[0] < 0.2, starts
        assert 0.4 <= starts[2] - starts[1] < 1.0, starts
    finally:
        await r.stop()
