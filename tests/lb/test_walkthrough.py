"""Acceptance: the headless-Service walkthrough through servicenet.lb, from outside the cluster
(kubeconfig, API source; cluster DNS source) against a real in-process cluster in loopback mode."""

from __future__ import annotations

import time
from pathlib import Path

from e2e.cluster import Cluster, running_cluster, until

from servicenet.dns.model import DnsConfig
from servicenet.dns.server import DnsServer
from servicenet.lb import ApiSource, Balancer, DnsSource, RoleRouter

from .walk import NS, LbClock, SliceClock, flags_dir, manifest, spread, within


async def _web(c: Cluster, flags: Path) -> Path:
    await c.kubectl("apply", "-f", "-", input=manifest(flags).encode())
    return flags


async def _follow(c: Cluster, clock: SliceClock, lb: Balancer, lbclock: LbClock, flags: Path,
                  limit: float) -> dict[str, float]:
    """Scale to 5, then make web-1 NotReady; return how long the client took after the slices."""
    out: dict[str, float] = {}
    await c.kubectl("scale", "sts", "web", "-n", NS, "--replicas=5")
    await until(lambda: len(lb.eligible) == 5, 60, what="five endpoints in the balancer")
    t_api = clock.first(lambda s: len(s) == 5)
    t_lb = lbclock.first(lambda s: len(s) == 5)
    assert t_api is not None and t_lb is not None
    out["scale_up"] = t_lb - t_api
    web1 = (await c.client.get("v1", "pods", NS, "web-1"))["status"]["podIP"]
    (flags / "web-1").write_text("not ready")
    await until(lambda: len(lb.eligible) == 4, 30, what="web-1 out of the balancer")
    assert web1 not in {b.ep.address for b in lb.eligible}
    t_api = clock.first(lambda s: len(s) == 4 and web1 not in s)
    t_lb = lbclock.first(lambda s: len(s) == 4 and web1 not in s)
    assert t_api is not None and t_lb is not None
    out["not_ready"] = t_lb - t_api
    for what, took in out.items():
        assert took < limit, f"{what}: the client followed {took * 1000:.0f} ms after the EndpointSlice"
    return out


async def test_outside_client_api_source(tmp_path: Path) -> None:
    with flags_dir() as fd:
        await _outside_api(tmp_path, fd)


async def _outside_api(tmp_path: Path, fd: Path) -> None:
    async with running_cluster(tmp_path, "loopback") as c:
        flags = await _web(c, fd)
        watcher = c.api.new_client()
        async with SliceClock(watcher, "web-headless").running() as clock:
            await until(lambda: len(clock.ready()) == 3, 60, what="3 ready endpoints")
            lb = Balancer("round_robin", name="web")
            lbclock = LbClock(lb)
            async with ApiSource("web-headless", NS, port="http", kubeconfig=str(c.api.kubeconfig)) as src:
                src.subscribe(lb)
                await until(lambda: len(lb.eligible) == 3, 10, what="the library's set")
                counts = await spread(lb, 3000)
                assert within(counts, 3000, 3), counts
                assert set(counts) == {"web-0", "web-1", "web-2"}
                took = await _follow(c, clock, lb, lbclock, flags, limit=0.100)
                print("api source followed:", {k: f"{v * 1000:.1f} ms" for k, v in took.items()})
        await watcher.close()


async def test_outside_client_dns_source(tmp_path: Path) -> None:
    with flags_dir() as fd:
        await _outside_dns(tmp_path, fd)


async def _outside_dns(tmp_path: Path, fd: Path) -> None:
    async with running_cluster(tmp_path, "loopback") as c:
        dns_client = c.api.new_client()
        dns = DnsServer(dns_client, config=DnsConfig(), listen=[("127.0.0.1", 0)])
        await dns.start()
        watcher = c.api.new_client()
        try:
            flags = await _web(c, fd)
            async with SliceClock(watcher, "web-headless").running() as clock:
                await until(lambda: len(clock.ready()) == 3, 60, what="3 ready endpoints")
                ttl = DnsConfig().ttl
                lb = Balancer("round_robin", name="web")
                lbclock = LbClock(lb)
                src = DnsSource(f"web-headless.{NS}.svc.cluster.local", 9376, search=False,
                                nameservers=[(dns.bound[0][1], dns.bound[0][2])])
                src.subscribe(lb)
                async with src:
                    await until(lambda: len(lb.eligible) == 3, ttl + 2, what="the library's set")
                    assert src.ttl == ttl
                    t0 = time.monotonic()
                    counts = await spread(lb, 3000)
                    assert within(counts, 3000, 3), counts
                    assert time.monotonic() - t0 < 60
                    # SRV names the pods: the read/write role selector works over DNS too
                    router = RoleRouter()
                    srv = DnsSource(f"web-headless.{NS}.svc.cluster.local", srv="http", search=False,
                                    nameservers=[(dns.bound[0][1], dns.bound[0][2])])
                    srv.subscribe(router)
                    async with srv:
                        assert {(e.hostname, e.port) for e in srv.endpoints} == {
                            ("web-0", 9376), ("web-1", 9376), ("web-2", 9376)}
                    session = router.session()
                    assert session.for_write().pick().ep.hostname == "web-0"
                    assert session.for_read() is router.primary  # it just wrote
                    assert {router.replicas.pick().ep.hostname for _ in range(4)} == {"web-1", "web-2"}
                    took = await _follow(c, clock, lb, lbclock, flags, limit=ttl + 1.0)
                    print("dns source followed:", {k: f"{v * 1000:.0f} ms" for k, v in took.items()})
        finally:
            await watcher.close()
            await dns.stop()
            await dns_client.close()
