"""servicenet DNS vs BIND 9 on the same synthetic cluster zone, measured with dnsperf.

    .venv/bin/python bench/dns/run.py [--services 2000] [--seconds 10] [--workers 1]

Generates N services (a quarter each: ClusterIP with a named port, headless with 3
ready endpoints, StatefulSet-style headless with hostnames web-0..2, and ClusterIP with two
named ports), writes the same data as Kubernetes objects (for servicenet) and as an
authoritative zone file (for BIND), and runs the same dnsperf query file (ClusterIP A,
headless A, per-pod A, SRV, 5% NXDOMAIN; random order) against each server, without and
with EDNS (`-e`). Latency: dnsperf's average, plus p50/p99 computed from dnsperf `-v`
per-query lines (written to a file). Also measures programming latency (index update →
changed answer on the wire) and resident memory per 1,000 endpoints; then, unless
``--skip-scale``, runs ``programming.py``: API write → new answer with 10,000 Services and
100,000 endpoints loaded through a real API server, and the DNS process RSS against
CoreDNS's sizing formula (writes bench/results/dns_programming.json).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / ".venv/bin/python")
ZONE = "cluster.local"


def gen_objects(n: int) -> tuple[list[dict], list[str], list[str]]:
    """Kubernetes objects, zone-file lines, and query lines for n services."""
    objs: list[dict] = []
    zone: list[str] = []
    queries: list[str] = []
    nss = [f"ns{i}" for i in range(max(1, n // 100))]
    for ns in nss:
        objs.append({"kind": "namespaces", "object": {"metadata": {"name": ns}}})
    ep_ip = 0
    for i in range(n):
        ns = nss[i % len(nss)]
        kind = i % 4
        name = f"svc{i}"
        fq = f"{name}.{ns}.svc.{ZONE}."
        meta = {"name": name, "namespace": ns}
        if kind in (0, 3):
            ip = f"10.{96 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"
            ports = [{"name": "http", "protocol": "TCP", "port": 80}]
            if kind == 3:
                ports.append({"name": "grpc", "protocol": "TCP", "port": 9090})
            objs.append({"kind": "services", "object": {"metadata": meta,
                         "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": ports}}})
            zone.append(f"{fq} 5 IN A {ip}")
            w = 100 // len(ports)
            for p in ports:
                zone.append(f"_{p['name']}._tcp.{fq} 5 IN SRV 0 {w} {p['port']} {fq}")
            queries.append(f"{fq} A")
            queries.append(f"_http._tcp.{fq} SRV")
        else:
            objs.append({"kind": "services", "object": {"metadata": meta, "spec": {
                "clusterIP": "None", "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}}})
            eps = []
            for k in range(3):
                ep_ip += 1
                addr = f"10.{244 + (ep_ip >> 16)}.{(ep_ip >> 8) & 255}.{ep_ip & 255}"
                host = f"web-{k}" if kind == 2 else None
                ep: dict = {"addresses": [addr], "conditions": {"ready": True}}
                if host:
                    ep["hostname"] = host
                eps.append(ep)
                label = host or addr.replace(".", "-")
                zone.append(f"{fq} 5 IN A {addr}")
                zone.append(f"{label}.{fq} 5 IN A {addr}")
                zone.append(f"_http._tcp.{fq} 5 IN SRV 0 33 8080 {label}.{fq}")
                if host:
                    queries.append(f"{label}.{fq} A")
            objs.append({"kind": "endpointslices", "object": {
                "metadata": {"name": f"{name}-abc", "namespace": ns,
                             "labels": {"kubernetes.io/service-name": name}},
                "addressType": "IPv4", "endpoints": eps,
                "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}})
            queries.append(f"{fq} A")
    rnd = random.Random(1)
    nx = max(1, len(queries) // 19)  # 5% of the final mix
    queries += [f"missing{rnd.randrange(10**9)}.{rnd.choice(nss)}.svc.{ZONE}. A" for _ in range(nx)]
    rnd.shuffle(queries)
    return objs, zone, queries


def write_bind(tmp: Path, zone_lines: list[str], addr: str, port: int) -> Path:
    (tmp / "zone.db").write_text("\n".join([
        f"$ORIGIN {ZONE}.", "$TTL 5",
        f"@ 5 IN SOA ns.dns.{ZONE}. hostmaster.{ZONE}. 1 7200 1800 86400 5",
        f"@ 5 IN NS ns.dns.{ZONE}.", "ns.dns 5 IN A 127.0.0.1", *zone_lines, ""]))
    conf = tmp / "named.conf"
    conf.write_text(f"""
options {{
    directory "{tmp}";
    pid-file "{tmp}/named.pid";
    listen-on port {port} {{ {addr}; }};
    listen-on-v6 {{ none; }};
    recursion no;
    notify no;
    minimal-responses no-auth;  # answers + glue, no NS authority: like servicenet
    dnssec-validation no;
}};
controls {{ }};
zone "{ZONE}" {{ type primary; file "{tmp}/zone.db"; }};
""")
    return conf


def free_port(addr: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((addr, 0))
        return s.getsockname()[1]


def wait_answer(addr: str, port: int, name: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        r = subprocess.run(["dig", "+short", "+time=1", "+tries=1", "-p", str(port), f"@{addr}", name, "A"],
                           capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            return
        time.sleep(0.2)
    raise TimeoutError(f"{addr}:{port} never answered {name}")


LAT_RE = re.compile(r"(\S+) (\S+) ([0-9.]+)$")


def dnsperf(addr: str, port: int, qfile: Path, seconds: int, edns: bool, clients: int, threads: int,
            vfile: Path) -> dict:
    cmd = ["dnsperf", "-s", addr, "-p", str(port), "-d", str(qfile), "-l", str(seconds),
           "-c", str(clients), "-T", str(threads), "-q", "200", "-t", "2", "-v"]
    if edns:
        cmd.append("-e")
    with open(vfile, "w") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=seconds + 30, check=False)
    text = vfile.read_text()
    res: dict = {}
    for key, pat in (("qps", r"Queries per second:\s+([0-9.]+)"), ("avg_ms", r"Average Latency \(s\):\s+([0-9.]+)"),
                     ("lost", r"Queries lost:\s+(\d+)"), ("completed", r"Queries completed:\s+(\d+)")):
        m = re.search(pat, text)
        res[key] = float(m.group(1)) if m else float("nan")
    res["avg_ms"] *= 1000
    lats = []
    for line in text.splitlines():
        if line.startswith("> "):  # "> NOERROR name A 0.000123"
            try:
                lats.append(float(line.rsplit(" ", 1)[1]))
            except ValueError:
                pass
    lats.sort()
    if lats:
        res["p50_ms"] = lats[len(lats) // 2] * 1000
        res["p99_ms"] = lats[min(len(lats) - 1, int(len(lats) * 0.99))] * 1000
    rc = re.findall(r"(NOERROR|NXDOMAIN|SERVFAIL|REFUSED|FORMERR) (\d+)", text.split("Response codes:")[-1][:300])
    res["rcodes"] = {k: int(v) for k, v in rc}
    vfile.unlink()
    return res


def best(runs: list[dict]) -> dict:
    """The run with the median QPS (the upper one of an even count)."""
    return sorted(runs, key=lambda r: r["qps"])[len(runs) // 2]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def programming_latency(samples: int = 200) -> dict:
    """Index update → changed answer returned by the responder for the next query (in-process)."""
    sys.path.insert(0, str(ROOT))
    import dns.message

    from servicenet.dns.model import DnsConfig
    from servicenet.dns.records import RecordIndex
    from servicenet.dns.responder import Responder

    idx = RecordIndex(DnsConfig(forward=False))
    objs, _, _ = gen_objects(2000)
    idx.load((o["kind"], o["object"]) for o in objs)
    idx.set_synced()
    r = Responder(idx)
    q = dns.message.make_query(f"svc1.ns1.svc.{ZONE}.", "A").to_wire()
    r.handle_udp(q)
    out = []
    for i in range(samples):
        sl = {"metadata": {"name": "svc1-abc", "namespace": "ns1", "labels": {"kubernetes.io/service-name": "svc1"}},
              "addressType": "IPv4", "endpoints": [{"addresses": [f"10.250.{i // 250}.{i % 250 + 1}"]}],
              "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}
        t0 = time.perf_counter()
        idx.upsert_slice(sl)
        resp = r.handle_udp(q)
        dt = time.perf_counter() - t0
        assert f"10.250.{i // 250}.{i % 250 + 1}" in dns.message.from_wire(resp).to_text()
        out.append(dt)
    out.sort()
    return {"p50_us": out[len(out) // 2] * 1e6, "p99_us": out[int(len(out) * 0.99)] * 1e6}


def wire_programming_latency(workers: int, samples: int = 100) -> dict:
    """Watch event handed to DnsServer → new answer seen over UDP (poll), incl. worker streaming."""
    import asyncio

    sys.path.insert(0, str(ROOT))
    import dns.message

    from servicenet.dns.model import DnsConfig
    from servicenet.dns.server import DnsServer

    class Inf:
        def __init__(self) -> None:
            self.handlers: list = []
            self.items: list = []

        def add_handler(self, fn: Any) -> None:  # replays what exists, like the real informer
            self.handlers.append(fn)
            for obj in self.items:
                fn("ADDED", obj, None)

        def list(self) -> list:
            return self.items

    class Factory:
        def __init__(self) -> None:
            self.infs: dict[str, Inf] = {}

        def informer(self, api: str, plural: str) -> Inf:
            return self.infs.setdefault(plural, Inf())

        async def start(self) -> None: ...
        async def wait_synced(self) -> None: ...
        async def stop(self) -> None: ...

    async def run() -> dict:
        f = Factory()
        objs, _, _ = gen_objects(2000)
        for o in objs:
            f.informer("", o["kind"]).items.append(o["object"])
        server = DnsServer(informers=f, config=DnsConfig(forward=False), listen=[("127.0.0.1", 0)],
                           workers=workers)
        await server.start()
        await server.wait_ready()
        port = server.bound[0][2]
        loop = asyncio.get_running_loop()
        socks = []
        for _ in range(8):  # several sockets so every worker process is asked
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setblocking(False)
            s.connect(("127.0.0.1", port))
            socks.append(s)
        out = []
        try:
            for i in range(samples):
                ip = f"10.251.{i // 250}.{i % 250 + 1}"
                sl = {"metadata": {"name": "svc1-abc", "namespace": "ns1",
                                   "labels": {"kubernetes.io/service-name": "svc1"}},
                      "addressType": "IPv4", "endpoints": [{"addresses": [ip]}],
                      "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}
                t0 = time.perf_counter()
                for fn in f.informer("", "endpointslices").handlers:
                    fn("MODIFIED", sl, None)
                for s in socks:  # every socket must see the new answer
                    q = dns.message.make_query("svc1.ns1.svc.cluster.local.", "A")
                    while True:
                        await loop.sock_sendall(s, q.to_wire())
                        m = dns.message.from_wire(await loop.sock_recv(s, 4096))
                        if any(rd.address == ip for rrs in m.answer for rd in rrs):
                            break
                out.append(time.perf_counter() - t0)
        finally:
            for s in socks:
                s.close()
            await server.stop()
        out.sort()
        return {"workers": workers, "p50_ms": round(out[len(out) // 2] * 1e3, 3),
                "p99_ms": round(out[int(len(out) * 0.99)] * 1e3, 3)}

    return asyncio.run(run())


MEM_SCRIPT = """
import gc, sys, tracemalloc
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
import run
from servicenet.dns.model import DnsConfig
from servicenet.dns.records import RecordIndex
from servicenet.dns.responder import Responder
import dns.message
objs, _, queries = run.gen_objects({n})
gc.collect()
tracemalloc.start()
idx = RecordIndex(DnsConfig(forward=False))
idx.load((o["kind"], o["object"]) for o in objs)
idx.set_synced()
r = Responder(idx)
for line in queries:  # fill the answer cache too
    name, qtype = line.split()
    r.handle_udp(dns.message.make_query(name, qtype).to_wire())
del objs, queries
gc.collect()
cur, _ = tracemalloc.get_traced_memory()
print(cur, sum(len(s.endpoints) for s in idx.slices.values()), len(idx.services))
"""


def memory_per_1000_endpoints(services: int = 20000) -> dict:
    """Bytes the index + warm answer cache retain (tracemalloc, source objects freed)."""
    code = MEM_SCRIPT.format(root=str(ROOT), bench=str(ROOT / "bench/dns"), n=services)
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout.split()
    total, endpoints, svcs = int(out[0]), int(out[1]), int(out[2])
    return {"services": svcs, "endpoints": endpoints, "retained_mb": round(total / 2**20, 1),
            "kb_per_1000_endpoints_incl_their_services_and_answers": round(total / 1024 / endpoints * 1000)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-scale", action="store_true",
                    help="skip programming latency + RSS through the real API (bench/dns/programming.py)")
    ap.add_argument("--scale-services", type=int, default=10000,
                    help="Services (each with a 10-endpoint EndpointSlice) for the at-scale run")
    args = ap.parse_args()
    objs, zone_lines, queries = gen_objects(args.services)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="sn-dnsbench-") as td:
        tmp = Path(td)
        os.chmod(tmp, 0o755)
        qfile = tmp / "queries.txt"
        qfile.write_text("\n".join(queries) + "\n")
        (tmp / "objects.json").write_text(json.dumps(objs))
        probe = next(q.split()[0] for q in queries if q.endswith(" A") and not q.startswith("missing"))
        servers = {
            "bind": ("127.0.0.1", lambda a, p: [
                "named", "-g", "-4", "-n", str(args.workers), "-U", "1", "-c", str(write_bind(tmp, zone_lines, a, p))]),
            "servicenet": ("127.0.0.1", lambda a, p: [
                PY, str(ROOT / "bench/dns/serve.py"), str(tmp / "objects.json"), "--listen", f"{a}:{p}",
                "--workers", str(args.workers)]),
        }
        procs = []
        ports = {}
        try:
            for name, (addr, cmd) in servers.items():  # both run all along; only one is queried at a time
                ports[name] = free_port(addr)
                procs.append(subprocess.Popen(cmd(addr, ports[name]), stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, cwd=ROOT, start_new_session=True,
                                              env={**os.environ, "PYTHONPATH": str(ROOT)}))
                wait_answer(addr, ports[name], probe, time.monotonic() + 60)
            for edns in (False, True):
                for rep in range(args.repeat):  # alternate servers so background load hits both alike
                    for name, (addr, _) in servers.items():
                        r = dnsperf(addr, ports[name], qfile, args.seconds, edns, args.clients, args.threads,
                                    tmp / f"v-{name}-{edns}.txt")
                        results.setdefault((name, edns), []).append(r)
                        print(f"{name:10s} edns={edns!s:5s} run={rep} qps={r['qps']:9.0f} avg={r['avg_ms']:.3f}ms "
                              f"p50={r.get('p50_ms', float('nan')):.3f}ms p99={r.get('p99_ms', float('nan')):.3f}ms "
                              f"lost={r['lost']:.0f} rcodes={r['rcodes']}", flush=True)
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        for edns in (False, True):
            ours, bind = best(results[("servicenet", edns)]), best(results[("bind", edns)])
            print(f"median (upper) of {args.repeat} runs, edns={edns!s:5s}: servicenet {ours['qps']:.0f} qps "
                  f"(avg {ours['avg_ms']:.3f} ms, p99 {ours.get('p99_ms', 0):.3f} ms) vs BIND {bind['qps']:.0f} qps "
                  f"(avg {bind['avg_ms']:.3f} ms, p99 {bind.get('p99_ms', 0):.3f} ms) -> ratio "
                  f"{ours['qps'] / bind['qps']:.2f}x")
        print("programming latency (index update -> new answer, in-process):", programming_latency())
        print("programming latency (watch event -> new answer on 8 UDP sockets):",
              wire_programming_latency(args.workers))
        if not args.skip_memory:
            print("memory:", memory_per_1000_endpoints())
    print(f"services={args.services} queries={len(queries)} workers={args.workers} "
          f"dnsperf -c {args.clients} -T {args.threads} -q 200 -l {args.seconds}")
    if not args.skip_scale:
        import programming  # bench/dns/programming.py (this script's directory is on sys.path)

        print("\nat scale, through the real API server (separate apiserver and dns processes):", flush=True)
        programming.main(["--services", str(args.scale_services)])


if __name__ == "__main__":
    main()
