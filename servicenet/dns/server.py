"""The cluster DNS server: informers → RecordIndex → Responder on UDP/TCP sockets."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import multiprocessing
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from typing import Any

import prometheus_client
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from servicenet.api import wellknown as wk
from servicenet.api.views import meta as meta_of
from servicenet.client import ApiClient, InformerFactory, metadata_stub
from servicenet.common import log as slog
from servicenet.common.health import HealthServer
from servicenet.common.runner import install_uvloop, run_until_signal

from .forwarder import Forwarder, parse_upstream, resolv_conf_nameservers
from .model import DnsConfig
from .records import RecordIndex
from .responder import Forward, Responder
from .transport import Latency, make_socket, serve
from .worker import worker_main

log = slog.get("dns")
KINDS: tuple[tuple[str, str], ...] = (
    ("v1", "namespaces"), ("v1", "services"), ("discovery.k8s.io/v1", "endpointslices"))
QTYPES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA", 33: "SRV",
          65: "HTTPS", 252: "AXFR", 255: "ANY", -1: "none"}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED", 16: "BADVERS"}
PROG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
Listen = tuple[str, int]


def parse_listen(text: str) -> Listen:
    host, port = parse_upstream(text)
    return host, port


class _Collector:
    """Exports the plain counters kept by the serving loops (this process and workers)."""

    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        s = self.server
        req = CounterMetricFamily("servicenet_dns_requests", "DNS requests answered", labels=["qtype", "rcode"])
        totals: dict[tuple[int, int], int] = {}
        misses = s.responder.misses if s.responder else 0
        lat_counts = list(s.latency.counts)
        lat_sum, lat_n = s.latency.total, s.latency.n
        if s.responder:
            for k, v in s.responder.stats.items():
                totals[k] = totals.get(k, 0) + v[0]
        for w in s._worker_stats.values():
            for k, v in w[0].items():
                totals[k] = totals.get(k, 0) + v
            misses += w[1]
            lat_counts = [a + b for a, b in zip(lat_counts, w[2], strict=True)]
            lat_sum += w[3]
            lat_n += w[4]
        for (qt, rc), v in sorted(totals.items()):
            req.add_metric([QTYPES.get(qt, str(qt)), RCODES.get(rc, str(rc))], v)
        yield req
        total = sum(totals.values())
        yield CounterMetricFamily("servicenet_dns_answer_cache_misses", "answers rendered from the index",
                                  value=misses)
        yield CounterMetricFamily("servicenet_dns_answer_cache_hits", "answers served from wire templates",
                                  value=max(0, total - misses))
        if s.forwarder is not None:
            yield CounterMetricFamily("servicenet_dns_forward_cache_hits", "forwarder cache hits",
                                      value=s.forwarder.hits)
            yield CounterMetricFamily("servicenet_dns_forward_cache_misses", "forwarder cache misses",
                                      value=s.forwarder.misses)
        buckets, acc = [], 0
        for bound, c in zip((*Latency.BOUNDS, float("inf")), lat_counts, strict=True):
            acc += c
            buckets.append((str(bound) if bound != float("inf") else "+Inf", acc))
        yield HistogramMetricFamily("servicenet_dns_request_duration_seconds",
                                    "server-side time per query (UDP sampled 1/64, this process + workers)",
                                    buckets=buckets, sum_value=lat_sum)


class DnsServer:
    """Cluster DNS as a servicenet Component.

    Give it an ``ApiClient`` (informers are built from ``servicenet.client``), or an informer
    factory with the same interface (``informers=``), or an already filled ``index=``.
    """

    name = "dns"

    def __init__(self, client: Any = None, *, config: DnsConfig | None = None,
                 listen: Sequence[Listen] = (("127.0.0.1", 1053),), index: RecordIndex | None = None,
                 informers: Any = None, upstreams: Sequence[Listen] | None = None, workers: int = 1,
                 health_listen: Listen | None = None, netns: str | None = None, netns_from_node: bool = False,
                 dns_ip: str | None = None, registry: prometheus_client.CollectorRegistry | None = None,
                 tcp_idle_timeout: float = 10.0, share_sockets: bool = True) -> None:
        self.client = client
        self.config = config or (index.config if index else DnsConfig())
        self.listen = list(listen)
        self.index = index
        self.informers = informers
        self.upstreams = list(upstreams) if upstreams is not None else resolv_conf_nameservers()
        self.workers = max(1, workers)
        self.netns = netns
        self.netns_from_node = netns_from_node
        self.dns_ip = dns_ip
        self.idle = tcp_idle_timeout
        self.share_sockets = share_sockets  # workers read the parent's sockets (else SO_REUSEPORT group)
        self._socks: list[tuple[socket.socket, socket.socket]] = []
        self.registry = registry or prometheus_client.CollectorRegistry()
        self.health = HealthServer(*(health_listen or ("127.0.0.1", 0)), registry=self.registry)
        self._health_enabled = health_listen is not None
        self.responder: Responder | None = None
        self.forwarder: Forwarder | None = None
        self.latency = Latency()
        self.bound: list[tuple[str | None, str, int]] = []
        self._servers: list[tuple[asyncio.BaseTransport, asyncio.AbstractServer]] = []
        self._children: list[tuple[multiprocessing.process.BaseProcess, Any]] = []
        self._worker_stats: dict[int, tuple[dict[tuple[int, int], int], int, list[int], float, int]] = {}
        self._own_factory = False
        self._sync_task: asyncio.Task[None] | None = None
        self.prog = prometheus_client.Histogram(
            "servicenet_dns_programming_latency_seconds",
            "API change (slice trigger time, else watch event arrival) to the new answer being served",
            buckets=PROG_BUCKETS, registry=self.registry)
        self.registry.register(_Collector(self))  # type: ignore[arg-type]

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.index is None:
            self.index = RecordIndex(self.config)
        index = self.index
        self.responder = Responder(index)
        if self.client is not None and self.informers is None:
            # the index holds everything DNS needs: the informers cache only stubs (memory)
            self.informers = InformerFactory(self.client, cache_transform=metadata_stub)
            self._own_factory = True
        if self.informers is not None:
            kinds = list(KINDS) + ([("v1", "pods")] if self.config.pods == "verified" else [])
            for api, plural in kinds:
                self.informers.informer(api, plural).add_handler(self._handler(plural))
            await self.informers.start()
        await self._resolve_netns()
        listens: list[tuple[str | None, str, int]] = [(None, h, p) for h, p in self.listen]
        if self.netns:
            listens.append((self.netns, self.dns_ip or wk.address_plan("netns").dns_ip, 53))
        socks = []
        for netns, host, port in listens:
            if netns is not None:
                _ensure_local_address(netns, host)
            udp, tcp = self._bind_pair(netns, host, port)
            self.bound.append((netns, host, udp.getsockname()[1]))
            socks.append((udp, tcp))
        self._socks = socks
        if self.config.forward:  # built after binding so loop detection knows our real ports
            self.forwarder = Forwarder(self.upstreams, [(h, p) for n, h, p in self.bound if n is None])
            if self.forwarder.dropped:
                log.warning("not forwarding to ourselves", upstreams=self.forwarder.dropped)
        for udp, tcp in socks:
            self._servers.append(await serve(loop, self.responder, self._forward, self.latency, udp, tcp,
                                             self.idle))
        if self.informers is not None:
            self._sync_task = asyncio.ensure_future(self._wait_synced())
        if self.workers > 1:
            await self._spawn_workers()
        self.health.add_health_check("dns", lambda: (bool(self._servers), "listening"))
        self.health.add_ready_check("informers", lambda: (index.synced, "informers synced"))
        if self._health_enabled:
            await self.health.start()
        if self.forwarder is not None and self.forwarder.upstreams:
            looped = await self.forwarder.probe()
            if looped:
                log.warning("forwarding loop detected; upstream dropped", upstreams=looped)
        log.info("serving", listen=[f"{h}:{p}" for _, h, p in self.bound], workers=self.workers)

    def _bind_pair(self, netns: str | None, host: str, port: int) -> tuple[socket.socket, socket.socket]:
        for _ in range(20):  # port 0: pick a UDP port, then take the same TCP port
            udp = make_socket(host, port, socket.SOCK_DGRAM, netns)
            try:
                return udp, make_socket(host, udp.getsockname()[1], socket.SOCK_STREAM, netns)
            except OSError:
                udp.close()
                if port != 0:
                    raise
        raise OSError("no free port pair")

    async def _resolve_netns(self) -> None:
        if self.netns or not self.netns_from_node or self.client is None:
            return
        deadline = time.monotonic() + 5.0  # the node agent may still be writing its annotation
        while True:
            try:
                nodes = await self.client.list("v1", "nodes")
            except Exception as exc:  # no nodes API yet: serve on the host only
                log.warning("cannot read nodes", error=repr(exc))
                return
            for node in nodes.get("items", []):
                name = (meta_of(node).get("annotations") or {}).get("servicenet.dev/netns")
                if name:
                    self.netns = name
                    return
            if time.monotonic() > deadline:
                log.warning("no node announces a network namespace; serving on the host only")
                return
            await asyncio.sleep(0.2)

    async def _wait_synced(self) -> None:
        await self.informers.wait_synced()
        assert self.index is not None
        self.index.set_synced(True)
        self._broadcast(("synced", True))
        if self.dns_ip is None:
            svc = self.index.services.get((wk.KUBE_DNS_NAMESPACE, wk.KUBE_DNS_SERVICE))
            if svc and svc.cluster_ips:
                self.dns_ip = svc.cluster_ips[0]
        log.info("informers synced", services=len(self.index.services), slices=len(self.index.slices))

    async def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not (self.index and self.index.synced):
            if time.monotonic() > deadline:
                raise TimeoutError("dns informers not synced")
            await asyncio.sleep(0.01)

    def _handler(self, kind: str) -> Any:
        def on_event(event_type: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
            t0 = time.time()
            assert self.index is not None
            try:
                self.index.apply(kind, event_type, obj)
            except Exception:
                log.exception("bad object", kind=kind)
                return
            self._broadcast(("ev", kind, event_type, obj))
            if kind == "endpointslices":
                trig = (meta_of(obj).get("annotations") or {}).get(
                    "endpoints.kubernetes.io/last-change-trigger-time")
                start = _parse_time(trig) if trig else None
                self.prog.observe(max(0.0, time.time() - (start if start and start <= t0 else t0)))
        return on_event

    async def _forward(self, f: Forward) -> bytes | None:
        assert self.responder is not None
        if self.forwarder is None:
            return self.responder.error(f.query, 5)
        return await self.forwarder.forward(f, self.responder)

    # ------------------------------------------------------------ workers
    def _snapshot(self) -> list[tuple[str, dict[str, Any]]]:
        if self.informers is not None and not getattr(self, "_own_factory", False):
            out = []
            for api, plural in list(KINDS) + [("v1", "pods")]:
                if plural == "pods" and self.config.pods != "verified":
                    continue
                out += [(plural, o) for o in self.informers.informer(api, plural).list()]
            return out
        return _index_snapshot(self.index)

    async def _spawn_workers(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        assert self.index is not None
        snap = self._snapshot()
        ups = self.forwarder.upstreams if self.forwarder else []
        for i in range(self.workers - 1):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_main, daemon=True, name=f"servicenet-dns-{i + 1}",
                            args=(self.config, self.bound, self._socks if self.share_sockets else None, snap,
                                  self.index.synced, child, ups, self.idle))
            p.start()
            child.close()
            self._children.append((p, parent))
            loop.add_reader(parent.fileno(), self._from_child, i, parent)
        deadline = time.monotonic() + 30
        while len(self._worker_stats) < len(self._children) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _from_child(self, i: int, conn: Any) -> None:
        try:
            while conn.poll():
                msg = conn.recv()
                if msg[0] == "stats":
                    self._worker_stats[i] = (msg[1], msg[2], msg[3], msg[4], msg[5])
                elif msg[0] == "ready":
                    self._worker_stats.setdefault(i, ({}, 0, [0] * (len(Latency.BOUNDS) + 1), 0.0, 0))
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(conn.fileno())

    def _broadcast(self, msg: tuple[Any, ...]) -> None:
        for _, conn in self._children:
            try:
                conn.send(msg)
            except OSError:
                pass

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        self._broadcast(("stop",))
        for p, conn in self._children:
            await loop.run_in_executor(None, p.join, 5)
            if p.is_alive():
                p.terminate()
                p.join(2)
            try:
                loop.remove_reader(conn.fileno())
            except (OSError, ValueError):
                pass
            conn.close()
        self._children.clear()
        if self._sync_task is not None:
            self._sync_task.cancel()
        for udp, tcp in self._servers:
            udp.close()
            tcp.close()
        self._servers.clear()
        if self._own_factory and self.informers is not None:
            await self.informers.stop()
        await self.health.stop()

    def describe(self) -> dict[str, str]:
        out = {"dns": ",".join(f"{h}:{p}" + (f" (netns {n})" if n else "") for n, h, p in self.bound),
               "zone": self.config.zone, "workers": str(self.workers)}
        if self._health_enabled:
            out["health"] = self.health.url
        return out


def _index_snapshot(index: RecordIndex | None) -> list[tuple[str, dict[str, Any]]]:
    """Rebuild Kubernetes-shaped dicts from an index (for workers of an index-only server)."""
    if index is None:
        return []
    out: list[tuple[str, dict[str, Any]]] = [("namespaces", {"metadata": {"name": n}}) for n in index.namespaces]
    for svc in index.services.values():
        spec: dict[str, Any] = {"ports": [{"name": p.name, "protocol": p.protocol.upper(), "port": p.port}
                                          for p in svc.ports]}
        if svc.kind == "ExternalName":
            spec.update(type="ExternalName", externalName=svc.external_name)
        elif svc.kind == "Headless":
            spec["clusterIP"] = "None"
        else:
            spec["clusterIPs"] = list(svc.cluster_ips)
        out.append(("services", {"metadata": {"name": svc.name, "namespace": svc.namespace}, "spec": spec}))
    for sl in index.slices.values():
        out.append(("endpointslices", {
            "metadata": {"name": sl.name, "namespace": sl.namespace,
                         "labels": {wk.SERVICE_NAME_LABEL: sl.service}},
            "endpoints": [{"addresses": list(ep.addresses), "hostname": ep.hostname,
                           "conditions": {"ready": ep.ready},
                           "targetRef": {"kind": "Pod", "name": ep.pod_name} if ep.pod_name else None}
                          for ep in sl.endpoints],
            "ports": [{"name": p.name, "protocol": p.protocol.upper(), "port": p.port} for p in sl.ports]}))
    for pod in index.pods.values():
        out.append(("pods", {"metadata": {"name": pod.name, "namespace": pod.namespace},
                             "status": {"podIPs": [{"ip": ip} for ip in pod.ips]}}))
    return out


def _parse_time(text: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _ensure_local_address(netns: str, ip: str) -> None:
    """Make ``ip`` (the kube-dns ClusterIP) local inside the node namespace so the kernel delivers
    pods' queries to our socket; the service proxy's rules then leave that traffic alone."""
    plen = 128 if ipaddress.ip_address(ip).version == 6 else 32
    subprocess.run(["ip", "-n", netns, "addr", "replace", f"{ip}/{plen}", "dev", "lo"], check=True,
                   capture_output=True, timeout=10)


def build_for_up(*, client: Any, args: argparse.Namespace, network: str, api: Any = None) -> DnsServer:
    """The DNS component exactly as ``servicenet up`` runs it (``up`` publishes its Endpoints).

    In netns mode it also answers on the kube-dns ClusterIP inside the node namespace: the API
    server's (``api.services.dns_ip()``) when given, else the address plan's.
    """
    listen = [tuple(x) for x in (getattr(args, "dns_listen", None) or [("127.0.0.1", 1053)])]
    if network != "netns":
        return DnsServer(client, config=DnsConfig(pods="insecure"), listen=listen,  # type: ignore[arg-type]
                         health_listen=("127.0.0.1", 0))
    dns_ip = api.services.dns_ip() if api is not None else wk.address_plan(network).dns_ip
    return DnsServer(client, config=DnsConfig(pods="insecure"), listen=listen,  # type: ignore[arg-type]
                     health_listen=("127.0.0.1", 0), netns_from_node=True, dns_ip=dns_ip)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="servicenet dns", description="servicenet cluster DNS")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--dns-listen", action="append", default=None, help="HOST:PORT (repeatable)")
    p.add_argument("--zone", default="cluster.local")
    p.add_argument("--ttl", type=int, default=5)
    p.add_argument("--pods", choices=["disabled", "insecure", "verified"], default="disabled")
    p.add_argument("--endpoint-pod-names", action="store_true")
    p.add_argument("--ignore-empty-service", action="store_true")
    p.add_argument("--namespaces", default="", help="comma-separated exposed namespaces (default all)")
    p.add_argument("--axfr", action="store_true", help="allow zone transfers over TCP")
    p.add_argument("--no-forward", action="store_true")
    p.add_argument("--upstream", action="append", default=None, help="HOST[:PORT] (default /etc/resolv.conf)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--health-listen", default="127.0.0.1:9153")
    p.add_argument("--netns", default=None, help="node network namespace (default: Node annotation)")
    p.add_argument("--dns-ip", default=None, help="kube-dns ClusterIP to serve on port 53 in the netns")
    p.add_argument("--no-node-netns", action="store_true",
                   help="serve only on --dns-listen, never in a node namespace (the DNS running as a pod)")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    slog.setup(args.log_level)
    install_uvloop()

    config = DnsConfig(zone=args.zone, ttl=args.ttl, pods=args.pods, endpoint_pod_names=args.endpoint_pod_names,
                       ignore_empty_service=args.ignore_empty_service,
                       namespaces=frozenset(args.namespaces.split(",")) if args.namespaces else None,
                       forward=not args.no_forward, axfr=args.axfr)

    async def run() -> None:
        client = ApiClient.from_kubeconfig(args.kubeconfig)
        server = DnsServer(client, config=config,
                           listen=[parse_listen(x) for x in args.dns_listen or ["127.0.0.1:1053"]],
                           upstreams=[parse_upstream(u) for u in args.upstream] if args.upstream else None,
                           workers=args.workers, health_listen=parse_listen(args.health_listen),
                           netns=args.netns, netns_from_node=not args.no_node_netns, dns_ip=args.dns_ip)
        await run_until_signal(server, closing=[client.close])

    asyncio.run(run())
    return 0
