"""``ProxyServer``: the service proxy component (userspace, iptables or nftables mode).

Feeds a snapshot (informers or a static source) through :mod:`model`, hands the desired
state to a data plane (kernel backend in a network namespace, or the userspace proxy),
and serves kube-proxy's ``/healthz`` + ``/livez`` JSON, ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import socket
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from servicenet.api import wellknown as wk
from servicenet.api.views import NodeView, annotations_of, labels_of, name_of, ns_of
from servicenet.client import ApiClient
from servicenet.common import log
from servicenet.common.component import bounded
from servicenet.common.health import HealthServer
from servicenet.common.netns import socket_in_netns
from servicenet.common.runner import main_args, run_until_signal
from servicenet.proxy import conntrack, model
from servicenet.proxy.health import HealthCheckService, ProxierHealth, ServiceHealthServers, node_eligible
from servicenet.proxy.lb_allocator import LBAllocator
from servicenet.proxy.metrics import ProxyMetrics
from servicenet.proxy.planner import (
    NodeChanged,
    RoutesAdded,
    ServiceChanged,
    SliceChanged,
    SyncDone,
    SyncFailed,
    SyncPlanner,
)
from servicenet.proxy.render_iptables import IptablesConfig
from servicenet.proxy.render_nftables import NftConfig
from servicenet.proxy.source import InformerSource, SnapshotSource, StaticSource, slice_owner
from servicenet.proxy.sync import Backend, IptablesBackend, NftablesBackend, SyncRunner, delete_flows, run_cmd
from servicenet.proxy.userspace import UserspaceProxy

_log = log.get("proxy")
NETNS_ANNOTATION = wk.NETNS_ANNOTATION
MODES = ("userspace", "iptables", "nftables")
LB_POOLS = {"netns": "10.255.255.0/24", "loopback": "127.98.0.0/24"}  # LoadBalancer IPs, per address plan
UNREACH_BIT = 1 << 3  # ICMP type 3 (destination unreachable) in net.ipv4.icmp_ratemask


class ProxyConfigError(Exception):
    """The proxy cannot start with this configuration."""


@dataclass
class ProxyConfig:
    mode: str = "userspace"
    node_name: str = "node-1"
    node_ips: tuple[str, ...] | None = None  # None: the Node's InternalIPs (127.0.0.1 in userspace mode)
    netns: str | None = None  # kernel modes; None: the Node annotation servicenet.dev/netns
    cluster_cidr: str | None = None
    service_cidrs: tuple[str, ...] = ()
    min_sync_period: float = 1.0
    sync_period: float = 30.0  # retry interval after failure; healthz timeout is twice this
    full_sync_period: float = 3600.0
    health_host: str = "127.0.0.1"
    health_port: int = 0
    userspace_balance: str = "rr"
    userspace_copy: str = "auto"
    udp_idle_timeout: float = 1.0
    lb_pool: str | None = None  # run the LoadBalancer IP allocator on this CIDR
    extra: dict[str, Any] = field(default_factory=dict)


class ProxyServer:
    name = "proxy"

    def __init__(self, config: ProxyConfig, *, client: Any = None, source: SnapshotSource | None = None,
                 factory: Any = None) -> None:
        if config.mode not in MODES:
            raise ValueError(f"unknown proxy mode {config.mode!r}")
        if source is None and client is None:
            raise ValueError("ProxyServer needs an ApiClient or a snapshot source")
        self.config = config
        self.client = client
        self.source: SnapshotSource = source or InformerSource(client, config.node_name, factory)
        self.metrics = ProxyMetrics()
        self.health = ProxierHealth(timeout=2 * config.sync_period)
        self.backend: Backend | None = None
        self.userspace: Any = None
        self.state: model.DesiredState | None = None
        self.netns: str | None = config.netns
        self.node_ips: tuple[str, ...] = config.node_ips or ()
        self.hc: ServiceHealthServers | None = None
        self.lb: Any = None
        self._routes: list[str] = []  # destinations we added a route for (removed on stop)
        self._old_ratemask: int | None = None
        self._node_labels: dict[str, str] | None = None  # None until the Node is first seen
        self.zone = ""
        self.runner = SyncRunner(self._sync, config.min_sync_period, config.full_sync_period, config.sync_period)
        # what the next sync does (full or partial, which services, routes): see planner.py
        self.planner = SyncPlanner(config.full_sync_period, kernel=config.mode != "userspace")
        self._parsed = model.ParseCache(config.node_name)  # objects parsed by earlier syncs
        self._pending_triggers: list[float] = []
        self._pending_svc = 0
        self._pending_eps = 0
        self._ports_by_svc: dict[tuple[str, str], set[model.ServicePortName]] = {}
        self._http: web.AppRunner | None = None
        self.health_url = ""
        self.synced = asyncio.Event()

    # -- events -----------------------------------------------------------------------------------
    def _on_change(self, kind: str, obj: dict[str, Any]) -> None:
        now = time.time()
        self.health.queued(now)
        self.metrics.last_queued.set(now)
        if kind == "service":
            self.planner.event(ServiceChanged(ns_of(obj), name_of(obj)))
            self._pending_svc += 1
            self.metrics.service_changes_total.inc()
        elif kind == "slice":
            self.planner.event(SliceChanged(ns_of(obj), slice_owner(obj)))
            self._pending_eps += 1
            self.metrics.endpoint_changes_total.inc()
            trig = annotations_of(obj).get(wk.TRIGGER_TIME_ANNOTATION)
            if trig:
                try:
                    self._pending_triggers.append(datetime.fromisoformat(trig.replace("Z", "+00:00")).timestamp())
                except ValueError:
                    pass
        elif kind == "node":
            self.health.node_eligible = node_eligible(obj)
            # the Node (or its addresses) arrived after start: NodePorts (and routes) need them
            learned = not self.node_ips and self._resolve_ips(obj)
            labels = labels_of(obj)
            relabelled = labels != self._node_labels  # like upstream: only a label change forces a full sync
            if relabelled:
                self._node_labels = dict(labels)
                self.zone = labels.get(wk.ZONE_LABEL, "")
            self.planner.event(NodeChanged(labels_changed=relabelled, addresses_learned=learned))
        self.metrics.service_changes_pending.set(self._pending_svc)
        self.metrics.endpoint_changes_pending.set(self._pending_eps)
        self.runner.request()

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        self.source.add_listener(self._on_change)
        await self.source.start()
        node = self.source.node()
        self.health.node_eligible = node_eligible(node)
        self._resolve_node(node)
        cfg = self.config
        if cfg.mode != "userspace" and not self.netns:
            await self.source.stop()
            raise ProxyConfigError(
                f"{cfg.mode} mode needs the node's network namespace (--netns, or the Node annotation "
                f"{NETNS_ANNOTATION}); servicenet never programs the host's own namespace")
        if cfg.mode == "userspace":
            self.userspace = UserspaceProxy(mode=cfg.userspace_balance, copy=cfg.userspace_copy,
                                            udp_idle_timeout=cfg.udp_idle_timeout)
        elif cfg.mode == "iptables":
            self.backend = IptablesBackend(self.netns, IptablesConfig(cluster_cidr=cfg.cluster_cidr))
        else:
            self.backend = NftablesBackend(self.netns, NftConfig(cluster_cidr=cfg.cluster_cidr,
                                                                 service_cidrs=cfg.service_cidrs))
        self.hc = ServiceHealthServers(self.node_ips, lambda: self.health.healthy(time.time()),
                                       self._socket_factory())
        if self.backend is not None and self.netns is not None:
            await self._ensure_routes()
            await self._unthrottle_rejects()
        await self._start_http()
        if cfg.lb_pool and self.client is not None and isinstance(self.source, InformerSource):
            self.lb = LBAllocator(self.client, self.source.svc_inf, cfg.lb_pool)
            self.lb.start()
        self.runner.start()
        self.runner.request()
        try:
            await bounded(self.synced.wait(), 30)
        except TimeoutError:
            _log.warning("first sync did not finish within 30s")

    def _resolve_node(self, node: dict[str, Any] | None) -> None:
        if self.netns is None and self.config.mode != "userspace":
            self.netns = annotations_of(node).get(NETNS_ANNOTATION)
        if not self.node_ips:
            self._resolve_ips(node)
        if not self.node_ips and self.config.mode == "userspace":
            self.node_ips = ("127.0.0.1",)
        self._node_labels = dict(labels_of(node))
        self.zone = self._node_labels.get(wk.ZONE_LABEL, "")

    def _resolve_ips(self, node: dict[str, Any] | None) -> bool:
        """Take the node addresses from the Node's InternalIPs; whether there were any."""
        self.node_ips = NodeView.parse(node).addresses_of("InternalIP") if node else ()
        if self.node_ips and self.hc is not None:
            self.hc.addresses = self.node_ips
        return bool(self.node_ips)

    async def _ensure_routes(self) -> None:
        """Make the virtual ranges routable inside the node namespace (it has no default route), so
        locally generated traffic to ClusterIPs and LoadBalancer IPs reaches the NAT hooks."""
        if self.netns is None or self.backend is None:  # never the host's routing table
            self.planner.event(RoutesAdded())  # (nothing to add)
            return
        cidrs = [*self.config.service_cidrs, *([self.config.lb_pool] if self.config.lb_pool else [])]
        if not cidrs or not self.node_ips:
            return  # tried again once the Node's addresses are known
        self.planner.event(RoutesAdded())
        _, out, _ = await run_cmd(self.netns, ["ip", "-o", "addr", "show"], check=False)
        _, routes, _ = await run_cmd(self.netns, ["ip", "-o", "route", "show"], check=False)
        for argv in route_commands(out.decode(), routes.decode(), self.node_ips[0], cidrs):
            rc, _, err = await run_cmd(self.netns, argv, check=False)
            if rc == 0:
                self._routes.append(argv[3])
            else:
                _log.warning("cannot add route", route=" ".join(argv), error=err.decode().strip())

    async def _unthrottle_rejects(self) -> None:
        """Service ports without endpoints are rejected with ICMP port-unreachable; the kernel's
        per-destination ICMP rate limit (``icmp_ratemask`` bit 3, 1 per second by default) would
        drop most of those for forwarded (pod) traffic, turning an immediate refusal into a SYN
        retransmit. Only inside the node namespace, never the host's."""
        rc, out, _ = await run_cmd(self.netns, ["sysctl", "-n", "net.ipv4.icmp_ratemask"], check=False)
        if rc != 0 or not out.strip().isdigit():
            return
        mask = int(out)
        if mask & UNREACH_BIT:
            rc, _, err = await run_cmd(self.netns, ["sysctl", "-qw", f"net.ipv4.icmp_ratemask={mask & ~UNREACH_BIT}"],
                                       check=False)
            if rc == 0:
                self._old_ratemask = mask
            else:
                _log.warning("cannot set icmp_ratemask", error=err.decode().strip())

    def _socket_factory(self) -> Any:
        if self.netns is None:
            return None
        ns = self.netns
        return lambda addr: socket_in_netns(ns, socket.AF_INET, socket.SOCK_STREAM, bind=addr)

    async def _start_http(self) -> None:
        hs = HealthServer(self.config.health_host, self.config.health_port, registry=self.metrics.registry)
        hs.add_ready_check("synced", lambda: (self.synced.is_set(), "first sync pending"))
        app = web.Application()
        app.add_routes([web.get("/healthz", self._healthz), web.get("/livez", self._livez),
                        *[r for r in hs.routes() if r.path in ("/readyz", "/metrics")]])  # type: ignore[attr-defined]
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        site = web.TCPSite(self._http, self.config.health_host, self.config.health_port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.health_url = f"http://{self.config.health_host}:{port}"

    async def _healthz(self, _req: web.Request) -> web.Response:
        code, body = self.health.response(time.time())
        self.metrics.healthz_total.labels(str(code)).inc()
        return web.Response(status=code, text=body, content_type="application/json",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def _livez(self, _req: web.Request) -> web.Response:
        code, body = self.health.response(time.time(), livez=True)
        self.metrics.livez_total.labels(str(code)).inc()
        return web.Response(status=code, text=body, content_type="application/json",
                            headers={"X-Content-Type-Options": "nosniff"})

    async def stop(self) -> None:
        await self.runner.stop()
        if self.lb is not None:
            await self.lb.stop()
        if self.backend is not None:
            try:
                await self.backend.cleanup()
            except Exception:
                _log.exception("rule cleanup failed")
        for cidr in self._routes:
            await run_cmd(self.netns, ["ip", "route", "del", cidr], check=False)
        self._routes = []
        if self._old_ratemask is not None:
            await run_cmd(self.netns, ["sysctl", "-qw", f"net.ipv4.icmp_ratemask={self._old_ratemask}"], check=False)
            self._old_ratemask = None
        if self.userspace is not None:
            self.userspace.close()
        if self.hc is not None:
            await self.hc.close()
        if self._http is not None:
            await self._http.cleanup()
        await self.source.stop()

    def describe(self) -> dict[str, str]:
        out = {"mode": self.config.mode, "health": self.health_url}
        if self.netns:
            out["netns"] = self.netns
        if self.userspace is not None:
            out["listeners"] = str(len(self.userspace.listeners))
        return out

    # -- the sync ---------------------------------------------------------------------------------
    def _recompute(self, prev: model.DesiredState, dirty: Iterable[tuple[str, str]]
                   ) -> tuple[model.DesiredState, set[model.ServicePortName]]:
        """The desired state with only the ``dirty`` services recomputed (pure given the source)."""
        services = dict(prev.services)
        changed: set[model.ServicePortName] = set()
        for key in dirty:
            old_ports = self._ports_by_svc.pop(key, set())
            for n in old_ports:
                services.pop(n, None)
            svc = self.source.service(*key)
            new: dict[model.ServicePortName, model.ServiceState] = {}
            if svc is not None:
                new = dict(model.compute([svc], self.source.slices_for(*key), self.config.node_name, self.node_ips,
                                         zone=self.zone, cache=self._parsed, full=False).services)
            services.update(new)
            if new:
                self._ports_by_svc[key] = set(new)
            changed.update(n for n in old_ports | set(new) if prev.services.get(n) != new.get(n))
        state = model.DesiredState(node_name=self.config.node_name, node_ips=tuple(self.node_ips),
                                   services=services)
        return state, changed

    async def _sync(self) -> None:
        t0 = time.perf_counter()
        now = time.time()
        triggers, self._pending_triggers = self._pending_triggers, []
        self._pending_svc = self._pending_eps = 0
        plan = self.planner.next(time.monotonic())
        prev = self.state
        full = plan.full or prev is None  # (the planner makes the first sync full)
        try:
            if full:
                state = model.compute(self.source.services(), self.source.slices(), self.config.node_name,
                                      self.node_ips, zone=self.zone, cache=self._parsed)
                self._ports_by_svc = {}
                for n in state.services:
                    self._ports_by_svc.setdefault((n.namespace, n.name), set()).add(n)
                changed = None
            else:
                assert prev is not None
                state, changed = self._recompute(prev, plan.services)
            if plan.routes:
                await self._ensure_routes()
            if self.backend is not None:
                if changed is None or changed:  # (a partial sync that changed no port programs nothing)
                    await self.backend.apply(state, changed)
            elif self.userspace is not None:
                self.userspace.apply(state)
                self.metrics.userspace_listeners.set(len(self.userspace.listeners))
                self.metrics.userspace_connections.set(len(self.userspace.conns))
        except Exception as e:
            self.planner.event(SyncFailed(plan))
            self._pending_triggers = triggers + self._pending_triggers
            if isinstance(e, model.ModelError):
                raise
            if self.config.mode == "iptables":
                (self.metrics.iptables_restore_failures if full
                 else self.metrics.iptables_partial_restore_failures).inc()
            elif self.config.mode == "nftables":
                self.metrics.nftables_sync_failures.inc()
            raise
        self.planner.event(SyncDone(plan, time.monotonic()))
        self.state = state
        elapsed = time.perf_counter() - t0
        self.metrics.sync_duration.observe(elapsed)
        (self.metrics.full_sync_duration if full else self.metrics.partial_sync_duration).observe(elapsed)
        done = time.time()
        self.metrics.last_timestamp.set(done)
        for trig in triggers:
            if trig <= now:
                self.metrics.network_programming.observe(done - trig)
        self.health.updated(done)
        self.metrics.service_changes_pending.set(self._pending_svc)
        self.metrics.endpoint_changes_pending.set(self._pending_eps)
        self._no_local_metrics(state)
        if self.hc is not None:
            await self.hc.sync(HealthCheckService(n.namespace, n.name, st.port.health_check_node_port,
                                                  sum(1 for e in st.local if e.ready or e.serving))
                               for n, st in state.services.items() if st.port.health_check_node_port)
        if self.backend is not None:
            flows = conntrack.stale_udp_flows(prev, state)
            if flows:
                self.metrics.conntrack_deleted.inc(await delete_flows(self.netns, flows))
        self.synced.set()

    def _no_local_metrics(self, state: model.DesiredState) -> None:
        internal = external = 0
        for st in state.services.values():
            if not st.reachable:
                continue
            if st.port.internal_policy_local and not st.local:
                internal += 1
            if st.port.external_policy_local and not st.local:
                external += 1
        self.metrics.no_local_endpoints.labels("internal").set(internal)
        self.metrics.no_local_endpoints.labels("external").set(external)


def route_commands(addr_show: str, route_show: str, node_ip: str, cidrs: list[str]) -> list[list[str]]:
    """``ip route add`` argv for each of ``cidrs`` not yet routed, via the device that holds
    ``node_ip`` (parsed from ``ip -o addr show`` / ``ip -o route show`` output)."""
    dev = ""
    for line in addr_show.splitlines():
        f = line.split()
        if len(f) > 3 and f[2] in ("inet", "inet6") and f[3].split("/")[0] == node_ip:
            dev = f[1]
            break
    if not dev:
        return []
    have = {line.split()[0] for line in route_show.splitlines() if line.split()}
    out = []
    for cidr in cidrs:
        net = str(ipaddress.ip_network(cidr, strict=False))
        if net in have or (net.endswith("/32") and net[:-3] in have):
            continue
        out.append(["ip", "route", "add", net, "dev", dev, "src", node_ip])
    return out


# -- entry points ---------------------------------------------------------------------------------

def build_for_up(*, client: Any, args: Any, network: str, api: Any = None) -> ProxyServer:
    """Used by ``servicenet up``."""
    mode = getattr(args, "proxy_mode", "auto")
    if mode in (None, "auto"):
        mode = "nftables" if network == "netns" else "userspace"
    kind = "netns" if network == "netns" else "loopback"  # (the virtual mode proxies on loopback too)
    plan = wk.address_plan(kind)
    cfg = ProxyConfig(
        mode=mode, node_name=getattr(args, "node_name", "node-1"), cluster_cidr=plan.cluster_cidr,
        service_cidrs=tuple(getattr(args, "service_cidr", None) or plan.service_cidrs), lb_pool=LB_POOLS[kind])
    return ProxyServer(cfg, client=client)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="servicenet proxy", description="service proxy (kube-proxy)")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--mode", choices=MODES, default="userspace")
    p.add_argument("--node-name", default="node-1")
    p.add_argument("--netns", default=None, help="network namespace for kernel modes (default: Node annotation)")
    p.add_argument("--node-ip", action="append", default=None)
    p.add_argument("--cluster-cidr", default=None)
    p.add_argument("--service-cidr", action="append", default=None)
    p.add_argument("--min-sync-period", type=float, default=1.0)
    p.add_argument("--sync-period", type=float, default=30.0)
    p.add_argument("--full-sync-period", type=float, default=3600.0)
    p.add_argument("--health-listen", default="127.0.0.1:10256")
    p.add_argument("--balance", choices=["rr", "random"], default="rr")
    p.add_argument("--lb-pool", default=None, help="allocate LoadBalancer IPs from this CIDR")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: list[str]) -> int:
    args, (host, port) = main_args(_parser(), argv)
    cfg = ProxyConfig(mode=args.mode, node_name=args.node_name, netns=args.netns,
                      node_ips=tuple(args.node_ip) if args.node_ip else None, cluster_cidr=args.cluster_cidr,
                      service_cidrs=tuple(args.service_cidr or ()), min_sync_period=args.min_sync_period,
                      sync_period=args.sync_period, full_sync_period=args.full_sync_period,
                      health_host=host, health_port=port, userspace_balance=args.balance,
                      lb_pool=args.lb_pool)

    async def run() -> None:
        client = ApiClient.from_kubeconfig(args.kubeconfig)
        proxy = ProxyServer(cfg, client=client)
        await run_until_signal(proxy, closing=[client.close], started=lambda: print(
            f"servicenet proxy ({cfg.mode}) running: {proxy.describe()}", flush=True))

    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(run())
        else:
            uvloop.run(run())
    except ProxyConfigError as e:
        print(f"servicenet proxy: {e}", file=sys.stderr)
        return 2
    return 0


__all__ = ["ProxyConfig", "ProxyServer", "StaticSource", "build_for_up", "main"]
