"""``bench cluster`` part 2: readiness -> EndpointSlice -> DNS/proxy p99 across nodes, at scale.

    .venv/bin/python -m bench.cluster.scale [--nodes 1000 --pods 30000 --services 3000] [--storage etcd|sqlite]

Control plane: two API servers on one etcd (``--storage sqlite``: one server) and the controller
manager, each its own process. Data plane: ``--observers`` nodes (default 3) run, each as their own
processes, the cluster DNS and the nftables service proxy (in a network namespace ``sn-cb…`` the
benchmark creates; proxies with ``--min-sync-period`` 0); their clients are spread over both API
servers. Every other node is hollow (:mod:`bench.cluster.hollow`): Node object, Lease heartbeats
and pod status writes, from this process.

Load: ``--services`` ClusterIP Services, ``--pods`` pods spread over the nodes and Services, and a
probe: three pods behind a ClusterIP Service ``probe`` and a headless Service ``probe-h``. A flip
writes one probe pod's Ready condition (as its kubelet would) and times, on every observer node,
until its DNS answer for ``probe-h`` and its kernel rules (``nft monitor``) reflect it. Reported:
per node and "all nodes" (the slowest node of each flip) p50/p99, the API servers' RSS, etcd's
database size, and how long loading took. Results: stdout and bench/results/cluster.json.
``--probe-cm FILE`` runs the controller manager under :mod:`bench.cluster.cm_probe` and splits each
slow flip through it (pod event, sync start, slice write, collections, loop stalls, connections).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from aetcd import rpc

from bench.api.server_proc import ROOT, ServerProc, rss_bytes
from bench.cluster import api_probe, cm_probe, cpu, hollow, loopwatch, stages
from bench.cluster.observe import DnsProbe, NftMonitor, SliceWatch, summary
from bench.cluster.run import save_results
from servicenet.api import wellknown as wk
from servicenet.client import ApiClient, ApiError
from servicenet.store.etcdlaunch import Cluster, free_port

NS = "scale"


def server_kubeconfig(shared: Path, port: int, out: Path) -> Path:
    """A copy of the shared kubeconfig that points at the API server on ``port``."""
    text = re.sub(r"(server:\s*https://)[^\s/]+", rf"\g<1>127.0.0.1:{port}", shared.read_text())
    out.write_text(text)
    out.chmod(0o600)
    return out


class Procs:
    """Component processes (controller manager, per-node DNS and proxy), logs under ``work``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def spawn(self, name: str, args: list[str], cprofile: str | None = None,
              wrapper: str = "bench.cluster.cprof_toggle") -> subprocess.Popen[bytes]:
        entry = [wrapper, cprofile] if cprofile else ["servicenet.cli"]
        with open(self.work / f"{name}.log", "wb") as f:
            p = subprocess.Popen([sys.executable, "-m", *entry, *args], stdout=f, stderr=subprocess.STDOUT,
                                 cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self.procs.append((name, p))
        return p

    def dead(self) -> list[str]:
        return [n for n, p in self.procs if p.poll() is not None]

    def rss_mib(self, name: str) -> float:
        p = dict(self.procs)[name]
        return rss_bytes(p.pid)[0] / 2**20

    def stop(self) -> None:
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for _, p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


async def until(fn: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = await fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        await asyncio.sleep(interval)


async def ready_endpoints(c: ApiClient) -> int:
    items = (await c.list_all("discovery.k8s.io/v1", "endpointslices", NS))["items"]
    return sum(1 for s in items for e in s.get("endpoints") or [] if (e.get("conditions") or {}).get("ready"))


SLOW_DISK_S = 0.064  # a WAL fsync or backend commit slower than this holds every write behind it


def etcd_disk(endpoint: str) -> dict[str, tuple[int, int]]:
    """etcd's WAL fsyncs and backend commits so far: (count, count slower than SLOW_DISK_S), from
    its Prometheus histograms (a shared disk's stalls show here, not in any CPU figure)."""
    with urllib.request.urlopen(endpoint.rstrip("/") + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, tuple[int, int]] = {}
    for name in ("etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds"):
        total = re.search(rf"^{name}_count (\S+)$", text, re.M)
        fast = re.search(rf'^{name}_bucket{{le="{SLOW_DISK_S}"}} (\S+)$', text, re.M)
        if total and fast:
            out[name.split("_")[2]] = (int(float(total.group(1))), int(float(total.group(1)) - float(fast.group(1))))
    return out


def etcd_db_size(endpoint: str) -> int:
    async def go() -> int:
        async with grpc.aio.insecure_channel(endpoint.split("://", 1)[-1]) as ch:
            st = await rpc.MaintenanceStub(ch).Status(rpc.StatusRequest(), timeout=10)
            return int(st.dbSize)
    return asyncio.run(go())


async def load(args: argparse.Namespace, clients: list[ApiClient], hn: hollow.HollowNodes) -> dict[str, Any]:
    c = clients[0]
    t0 = time.monotonic()
    await c.create("v1", "namespaces", None, {"metadata": {"name": NS}})
    await hn.register()
    hn.start_heartbeats()
    t_nodes = time.monotonic() - t0
    svc = [(f"svc-{k:05d}", {"selector": {"app": f"svc-{k:05d}"}, "ports": [{"port": 80, "targetPort": 8080}]})
           for k in range(args.services)]
    svc += [("probe", {"selector": {"app": "probe"}, "ports": [{"port": 80, "targetPort": 8080}]}),
            ("probe-h", {"selector": {"app": "probe"}, "clusterIP": "None", "ports": [{"port": 80}]})]
    sem = asyncio.Semaphore(8)
    retries = 0

    async def mk(i: int, name: str, spec: dict[str, Any]) -> None:
        nonlocal retries
        async with sem:
            for attempt in range(20):
                try:
                    await clients[i % len(clients)].create("v1", "services", NS,
                                                           {"metadata": {"name": name}, "spec": spec})
                    return
                except ApiError as e:  # the shared ClusterIP allocator answers 500 "try again" under contention
                    if e.status != 500 or "try again" not in e.message or attempt == 19:
                        raise
                    retries += 1
                    await asyncio.sleep(0.05 * (attempt + 1))
    await asyncio.gather(*(mk(i, n, s) for i, (n, s) in enumerate(svc)))
    t_svc = time.monotonic() - t0 - t_nodes
    members = hn.members
    pods: list[tuple[str, hollow.HollowNode, int, dict[str, str]]] = []
    # the probe's pods on the first three nodes (slot 252, which the spread below never reaches)
    for k in range(3):
        pods.append((f"probe-{k}", members[k % len(members)], 252, {"app": "probe"}))
    for i, (node_i, slot) in enumerate(hollow.spread(args.pods, len(members))):
        pods.append((f"pod-{i:06d}", members[node_i], slot, {"app": f"svc-{i % max(1, args.services):05d}"}))
    await hn.start_pods(NS, pods)
    t_pods = time.monotonic() - t0 - t_nodes - t_svc
    want = len(pods) + 3 if args.services else 6  # the probe pods are in two Services
    try:
        await until(lambda: _eq(ready_endpoints(c), want), 60 + len(pods) / 20, f"{want} ready endpoints in slices")
    except TimeoutError:
        slices = (await c.list_all("discovery.k8s.io/v1", "endpointslices", NS))["items"]
        print(f"{len(slices)} slices, {await ready_endpoints(c)} ready endpoints; first: "
              f"{slices[:1]}; a pod: {(await c.get('v1', 'pods', NS, 'probe-0'))}", file=sys.stderr)
        raise
    return {"nodes_s": round(t_nodes, 1), "services_s": round(t_svc, 1), "service_create_retries": retries, "pods_s": round(t_pods, 1),
            "all_ready_s": round(time.monotonic() - t0, 1), "pods": len(pods), "services": len(svc)}


async def _true(value: bool) -> bool:
    return value


async def _eq(coro: Any, want: int) -> bool:
    return bool(await coro == want)


async def observe(ip: str, ready: bool, t0: float, name: str, probes: list[DnsProbe],
                  monitors: list[NftMonitor]) -> list[float | None]:
    """Seconds after ``t0`` until each node's DNS answer, then each node's rules, show ``ip`` as ``ready``."""
    async def dns_seen(p: DnsProbe) -> float | None:
        while time.monotonic() - t0 < 10:
            with contextlib.suppress(TimeoutError):
                if (ip in await p.a_records(name, 0.5)) == ready:
                    return time.monotonic() - t0
            await asyncio.sleep(0.002)
        return None

    async def nft_seen(m: NftMonitor) -> float | None:
        t = await m.wait_for(ip, "add" if ready else "delete", t0, 10)
        return None if t is None else t - t0

    return list(await asyncio.gather(*(dns_seen(p) for p in probes), *(nft_seen(m) for m in monitors)))


async def flips(args: argparse.Namespace, clients: list[ApiClient], hn: hollow.HollowNodes,
                probes: list[DnsProbe], monitors: list[NftMonitor],
                flip_log: list[tuple[float, str, str, bool]]) -> dict[str, Any]:
    name = f"probe-h.{NS}.svc.cluster.local"
    watch = SliceWatch(clients[-1], NS, "probe-h")  # through the API server the writes do not go to (half the time)
    watch.start()
    # its opening (a filtered scan of the namespace's slices, 3,000 at full size) must not land on
    # the first flip: wait for the initial state
    await until(lambda: _true(bool(watch.slices)), 30, "the probe slice watch's initial state", interval=0.05)
    await asyncio.sleep(1.0)
    acked: list[float] = []
    sliced: list[float] = []
    per_dns: list[float] = []
    per_nft: list[float] = []
    all_dns: list[float] = []
    all_nft: list[float] = []
    missed = 0
    per_flip: list[dict[str, Any]] = []
    renew_log: list[tuple[float, int]] = []

    async def sample_renewals() -> None:
        while True:
            renew_log.append((time.monotonic(), hn.renewals()))
            await asyncio.sleep(0.05)
    sampler = asyncio.create_task(sample_renewals())
    for f in range(args.flips):
        k = f % 3
        node = hn.members[k % len(hn.members)]
        ip = node.pod_ip(252)
        c = clients[f % len(clients)]
        for ready in (False, True):
            pod = await c.get("v1", "pods", NS, f"probe-{k}")
            pod["status"] = hollow.pod_status(ip, ready, hollow.now_rfc3339())
            pod["status"]["hostIP"] = node.ip
            t0 = time.monotonic()
            flip_log.append((t0, f"probe-{k}", ip, ready))
            await c.update_status("v1", "pods", NS, f"probe-{k}", pod)
            acked.append(time.monotonic() - t0)
            ts, res = await asyncio.gather(watch.wait_for(ip, ready, t0, 10),
                                           observe(ip, ready, t0, name, probes, monitors))
            if ts is not None:
                sliced.append(ts - t0)
            d, n = res[:len(probes)], res[len(probes):]
            missed += sum(1 for x in res if x is None)
            per_dns += [x for x in d if x is not None]
            per_nft += [x for x in n if x is not None]
            if all(x is not None for x in d):
                all_dns.append(max(d))  # type: ignore[type-var]
            if all(x is not None for x in n):
                all_nft.append(max(n))  # type: ignore[type-var]
            per_flip.append({"t0": t0, "ready": ready, "acked_ms": round(acked[-1] * 1e3, 1),
                             "slice_ms": None if ts is None else round((ts - t0) * 1e3, 1),
                             "all_ms": None if None in res else round(max(res) * 1e3, 1),  # type: ignore[type-var]
                             "dns_ms": None if None in d else round(max(d) * 1e3, 1),  # type: ignore[type-var]
                             "rules_ms": None if None in n else round(max(n) * 1e3, 1)})  # type: ignore[type-var]
            for m in monitors:
                m.trim()
            await asyncio.sleep(0.1)
    await watch.stop()
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    for rec in per_flip:  # heartbeats that completed while the flip was under way (and 0.5 s before)
        end = rec["t0"] + (rec["all_ms"] or 0) / 1e3
        rec["renewals_near"] = renewals_between(renew_log, rec["t0"] - 0.5, end)
    t_first = per_flip[0]["t0"] if per_flip else 0.0
    for rec in per_flip:
        rec["t0"] = round(rec["t0"] - t_first, 3)
    both = [max(a, b) for a, b in zip(all_dns, all_nft, strict=False)]
    return {"flips": args.flips * 2, "missed": missed, "status_write_acked": summary(acked),
            "endpointslice_seen": summary(sliced), "dns_per_node": summary(per_dns), "proxy_per_node": summary(per_nft),
            "dns_all_nodes": summary(all_dns), "proxy_all_nodes": summary(all_nft), "dns_and_proxy_all_nodes": summary(both),
            "per_flip": per_flip, "heartbeats": renewal_rates(renew_log)}


def renewals_between(log: list[tuple[float, int]], start: float, end: float) -> int:
    """Renewals counted between ``start`` and ``end`` in a (time, running total) log."""
    inside = [n for t, n in log if start <= t <= end]
    before = [n for t, n in log if t < start]
    if not inside:
        return 0
    return inside[-1] - (before[-1] if before else inside[0])


def renewal_rates(log: list[tuple[float, int]], window: float = 0.5) -> dict[str, float]:
    """Heartbeats per second over the flips: the mean, and the busiest ``window`` as a rate."""
    if len(log) < 2:
        return {}
    span = log[-1][0] - log[0][0]
    peak, j = 0, 0
    for i in range(len(log)):
        while log[i][0] - log[j][0] > window:
            j += 1
        peak = max(peak, log[i][1] - log[j][1])
    return {"mean_per_s": round((log[-1][1] - log[0][1]) / max(span, 1e-9), 1),
            f"peak_per_s_over_{window}s": round(peak / window, 1)}


def cpu_split(bg: dict[str, float], bg_s: float, fl: dict[str, float], fl_s: float, n: int) -> dict[str, Any]:
    """Per component: background CPU share (cores) and the CPU a flip adds over it (ms per flip)."""
    return {k: {"idle_cores": round(bg[k] / max(bg_s, 1e-9), 3),
                "flip_ms": round((fl[k] - bg[k] / max(bg_s, 1e-9) * fl_s) / max(1, n) * 1e3, 2)} for k in bg}


async def run(args: argparse.Namespace, work: Path, servers: list[ServerProc], procs: Procs,
              netns: list[str], etcd: Cluster | None = None) -> dict[str, Any]:
    shared = work / "shared-config" / "kubeconfig"
    kcs = [server_kubeconfig(shared, s.target.port, work / f"kubeconfig-{i}")  # type: ignore[union-attr]
           for i, s in enumerate(servers)]
    clients = [ApiClient.from_kubeconfig(k, user_agent="bench-hollow") for k in kcs]
    members = hollow.nodes(args.nodes)
    hn = hollow.HollowNodes(clients, members)
    monitors: list[NftMonitor] = []
    probes: list[DnsProbe] = []
    try:
        procs.spawn("controller-manager", ["controller-manager", "--kubeconfig", str(kcs[0]), "--health-listen",
                                           f"127.0.0.1:{free_port()}", "--log-level", "warning",
                                           "--leader-elect=false"],  # one instance: no Lease to lose under load
                    cprofile=args.cprofile_cm or args.probe_cm,
                    wrapper="bench.cluster.cm_probe" if args.probe_cm else "bench.cluster.cprof_toggle")
        res: dict[str, Any] = {"load": await load(args, clients, hn)}
        print(f"loaded: {res['load']}", flush=True)
        cidrs = [a for c in wk.address_plan("netns").service_cidrs for a in ("--service-cidr", c)]
        for k in range(args.observers):
            node = members[k]
            kc = str(kcs[k % len(kcs)])
            m = NftMonitor(netns[k])
            await m.start()
            monitors.append(m)
            port = free_port()
            procs.spawn(f"{node.name}-proxy", ["proxy", "--kubeconfig", kc, "--mode", "nftables", "--node-name",
                                               node.name, "--netns", netns[k], "--node-ip", node.ip, "--cluster-cidr",
                                               str(hollow.POD_BASE), *cidrs, "--min-sync-period", str(args.min_sync_period),
                                               "--health-listen", f"127.0.0.1:{free_port()}", "--log-level", "warning"])
            procs.spawn(f"{node.name}-dns", ["dns", "--kubeconfig", kc, "--dns-listen", f"127.0.0.1:{port}",
                                             "--health-listen", f"127.0.0.1:{free_port()}", "--no-forward",
                                             "--log-level", "warning"])
            probes.append(DnsProbe("127.0.0.1", port))
        name = f"probe-h.{NS}.svc.cluster.local"

        async def observers_ready() -> bool:
            if procs.dead():
                tails = {n: (work / f"{n}.log").read_text(errors="replace")[-1500:] for n in procs.dead()}
                raise RuntimeError(f"processes exited: {tails}")
            for p in probes:
                try:
                    if len(await p.a_records(name, 0.5)) != 3:
                        return False
                except (TimeoutError, OSError):
                    return False
            return True
        t0 = time.monotonic()
        await until(observers_ready, 120 + args.pods / 100, "every observer node's DNS answers the probe")
        # the proxies' first full sync: quiet for a second after the rules of every Service are in
        await until(lambda: _quiet(monitors, 1.0), 120 + args.pods / 100, "proxies' first sync", interval=0.2)
        res["observers_ready_s"] = round(time.monotonic() - t0, 1)
        for m in monitors:
            m.trim()
        roots = {f"apiserver-{i}": s.pid for i, s in enumerate(servers)}
        roots.update({name: p.pid for name, p in procs.procs})
        roots.update({f"etcd-{i}": m.proc.pid for i, m in enumerate(etcd.members) if m.proc is not None}
                     if etcd is not None else {})
        roots["bench (hollow nodes, probes)"] = os.getpid()
        observer = stages.Stages([str(k) for k in kcs], NS)
        # loading and the observers' first syncs held renews up until they bunched (at 1,000 nodes
        # every renew fell within a third of the interval); a cluster in steady state has them spread
        await hn.restagger()
        await asyncio.sleep(hn.members and hn.leases[0].interval or 0)  # one round of spread renews
        t_bg, bg0 = time.monotonic(), cpu.snapshot(roots)
        await asyncio.sleep(args.idle_seconds)  # the background: heartbeats only
        t_fl, bg1 = time.monotonic(), cpu.snapshot(roots)
        flip_log: list[tuple[float, str, str, bool]] = []
        if args.cprofile_cm or args.probe_cm:
            os.kill(dict(procs.procs)["controller-manager"].pid, signal.SIGUSR1)
        if args.cprofile_api or args.gc_probe:
            os.kill(servers[0].pid, signal.SIGUSR1)
        if args.probe_api:
            for s in servers:
                os.kill(s.pid, signal.SIGUSR1)
        disk0 = etcd_disk(etcd.endpoints[0]) if etcd is not None else {}
        res["latency"] = await flips(args, clients, hn, probes, monitors, flip_log)
        t_end, fl1 = time.monotonic(), cpu.snapshot(roots)
        if etcd is not None:
            disk1 = etcd_disk(etcd.endpoints[0])
            res["etcd_disk_during_flips"] = {k: {"n": disk1[k][0] - v[0], f"over_{SLOW_DISK_S * 1e3:.0f}ms": disk1[k][1] - v[1]}
                                             for k, v in disk0.items() if k in disk1}
        if args.cprofile_cm or args.probe_cm:
            os.kill(dict(procs.procs)["controller-manager"].pid, signal.SIGUSR2)
        if args.probe_cm:
            await until(lambda: _true(Path(args.probe_cm).exists()), 30, "the controller manager's probe file", interval=0.1)
            recs = cm_probe.load(args.probe_cm)
            rows = cm_probe.split(flip_log, recs)
            res["cm_probe"] = {"flips": rows, "summary": cm_probe.gc_summary(recs), "stages": cm_probe.flip_summary(rows)}
        if args.cprofile_api or args.gc_probe:
            os.kill(servers[0].pid, signal.SIGUSR2)
        if args.probe_api:
            res["api_probe"] = {}
            for i, s in enumerate(servers):
                os.kill(s.pid, signal.SIGUSR2)
                path = f"{args.probe_api}.{i}"
                await until(lambda p=path: _true(Path(p).exists()), 30, "an API server's probe file", interval=0.1)
                recs = api_probe.load(path)
                rows = api_probe.split(flip_log, recs)
                st = [r["ms"] for r in recs if r["kind"] == "stall"]
                res["api_probe"][str(i)] = {"flips": rows, "writes": api_probe.summary(rows),
                                            "stalls": {"n": len(st), "total_ms": round(sum(st), 1),
                                                       "max_ms": round(max(st, default=0), 1)}}
        res["stages"] = stages.split(flip_log, await asyncio.to_thread(observer.stop), len(kcs))
        res["cpu"] = cpu_split(cpu.delta(bg0, bg1), t_fl - t_bg, cpu.delta(bg1, fl1), t_end - t_fl,
                               res["latency"]["flips"])
        res["rss_mib"] = {f"apiserver-{i}": round(s.rss_mib(), 1) for i, s in enumerate(servers)}
        res["rss_mib"]["controller-manager"] = round(procs.rss_mib("controller-manager"), 1)
        for k in range(args.observers):
            for what in ("dns", "proxy"):
                res["rss_mib"][f"{members[k].name}-{what}"] = round(procs.rss_mib(f"{members[k].name}-{what}"), 1)
        return res
    finally:
        for p in probes:
            p.close()
        for m in monitors:
            await m.stop()
        await hn.stop()
        for c in clients:
            await c.close()


async def _quiet(monitors: list[NftMonitor], seconds: float) -> bool:
    now = time.monotonic()
    return all(m.lines and now - m.lines[-1][0] >= seconds for m in monitors)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--pods", type=int, default=500)
    ap.add_argument("--services", type=int, default=50)
    ap.add_argument("--observers", type=int, default=3)
    ap.add_argument("--flips", type=int, default=30, help="readiness flips (each measured both ways)")
    ap.add_argument("--storage", choices=["etcd", "sqlite"], default="etcd")
    ap.add_argument("--members", type=int, default=1)
    ap.add_argument("--min-sync-period", type=float, default=0.0)
    ap.add_argument("--cprofile-cm", default=None, help="thread-CPU cProfile of the controller manager's flips")
    ap.add_argument("--probe-cm", default=None, help="the controller manager's probe timeline (cm_probe) to a file")
    ap.add_argument("--cprofile-api", default=None, help="thread-CPU cProfile of API server 0's flips")
    ap.add_argument("--gc-probe", default=None, help="API server 0's collector pauses during the flips, to a file")
    ap.add_argument("--probe-api", default=None, help="both API servers' probe timelines (api_probe) to PREFIX.<i>")
    ap.add_argument("--probe-stalls", action="store_true",
                    help="the probes also record event-loop stalls (costs the probed processes CPU)")
    ap.add_argument("--idle-seconds", type=float, default=5.0, help="background CPU window before the flips")
    ap.add_argument("--quick", action="store_true", help="(the defaults are the quick run)")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench cluster scale needs root (network namespaces for the proxies)", file=sys.stderr)
        return 2
    if args.nodes < max(3, args.observers):
        ap.error("--nodes must be at least 3 and at least --observers")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-cluster-scale-"))
    os.environ[loopwatch.ENV] = "1" if args.probe_stalls else "0"  # the probes' children read it
    tag = secrets.token_hex(3)
    netns = [f"sn-cb{tag}-{k}" for k in range(args.observers)]
    etcd = Cluster(work / "etcd", args.members) if args.storage == "etcd" else None
    servers: list[ServerProc] = []
    procs = Procs(work)
    res: dict[str, Any] = {"storage": args.storage, "nodes": args.nodes, "pods": args.pods, "services": args.services,
                           "observers": args.observers, "min_sync_period": args.min_sync_period}
    t_start = time.monotonic()
    try:
        for ns in netns:
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        extra: list[str] = []
        if etcd is not None:
            etcd.start()
            extra = ["--etcd-servers", ",".join(etcd.endpoints)]
        n_servers = 2 if etcd is not None else 1
        servers = [ServerProc(work / "shared-config", args.storage, extra=extra,
                              cprofile=(args.cprofile_api or args.gc_probe) if i == 0 else None)
                   for i in range(n_servers)]
        servers[0].wrapper = "bench.cluster.gc_probe" if args.gc_probe else "bench.cluster.cprof_toggle"
        if args.probe_api:  # instead of the two above
            for i, s in enumerate(servers):
                s.cprofile, s.wrapper = f"{args.probe_api}.{i}", "bench.cluster.api_probe"
        for s in servers:
            s.start()
        res.update(asyncio.run(run(args, work, servers, procs, netns, etcd)))
        if etcd is not None:
            res["etcd_db_bytes"] = etcd_db_size(etcd.endpoints[0])
    finally:
        procs.stop()
        for s in servers:
            s.stop()
        if etcd is not None:
            etcd.stop()
        for ns in netns:
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        if args.workdir is None and not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    res["wall_s"] = round(time.monotonic() - t_start, 1)
    report(res)
    save_results({f"scale_{args.storage}": res})
    return 0


def report(res: dict[str, Any]) -> None:
    lat = res["latency"]
    print(f"\n{res['storage']}: {res['nodes']} nodes ({res['observers']} with DNS + nftables proxy), "
          f"{res['load']['pods']} pods, {res['load']['services']} Services; loaded in {res['load']['all_ready_s']} s")
    print(f"{'readiness -> ... p99 (ms)':36s}{'per node':>10s}{'all nodes':>11s}{'target':>9s}{'ratio':>7s}")
    for label, a, b in (("DNS answer", "dns_per_node", "dns_all_nodes"), ("proxy rules (kernel)", "proxy_per_node",
                                                                           "proxy_all_nodes")):
        p99 = lat[b]["p99_ms"]
        print(f"{label:36s}{lat[a]['p99_ms']:10.1f}{p99:11.1f}{100:9d}{p99 / 100:7.2f}")
    for label, key in (("  (pod status write acknowledged)", "status_write_acked"),
                       ("  (EndpointSlice seen by a watch)", "endpointslice_seen")):
        print(f"{label:36s}{lat[key]['p99_ms']:10.1f}   p50 {lat[key]['p50_ms']:.1f}")
    both = lat["dns_and_proxy_all_nodes"]["p99_ms"]
    hb = lat.get("heartbeats") or {}
    if hb:
        print("lease heartbeats during the flips per s: " + ", ".join(f"{k} {v}" for k, v in hb.items()))
    slow = sorted(lat.get("per_flip") or [], key=lambda r: -(r["all_ms"] or 1e9))[:5]
    for r in slow:
        print(f"  slow flip at +{r['t0']:.1f}s: acked {r['acked_ms']} slice {r['slice_ms']} DNS {r.get('dns_ms')} "
              f"rules {r.get('rules_ms')} all {r['all_ms']} ms; "
              f"{r['renewals_near']} heartbeats near")
    print(f"{'DNS and rules on every node':36s}{'':10s}{both:11.1f}{100:9d}{both / 100:7.2f}   "
          f"({lat['flips']} flips, {lat['missed']} observations missed)")
    for label, st in res.get("stages", {}).items():
        print(f"  stage: {label:34s} p50 {st['p50_ms']:7.1f}  p99 {st['p99_ms']:7.1f} ms  (n={st['n']})")
    if "cpu" in res:
        print("CPU per component: background cores / added ms per flip: " + ", ".join(
            f"{k} {v['idle_cores']:.2f}/{v['flip_ms']:.1f}" for k, v in res["cpu"].items()))
    print("RSS MiB: " + ", ".join(f"{k} {v}" for k, v in res["rss_mib"].items()))
    if "etcd_disk_during_flips" in res:
        print("etcd disk during the flips: " + ", ".join(f"{k} {v}" for k, v in res["etcd_disk_during_flips"].items()))
    if "cm_probe" in res:
        cp = res["cm_probe"]
        print("controller manager during the flips: " + ", ".join(f"{k} {v}" for k, v in cp["summary"].items()))
        print("controller manager per flip (p50, p99 ms after the status write): "
              + ", ".join(f"{k} {v}" for k, v in cp["stages"].items()))
        for r in sorted(cp["flips"], key=lambda r: -max(r.get("probe_end_ms") or 0, r.get("probe-h_end_ms") or 0))[:6]:
            print("  cm split (ms): " + ", ".join(f"{k} {v}" for k, v in r.items() if k not in ("t0", "stalls"))
                  + "".join(f"\n    stall at {a} ms: {b} ms {c}" for a, b, c in r["stalls"]))
    slow_i = sorted(range(len(lat.get("per_flip") or [])), key=lambda i: -(lat["per_flip"][i]["all_ms"] or 1e9))[:3]
    for i, ap in (res.get("api_probe") or {}).items():
        print(f"API server {i} probe writes (p50, p99 ms; in: after the status write, took: to answer, txn: "
              f"storage): {ap['writes']}; loop stalls {ap['stalls']}")
        for r in [ap["flips"][k] for k in slow_i if k < len(ap["flips"])]:
            print(f"  api {i} split (ms): writes (kind, name, in, out, txn, cache wait) {r['puts']}; "
                  f"slice fan-outs (at, ms, watchers) {r['pubs']}; gc {r['gc']}"
                  + "".join(f"\n    stall at {a} ms: {b} ms {c}" for a, b, c in r["stalls"]))
    if "etcd_db_bytes" in res:
        print(f"etcd db size: {res['etcd_db_bytes'] / 2**20:.1f} MiB")


if __name__ == "__main__":
    raise SystemExit(main())
