"""DNS programming latency and memory at scale, through the real API server.

    .venv/bin/python bench/dns/programming.py [--services 10000] [--endpoints-per-slice 10] [--samples 200]

Starts ``servicenet apiserver`` (memory storage) as its own process, loads N Services and N
EndpointSlices of E endpoints each through the API (many concurrent requests), then starts
``servicenet dns`` as its own process against it, waits for ``/readyz`` and checks every
Service's answer. Then, per sample, it takes the time just before an API write (PATCH an
EndpointSlice changing one endpoint's address or its ready condition, or POST a new
Service) and polls the DNS server over UDP (about 1 ms apart, bounded) until the answer
reflects the write. Reports p50/p90/p99/max against the 50 ms target, and the DNS process
RSS per 1,000 endpoints against CoreDNS's sizing formula ((Pods + Services)/1000 + 54 MB,
Pods taken as the number of endpoints). Writes ``bench/results/dns_programming.json``.

Everything runs on 127.0.0.1; endpoint addresses are data only (nothing is sent to them).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv/bin/python")
ZONE = "cluster.local"
TARGET_P99_MS = 50.0
COREDNS_BASE_MB = 54.0
EP_BASE = int(ipaddress.IPv4Address("10.128.0.0"))  # loaded endpoint addresses (data only)
TRIGGER = "endpoints.kubernetes.io/last-change-trigger-time"
NEW_BASE = int(ipaddress.IPv4Address("10.200.0.0"))  # addresses written during sampling (data only)


# ------------------------------------------------------------------------------ pure helpers
def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of an ascending list; NaN when empty."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))  # ceil(n*q/100), at least 1
    return sorted_values[int(min(rank, len(sorted_values))) - 1]


def coredns_memory_mb(pods: int, services: int) -> float:
    """CoreDNS's published sizing formula for the kubernetes plugin: (Pods + Services)/1000 + 54 MB."""
    return (pods + services) / 1000 + COREDNS_BASE_MB


def verdict(value: float, target: float) -> str:
    """PASS when ``value`` is at or below ``target`` (both finite), else MISS."""
    return "PASS" if value == value and value <= target else "MISS"


def ip_at(base: int, i: int) -> str:
    return str(ipaddress.IPv4Address(base + i))


@dataclass(frozen=True, slots=True)
class SvcPlan:
    index: int
    namespace: str
    name: str
    headless: bool
    hostnames: bool  # StatefulSet-style endpoints with hostnames web-0..

    @property
    def fqdn(self) -> str:
        return f"{self.name}.{self.namespace}.svc.{ZONE}."

    @property
    def slice_name(self) -> str:
        return f"{self.name}-ep"


def plan(services: int, namespaces: int) -> list[SvcPlan]:
    """Half ClusterIP, half headless (every other headless one with hostnames)."""
    return [SvcPlan(i, f"ns{i % namespaces}", f"svc{i}", headless=i % 2 == 1, hostnames=i % 4 == 3)
            for i in range(services)]


def service_body(p: SvcPlan) -> dict[str, Any]:
    spec: dict[str, Any] = {"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                            "selector": {"app": p.name}}
    if p.headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": p.name, "namespace": p.namespace},
            "spec": spec}


def endpoints(p: SvcPlan, per_slice: int) -> list[dict[str, Any]]:
    out = []
    for k in range(per_slice):
        ep: dict[str, Any] = {"addresses": [ip_at(EP_BASE, p.index * per_slice + k + 1)],
                              "conditions": {"ready": True, "serving": True, "terminating": False},
                              "targetRef": {"kind": "Pod", "namespace": p.namespace, "name": f"{p.name}-{k}"}}
        if p.hostnames:
            ep["hostname"] = f"web-{k}"
        out.append(ep)
    return out


def slice_body(p: SvcPlan, eps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": p.slice_name, "namespace": p.namespace,
                         "labels": {"kubernetes.io/service-name": p.name,
                                    "endpointslice.kubernetes.io/managed-by": "bench.servicenet.dev"}},
            "addressType": "IPv4", "endpoints": eps,
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}


def expected_a(p: SvcPlan, eps: list[dict[str, Any]], cluster_ip: str | None) -> set[str]:
    """The A set a name query must return: the ClusterIP, or the ready endpoint addresses."""
    if not p.headless:
        return {cluster_ip} if cluster_ip else set()
    return {a for ep in eps if (ep.get("conditions") or {}).get("ready") is not False for a in ep["addresses"]}


def summarize(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {"n": len(s), "p50_ms": round(percentile(s, 50), 3), "p90_ms": round(percentile(s, 90), 3),
            "p99_ms": round(percentile(s, 99), 3), "max_ms": round(s[-1], 3) if s else float("nan")}


def _rfc3339_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def histogram_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """Per-bucket counts added between two scrapes of a cumulative Prometheus histogram."""
    out = {}
    for k, v in after.items():
        if "_bucket{" in k:
            le = k.split('le="', 1)[1].split('"', 1)[0]
            out[le] = int(v - before.get(k, 0.0))
    return out


# ------------------------------------------------------------------------------ processes
@dataclass
class Proc:
    name: str
    cmd: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def start(self) -> Proc:
        self.started = time.monotonic()
        with open(self.log, "wb") as f:
            self.popen = subprocess.Popen(self.cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT,
                                          start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def check_alive(self) -> None:
        if self.popen is not None and self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited ({self.popen.returncode}): "
                               f"{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        p = self.popen
        if p is None or p.poll() is not None:
            return
        os.killpg(p.pid, signal.SIGTERM)  # our own session only
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def rss_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes."""
    rss = hwm = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) * 1024
    return rss, hwm


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (racy, like any such probe)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise OSError("no free port")


def wait_until(pred: Callable[[], bool], deadline: float, what: str, procs: list[Proc],
               interval: float = 0.05) -> None:
    while not pred():
        for p in procs:
            p.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(interval)


def start_apiserver(tmp: Path, procs: list[Proc]) -> tuple[Proc, Path]:
    data = tmp / "api"
    data.mkdir()
    proc = Proc("apiserver", [PY, "-m", "servicenet.cli", "apiserver", "--data-dir", str(data),
                              "--api-listen", "127.0.0.1:0", "--storage", "memory", "--log-level", "warning"],
                tmp / "apiserver.log").start()
    procs.append(proc)  # stopped by the caller even if it never comes up
    kubeconfig = data / "kubeconfig"
    wait_until(lambda: kubeconfig.exists() and "listening on" in proc.log.read_text(errors="replace"),
               time.monotonic() + 60, "apiserver did not start", [proc])
    return proc, kubeconfig


def start_dns(tmp: Path, kubeconfig: Path, tag: str, procs: list[Proc], ready_by: float, others: list[Proc],
              interval: float = 0.05) -> tuple[Proc, int, int]:
    """A DNS process whose /readyz answers by ``ready_by``. Its ports come from :func:`free_port`,
    which another process may take before the DNS binds them: then it starts again on new ports."""
    for attempt in range(3):
        dns_port, health_port = free_port(), free_port()
        proc = Proc(f"dns-{tag}", [PY, "-m", "servicenet.cli", "dns", "--kubeconfig", str(kubeconfig),
                                   "--dns-listen", f"127.0.0.1:{dns_port}", "--health-listen",
                                   f"127.0.0.1:{health_port}", "--no-forward", "--log-level", "warning"],
                    tmp / f"dns-{tag}-{attempt}.log").start()
        procs.append(proc)
        try:
            wait_until(lambda port=health_port: http_ok(f"http://127.0.0.1:{port}/readyz"), ready_by,
                       f"dns-{tag} not ready", [*others, proc], interval)
        except RuntimeError as exc:  # it exited
            if "address already in use" not in str(exc) or attempt == 2:
                raise
            procs.remove(proc)
            continue
        return proc, dns_port, health_port
    raise AssertionError("unreachable")


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def scrape(url: str, prefix: str) -> dict[str, float]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith(prefix):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


# ------------------------------------------------------------------------------ DNS over UDP
class UdpAsker(asyncio.DatagramProtocol):
    """Sends queries to one server; matches answers to queries by message id."""

    def __init__(self) -> None:
        self.waiting: dict[int, asyncio.Future[bytes]] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self._next = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 2:
            fut = self.waiting.pop(int.from_bytes(data[:2], "big"), None)
            if fut is not None and not fut.done():
                fut.set_result(data)

    async def ask(self, name: str, rdtype: str = "A", timeout: float = 0.5) -> tuple[int, set[str]] | None:
        """(rcode, A addresses in the answer), or None on timeout."""
        import dns.message

        self._next = (self._next + 1) % 65536
        while self._next in self.waiting:
            self._next = (self._next + 1) % 65536
        q = dns.message.make_query(name, rdtype)
        q.id = self._next
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting[q.id] = fut
        assert self.transport is not None
        self.transport.sendto(q.to_wire())
        try:
            wire = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self.waiting.pop(q.id, None)
            return None
        m = dns.message.from_wire(wire)
        return m.rcode(), {rd.address for rrs in m.answer if rrs.rdtype == 1 for rd in rrs}


async def udp_asker(port: int) -> tuple[asyncio.DatagramTransport, UdpAsker]:
    loop = asyncio.get_running_loop()
    tr, proto = await loop.create_datagram_endpoint(UdpAsker, remote_addr=("127.0.0.1", port))
    return tr, proto


# ------------------------------------------------------------------------------ the run
@dataclass
class State:
    plans: list[SvcPlan]
    per_slice: int
    eps: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    cluster_ips: dict[int, str] = field(default_factory=dict)


async def _retrying(fn: Callable[[], Any], tries: int = 4) -> Any:
    from servicenet.client.rest import ApiError

    for attempt in range(tries):
        try:
            return await fn()
        except ApiError as exc:
            if exc.status < 429 or attempt == tries - 1:
                raise
        except (TimeoutError, OSError):
            if attempt == tries - 1:
                raise
        await asyncio.sleep(0.1 * (attempt + 1))


async def load(client: Any, st: State, namespaces: int, concurrency: int) -> dict[str, Any]:
    """Create namespaces, Services and EndpointSlices through the API; timing per phase."""
    sem = asyncio.Semaphore(concurrency)
    phases: dict[str, float] = {}

    async def one(fn: Callable[[], Any]) -> Any:
        async with sem:
            return await _retrying(fn)

    t0 = time.monotonic()
    await asyncio.gather(*(one(lambda i=i: client.create("v1", "namespaces", None, {  # type: ignore[misc]
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns{i}"}})) for i in range(namespaces)))
    phases["namespaces_s"] = time.monotonic() - t0

    async def svc(p: SvcPlan) -> None:
        out = await one(lambda: client.create("v1", "services", p.namespace, service_body(p)))
        if not p.headless:
            st.cluster_ips[p.index] = out["spec"]["clusterIP"]

    t1 = time.monotonic()
    await asyncio.gather(*(svc(p) for p in st.plans))
    phases["services_s"] = time.monotonic() - t1
    t2 = time.monotonic()
    for p in st.plans:
        st.eps[p.index] = endpoints(p, st.per_slice)
    await asyncio.gather(*(one(lambda p=p: client.create(  # type: ignore[misc]
        "discovery.k8s.io/v1", "endpointslices", p.namespace, slice_body(p, st.eps[p.index])))
        for p in st.plans))
    phases["endpointslices_s"] = time.monotonic() - t2
    total = time.monotonic() - t0
    objects = namespaces + 2 * len(st.plans)
    return {"objects": objects, "seconds": round(total, 2), "objects_per_s": round(objects / total),
            "concurrency": concurrency, **{k: round(v, 2) for k, v in phases.items()}}


async def verify_all(port: int, st: State, parallel: int = 8) -> dict[str, Any]:
    """Every Service name answers exactly its expected A set."""
    transports, askers = zip(*[await udp_asker(port) for _ in range(parallel)], strict=True)
    bad: list[str] = []
    it = iter(st.plans)

    async def worker(a: UdpAsker) -> None:
        for p in it:
            want = expected_a(p, st.eps[p.index], st.cluster_ips.get(p.index))
            got = None
            for _ in range(3):
                got = await a.ask(p.fqdn, timeout=1.0)
                if got is not None:
                    break
            if got is None or got[1] != want:
                bad.append(f"{p.fqdn}: want {sorted(want)} got {got}")

    t0 = time.monotonic()
    try:
        await asyncio.gather(*(worker(a) for a in askers))
    finally:
        for tr in transports:
            tr.close()
    return {"checked": len(st.plans), "wrong": len(bad), "examples": bad[:5],
            "seconds": round(time.monotonic() - t0, 2)}


@dataclass
class Sample:
    kind: str
    ms: float | None  # None: never seen within the bound
    write_ms: float
    polls: int

    @property
    def after_write_ms(self) -> float | None:
        """Seen minus API reply (negative: the answer changed before the write call returned)."""
        return None if self.ms is None else self.ms - self.write_ms


async def _poll(asker: UdpAsker, name: str, done: Callable[[tuple[int, set[str]]], bool], t0: float,
                bound: float, interval: float) -> tuple[float | None, int]:
    polls = 0
    while True:
        got = await asker.ask(name, timeout=0.2)
        polls += 1
        now = time.perf_counter()
        if got is not None and done(got):
            return now, polls
        if now - t0 > bound:
            return None, polls
        await asyncio.sleep(interval)


@dataclass(frozen=True, slots=True)
class Change:
    """One API write and the answer that shows it: ``eps`` is None for a Service create."""

    kind: str
    svc: SvcPlan
    eps: list[dict[str, Any]] | None
    want: set[str] | None  # the exact A set to wait for (None: any address)

    def seen(self, got: tuple[int, set[str]]) -> bool:
        if self.want is None:
            return got[0] == 0 and bool(got[1])
        return got[1] == self.want


KINDS = ("slice-address", "slice-ready", "service-create")


def next_change(i: int, st: State, headless: list[SvcPlan], namespaces: int) -> Change:
    """The i-th write: change one endpoint's address, or mark one not ready, or add a Service."""
    kind = KINDS[i % len(KINDS)]
    if kind == "service-create":
        svc = SvcPlan(len(st.plans) + i, f"ns{i % namespaces}", f"prog{i}", headless=False, hostnames=False)
        return Change(kind, svc, None, None)
    svc = headless[(i * 7919) % len(headless)]  # spread over the slices
    eps = [dict(ep) for ep in st.eps[svc.index]]
    k = i % len(eps)
    if kind == "slice-address":
        eps[k] = {**eps[k], "addresses": [ip_at(NEW_BASE, i + 1)]}
    else:
        eps[k] = {**eps[k], "conditions": {"ready": False, "serving": False, "terminating": True}}
    return Change(kind, svc, eps, expected_a(svc, eps, None))


async def _timed(write: Any, replied: list[float]) -> Any:
    """Await ``write`` and note when its answer arrived. (A done-callback would not do: when the task
    has finished before ``await task``, the await returns before the callback has run.)"""
    res = await write
    replied.append(time.perf_counter())
    return res


async def measure(client: Any, port: int, st: State, samples: int, bound: float, interval: float,
                  deadline: float, namespaces: int) -> list[Sample]:
    """Rotate the write kinds; per sample: time before the write → answer reflects it."""
    _, asker = await udp_asker(port)
    headless = [p for p in st.plans if p.headless]
    out: list[Sample] = []
    for i in range(samples):
        if time.monotonic() > deadline:
            break
        ch = next_change(i, st, headless, namespaces)
        before = await asker.ask(ch.svc.fqdn)
        if before is not None and ch.seen(before):
            raise AssertionError(f"{ch.svc.fqdn} already answers {before} before write {i}")
        if ch.eps is None:
            write = client.create("v1", "services", ch.svc.namespace, service_body(ch.svc))
        else:
            st.eps[ch.svc.index] = ch.eps
            body = {"endpoints": ch.eps, "metadata": {"annotations": {TRIGGER: _rfc3339_now()}}}
            write = client.patch("discovery.k8s.io/v1", "endpointslices", ch.svc.namespace, ch.svc.slice_name,
                                 body, patch_type="merge")
        replied: list[float] = []
        t0 = time.perf_counter()
        task = asyncio.ensure_future(_timed(write, replied))
        seen, polls = await _poll(asker, ch.svc.fqdn, ch.seen, t0, bound, interval)
        res = await task
        if ch.eps is None:  # the answer seen must be the allocated address
            got = await asker.ask(ch.svc.fqdn)
            if got is None or got[1] != {res["spec"]["clusterIP"]}:
                raise AssertionError(f"{ch.svc.fqdn}: answer {got} != allocated {res['spec']['clusterIP']}")
        out.append(Sample(ch.kind, None if seen is None else (seen - t0) * 1e3, (replied[0] - t0) * 1e3, polls))
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from servicenet.client import ApiClient

    t_start = time.monotonic()
    deadline = t_start + args.budget
    res: dict[str, Any] = {"services": args.services, "endpoints": args.services * args.endpoints_per_slice,
                           "endpointslices": args.services, "endpoints_per_slice": args.endpoints_per_slice,
                           "apiserver": "separate process (servicenet.cli apiserver --storage memory)",
                           "dns": "separate process (servicenet.cli dns --no-forward, 1 worker)"}
    procs: list[Proc] = []
    with tempfile.TemporaryDirectory(prefix="sn-dnsprog-") as td:
        tmp = Path(td)
        try:
            api, kubeconfig = start_apiserver(tmp, procs)
            # baseline: the DNS process on an empty cluster
            base, _, _ = start_dns(tmp, kubeconfig, "empty", procs, time.monotonic() + 60, [api])
            res["dns_rss_empty_mib"] = round(rss_bytes(base.pid)[0] / 2**20, 1)
            base.stop()
            procs.remove(base)

            client = ApiClient.from_kubeconfig(kubeconfig, user_agent="bench-dns-programming")
            st = State(plan(args.services, args.namespaces), args.endpoints_per_slice)
            try:
                print(f"loading {args.services} Services + {args.services} EndpointSlices x "
                      f"{args.endpoints_per_slice} endpoints through the API ...", flush=True)
                res["load"] = await asyncio.wait_for(load(client, st, args.namespaces, args.concurrency),
                                                     max(1.0, deadline - time.monotonic()))
                print(f"  loaded {res['load']}", flush=True)
                res["apiserver_rss_mib"] = round(rss_bytes(api.pid)[0] / 2**20, 1)

                dns, dport, hport = start_dns(tmp, kubeconfig, "loaded", procs,
                                              min(deadline, time.monotonic() + 120), [api], interval=0.1)
                res["dns_ready_s"] = round(time.monotonic() - dns.started, 2)
                res["dns_rss_synced_mib"] = round(rss_bytes(dns.pid)[0] / 2**20, 1)
                print(f"  dns ready in {res['dns_ready_s']} s, RSS {res['dns_rss_synced_mib']} MiB", flush=True)
                res["verify"] = await verify_all(dport, st)
                print(f"  verified: {res['verify']}", flush=True)
                if res["verify"]["wrong"]:
                    raise AssertionError(f"wrong answers: {res['verify']['examples']}")
                rss, hwm = rss_bytes(dns.pid)
                res["dns_rss_warm_mib"], res["dns_hwm_mib"] = round(rss / 2**20, 1), round(hwm / 2**20, 1)

                hist_url = f"http://127.0.0.1:{hport}/metrics"
                hist0 = scrape(hist_url, "servicenet_dns_programming_latency_seconds_")
                res["loadavg_before_sampling"] = os.getloadavg()
                samples = await measure(client, dport, st, args.samples, args.bound, args.interval / 1e3, deadline,
                                        args.namespaces)
                dns.check_alive()
                rss, hwm = rss_bytes(dns.pid)
                res["dns_rss_end_mib"], res["dns_hwm_mib"] = round(rss / 2**20, 1), round(hwm / 2**20, 1)
                res["loadavg_after_sampling"] = os.getloadavg()
                # the server's own view of the slice patches: trigger-time annotation -> index updated
                res["dns_server_histogram_cumulative_by_le_s"] = histogram_delta(
                    hist0, scrape(hist_url, "servicenet_dns_programming_latency_seconds_"))
            finally:
                await client.close()
        finally:
            for p in reversed(procs):
                p.stop()
    # a change never seen within the bound counts as infinitely late
    lat = summarize([float("inf") if s.ms is None else s.ms for s in samples])
    missing = sum(1 for s in samples if s.ms is None)
    res["programming"] = {**lat, "not_seen_within_bound": missing, "bound_s": args.bound,
                          "poll_interval_ms": args.interval,
                          "by_kind": {k: summarize([float("inf") if s.ms is None else s.ms for s in samples if s.kind == k])
                                      for k in KINDS},
                          "api_write_rtt": summarize([s.write_ms for s in samples]),
                          "seen_after_api_reply": summarize([s.after_write_ms for s in samples
                                                             if s.after_write_ms is not None]),
                          "slowest": [{"kind": s.kind, "ms": s.ms and round(s.ms, 2),
                                       "api_write_ms": round(s.write_ms, 2)}
                                      for s in sorted(samples, key=lambda s: -(s.ms or float("inf")))[:6]],
                          "polls_mean": round(sum(s.polls for s in samples) / max(1, len(samples)), 1)}
    eps, svcs = res["endpoints"], res["services"]
    formula = coredns_memory_mb(eps, svcs)
    ours_mb = max(res["dns_rss_warm_mib"], res["dns_rss_end_mib"]) * 2**20 / 1e6  # MiB → MB (conservative)
    res["memory"] = {"dns_rss_mb": round(ours_mb, 1), "coredns_formula_mb": round(formula, 1),
                     "mb_per_1000_endpoints": round(ours_mb / (eps / 1000), 3),
                     "coredns_mb_per_1000_endpoints": round(formula / (eps / 1000), 3),
                     "marginal_mb_per_1000_endpoints": round(
                         (ours_mb - res["dns_rss_empty_mib"] * 2**20 / 1e6) / (eps / 1000), 3),
                     "coredns_marginal_mb_per_1000_endpoints": round((eps + svcs) / eps, 3)}
    res["summary"] = [
        {"figure": "programming latency p99 (API write -> new answer)", "value": res["programming"]["p99_ms"],
         "unit": "ms", "target": TARGET_P99_MS, "verdict": verdict(res["programming"]["p99_ms"], TARGET_P99_MS)},
        {"figure": "DNS RSS per 1,000 endpoints", "value": res["memory"]["mb_per_1000_endpoints"], "unit": "MB",
         "target": res["memory"]["coredns_mb_per_1000_endpoints"],
         "verdict": verdict(ours_mb, formula)},
    ]
    res["wall_s"] = round(time.monotonic() - t_start, 1)
    return res


def print_summary(res: dict[str, Any]) -> None:
    pr, mem = res["programming"], res["memory"]
    print(f"programming latency, API write -> new answer over UDP ({pr['n']} samples, "
          f"{pr['not_seen_within_bound']} unseen): p50 {pr['p50_ms']} ms, p90 {pr['p90_ms']} ms, "
          f"p99 {pr['p99_ms']} ms, max {pr['max_ms']} ms")
    for k, v in pr["by_kind"].items():
        print(f"  {k:15s} p50 {v['p50_ms']} ms  p99 {v['p99_ms']} ms  max {v['max_ms']} ms  (n={v['n']})")
    w = pr["api_write_rtt"]
    a = pr["seen_after_api_reply"]
    print(f"  API write round trip alone: p50 {w['p50_ms']} ms  p99 {w['p99_ms']} ms; answer changed "
          f"after the API reply by p50 {a['p50_ms']} ms  p99 {a['p99_ms']} ms")
    print(f"  slowest: {pr['slowest']}")
    print(f"DNS RSS {mem['dns_rss_mb']} MB for {res['services']} Services / {res['endpoints']} endpoints "
          f"(empty cluster {res['dns_rss_empty_mib']} MiB) = {mem['mb_per_1000_endpoints']} MB per 1,000 endpoints; "
          f"CoreDNS formula {mem['coredns_formula_mb']} MB = {mem['coredns_mb_per_1000_endpoints']} MB per 1,000; "
          f"marginal {mem['marginal_mb_per_1000_endpoints']} vs {mem['coredns_marginal_mb_per_1000_endpoints']}")
    for row in res["summary"]:
        print(f"  [{row['verdict']}] {row['figure']}: {row['value']} {row['unit']} (target <= {row['target']})")
    print(f"load {res['load']['objects']} objects in {res['load']['seconds']} s "
          f"({res['load']['objects_per_s']}/s); dns ready in {res['dns_ready_s']} s; wall {res['wall_s']} s")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints-per-slice", type=int, default=10)
    ap.add_argument("--namespaces", type=int, default=100)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=64, help="API requests in flight while loading")
    ap.add_argument("--bound", type=float, default=5.0, help="seconds to wait for one change")
    ap.add_argument("--interval", type=float, default=1.0, help="ms between polls")
    ap.add_argument("--budget", type=float, default=280.0, help="seconds for the whole run")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/dns_programming.json")
    return ap


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    sys.path.insert(0, str(ROOT))
    res = asyncio.run(run(args))
    print_summary(res)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1, default=str) + "\n")
        print(f"wrote {args.out}")
    return res


if __name__ == "__main__":
    main()
