"""Endpoint sources behind one interface: the API (EndpointSlice watch), DNS, and a static list.

A source publishes the whole endpoint set (plus the Service's topology wish) to its subscribers,
usually :meth:`Balancer.update`. ``slice_endpoints`` and ``dns_endpoints`` are the pure halves.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from servicenet.api import wellknown as wk
from servicenet.api.views import EndpointView
from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of
from servicenet.client import ApiClient, InformerFactory
from servicenet.common import log
from servicenet.common.component import cancel_and_wait
from servicenet.lb.incluster import SA_DIR, InClusterClient, api_client
from servicenet.lb.model import Endpoint, Topology

Subscriber = Callable[[list[Endpoint], "Topology | None"], None]
PREFER_CLOSE = ("PreferClose", "PreferSameZone", "PreferSameNode")

_log = log.get("lb")


class Source:
    """Base: subscribers get ``(endpoints, topology)`` on every change; ``synced`` once known."""

    kind = "source"

    def __init__(self, topology: Topology = Topology()) -> None:
        self.topology = topology
        self.endpoints: list[Endpoint] = []
        self.updates = 0
        self.last_update = 0.0
        self._subs: list[Subscriber] = []
        self.synced = asyncio.Event()

    def subscribe(self, fn: Subscriber | Any) -> None:
        """``fn`` is a callback or anything with ``update(endpoints, topology)`` (a Balancer)."""
        cb = getattr(fn, "update", fn)
        self._subs.append(cb)
        if self.synced.is_set():
            cb(list(self.endpoints), self.topology)

    def _publish(self, eps: list[Endpoint], topology: Topology | None = None) -> None:
        if topology is not None:
            self.topology = topology
        changed = eps != self.endpoints or topology is not None
        self.endpoints = eps
        self.last_update = time.monotonic()
        if changed or not self.synced.is_set():
            self.updates += 1
            for cb in self._subs:
                cb(list(eps), self.topology)
        self.synced.set()

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        pass

    async def __aenter__(self) -> Source:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class StaticSource(Source):
    kind = "static"

    def __init__(self, endpoints: Iterable[Endpoint | str], topology: Topology = Topology()) -> None:
        super().__init__(topology)
        self._static = [e if isinstance(e, Endpoint) else parse_hostport(e) for e in endpoints]

    async def start(self) -> None:
        self._publish(list(self._static))

    def set(self, endpoints: Iterable[Endpoint]) -> None:
        self._publish(list(endpoints))


def parse_hostport(s: str) -> Endpoint:
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {s!r}")
    return Endpoint(host.strip("[]"), int(port))


# -- the API ------------------------------------------------------------------------------------------
def _slice_port(sl: Obj, want: int | str | None) -> int | None:
    ports = sl.get("ports") or []
    if want is None:
        return ports[0].get("port") if ports else None
    for p in ports:
        if isinstance(want, str) and not want.isdigit():
            if p.get("name") == want:
                return p.get("port")
        elif p.get("port") == int(want):
            return p.get("port")
    return None


def slice_endpoints(slices: Iterable[Obj], port: int | str | None = None,
                    labels: dict[str, dict[str, str]] | None = None) -> list[Endpoint]:
    """EndpointSlices -> endpoints on ``port`` (a name, a number, or the first port); deduplicated,
    preferring the ready copy when an address appears in two slices during a handover."""
    out: dict[str, Endpoint] = {}
    for sl in slices:
        if sl.get("addressType") not in (None, "IPv4", "IPv6"):
            continue
        p = _slice_port(sl, port)
        if p is None:
            continue
        for e in sl.get("endpoints") or []:
            v = EndpointView.parse(e)  # upstream's defaults: ready when unset, serving = ready
            pod = v.pod_name or ""
            lbls = tuple(sorted((labels or {}).get(pod, {}).items()))
            for addr in v.addresses:
                ep = Endpoint(addr, int(p), ready=v.ready, serving=v.serving, terminating=v.terminating,
                              zone=v.zone, node=v.node_name, hostname=v.hostname or "", pod=pod,
                              zone_hints=v.zone_hints, node_hints=v.node_hints, labels=lbls)
                prev = out.get(ep.key)
                if prev is None or (ep.ready and not prev.ready):
                    out[ep.key] = ep
    return sorted(out.values(), key=lambda e: e.key)


def service_topology(svc: Obj | None, base: Topology) -> Topology:
    spec = (svc or {}).get("spec") or {}
    ann = meta_of(svc).get("annotations") or {}
    prefer = spec.get("trafficDistribution") in PREFER_CLOSE or \
        ann.get("service.kubernetes.io/topology-mode", "").lower() == "auto"
    return Topology(zone=base.zone, node=base.node, prefer_close=prefer)


class ApiSource(Source):
    """Watches the Service's EndpointSlices (and the Service itself) through the shared informer."""

    kind = "api"

    def __init__(self, service: str, namespace: str | None = None, *, port: int | str | None = None,
                 client: ApiClient | None = None, kubeconfig: str | None = None, context: str | None = None,
                 in_cluster: bool | None = None, sa_dir: Path = SA_DIR, pod_labels: bool = False,
                 topology: Topology = Topology(), sync_timeout: float = 30.0) -> None:
        super().__init__(topology)
        self.service = service
        self.port = port
        self._own_client = client is None
        if client is None:
            client = api_client(kubeconfig, context, in_cluster, sa_dir)
        self.client = client
        self.token_check = 60.0  # seconds between looks at a rotated ServiceAccount token
        self._rotate: asyncio.Task[None] | None = None
        self.namespace = namespace or client.config.namespace
        self.pod_labels = pod_labels
        self.sync_timeout = sync_timeout
        self.factory = InformerFactory(client)
        ns = self.namespace
        self._slices = self.factory.informer("discovery.k8s.io/v1", "endpointslices", ns,
                                             label_selector=f"{wk.SERVICE_NAME_LABEL}={service}")
        self._svc = self.factory.informer("v1", "services", ns, field_selector=f"metadata.name={service}")
        self._pods = self.factory.informer("v1", "pods", ns) if pod_labels else None

    def _recompute(self, *_: Any) -> None:
        labels = None
        if self._pods is not None:
            labels = {p["metadata"]["name"]: (p["metadata"].get("labels") or {}) for p in self._pods.list()}
        svc = self._svc.get(self.namespace, self.service)
        if not (self._slices.synced and self._svc.synced):
            return
        self._publish(slice_endpoints(self._slices.list(), self.port, labels),
                      service_topology(svc, self.topology))

    async def start(self) -> None:
        for inf in (self._slices, self._svc, self._pods):
            if inf is not None:
                inf.add_handler(self._recompute)
        await self.factory.start()
        await self.factory.wait_synced(self.sync_timeout)
        self._recompute()
        if isinstance(self.client, InClusterClient):
            self._rotate = asyncio.create_task(self._follow_token(self.client), name="lb-token")

    async def _follow_token(self, client: InClusterClient) -> None:
        while True:
            await asyncio.sleep(self.token_check)
            if await client.refresh():
                _log.info("ServiceAccount token rotated; reconnected", service=self.service)

    async def stop(self) -> None:
        await cancel_and_wait(self._rotate)
        await self.factory.stop()
        if self._own_client:
            await self.client.close()


# -- DNS ----------------------------------------------------------------------------------------------
def dns_endpoints(addresses: Sequence[str], port: int, srv: Sequence[tuple[str, int, int, list[str]]] = (),
                  ) -> list[Endpoint]:
    """A/AAAA answers on a fixed port, or SRV records ``(target, port, weight, addresses)``."""
    out: dict[str, Endpoint] = {}
    for target, p, weight, addrs in srv:
        host = target.rstrip(".").split(".", 1)[0]
        for a in addrs:
            e = Endpoint(a, p, weight=max(weight, 1), hostname=host)
            out.setdefault(e.key, e)
    for a in addresses:
        e = Endpoint(a, port)
        out.setdefault(e.key, e)
    return sorted(out.values(), key=lambda e: e.key)


class DnsSource(Source):
    """Resolves a headless Service's A/AAAA (or SRV) records, again when their TTL runs out.

    The next lookup comes at ``TTL x (1 - jitter x U[0,1))`` so that many clients spread out and
    none uses an answer past its TTL. ``srv`` is the port name (``_web._tcp.NAME``).
    """

    kind = "dns"

    def __init__(self, name: str, port: int = 80, *, srv: str | None = None,
                 nameservers: Sequence[tuple[str, int]] | None = None, search: bool = True,
                 jitter: float = 0.2, min_interval: float = 0.5, max_interval: float = 300.0,
                 negative_interval: float = 1.0, timeout: float = 2.0, topology: Topology = Topology()) -> None:
        super().__init__(topology)
        self.name = name
        self.port = port
        self.srv = srv
        self.search = search
        self.jitter = jitter
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.negative_interval = negative_interval
        self.resolver = dns.asyncresolver.Resolver(configure=nameservers is None)
        if nameservers:
            self.resolver.nameservers = [ip for ip, _ in nameservers]
            self.resolver.port = nameservers[0][1]
        self.resolver.lifetime = timeout
        self.resolver.cache = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._last: list[list[str]] = [[], []]  # the last A and AAAA answers
        self.ttl = 0.0
        self.lookups = 0

    async def _query(self, name: str, rdtype: str) -> tuple[list[Any], float, Any]:
        try:
            ans = await self.resolver.resolve(name, rdtype, search=self.search)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return [], self.negative_interval, None
        return list(ans), float(ans.rrset.ttl if ans.rrset is not None else 0), ans

    async def resolve_once(self) -> float:
        """One lookup; publishes the set and returns the smallest TTL seen."""
        self.lookups += 1
        if self.srv:
            recs, ttl, ans = await self._query(f"_{self.srv}._tcp.{self.name}", "SRV")
            extra: dict[str, list[str]] = {}
            for rr in (ans.response.additional if ans is not None else []):
                if rr.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
                    extra.setdefault(rr.name.to_text(), []).extend(r.address for r in rr)
            srv = []
            for r in recs:
                target = r.target.to_text()
                addrs = extra.get(target)
                if addrs is None:
                    got, t2, _ = await self._query(target, "A")
                    addrs = [g.address for g in got]
                    ttl = min(ttl, t2)
                srv.append((target, r.port, r.weight, addrs))
            self._publish(dns_endpoints([], self.port, srv))
            return ttl
        # each family on its own: one that fails keeps its last addresses (the other still updates)
        got: list[list[str]] = []
        ttls: list[float] = []
        errors: list[BaseException] = []
        for i, rdtype in enumerate(("A", "AAAA")):
            try:
                recs, ttl, _ = await self._query(self.name, rdtype)
            except dns.exception.DNSException as exc:
                errors.append(exc)
                got.append(self._last[i])
                ttls.append(self.negative_interval)
                continue
            addrs = [r.address for r in recs]
            got.append(addrs)
            self._last[i] = addrs
            ttls.append(ttl if addrs else self.negative_interval)
        if len(errors) == 2:
            raise errors[0]
        self._publish(dns_endpoints(got[0] + got[1], self.port))
        return min(t for t, addrs in zip(ttls, got, strict=True) if addrs) if any(got) else min(ttls)

    def _next_wait(self) -> float:
        wait = self.ttl * (1.0 - self.jitter * random.random())
        return min(max(wait, self.min_interval), self.max_interval)

    async def _loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._next_wait())
            try:
                self.ttl = await self.resolve_once()
            except asyncio.CancelledError:
                raise
            except (dns.exception.DNSException, OSError) as exc:
                _log.warning("dns lookup failed", name=self.name, error=f"{type(exc).__name__}: {exc}")
                self.ttl = self.negative_interval  # keep the last known set (Envoy's rule); try again

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self.ttl = await self.resolve_once()
            self._task = asyncio.create_task(self._loop(), name=f"lb-dns-{self.name}")

    async def stop(self) -> None:
        # dnspython's asyncio backend waits with asyncio.wait_for, which on Python 3.11 can drop a
        # cancellation: flag the loop to end and cancel until the task is really done.
        self._stopping = True
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.2)
        if task is not None and not task.cancelled() and task.exception() is not None:
            _log.warning("dns source ended with an error", name=self.name, error=repr(task.exception()))
