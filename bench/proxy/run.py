"""Service proxy benchmarks.

1. Rule sync (root): nftables and iptables (legacy and system-default variants) full sync
   of N services x M endpoints (render + apply inside a throwaway namespace
   ``sn-<id>-bench``), a second full sync over the populated table (a resync), then
   single-endpoint changes (p50/p99). Each phase is bounded.
2. Data path: the userspace proxy vs HAProxy (TCP mode, 1 thread) vs direct, nginx as the
   backend and wrk (1 thread) as the client on loopback: keep-alive small requests, bulk
   1 MiB, new connection per request. Prints ratios ours/HAProxy.

    python -m bench.proxy.run [--services 10000] [--endpoints 10] [--duration 5] [--skip-sync] [--skip-data]
                              [--modes nftables,iptables-legacy,iptables] [--limit 300] [--changes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from servicenet.api import wellknown as wk  # noqa: E402
from servicenet.proxy.model import DesiredState, ServicePortName, compute  # noqa: E402
from servicenet.proxy.render_iptables import IptablesConfig  # noqa: E402
from servicenet.proxy.render_nftables import NftConfig  # noqa: E402
from servicenet.proxy.sync import ApplyError, IptablesBackend, NftablesBackend  # noqa: E402

# -- rule sync -------------------------------------------------------------------------------------

def world(n_svc: int, n_ep: int, drop_one: bool = False) -> tuple[list[dict], list[dict]]:
    svcs, slices = [], []
    for i in range(n_svc):
        name = f"svc{i}"
        ip = f"10.{96 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"
        svcs.append({"metadata": {"namespace": "bench", "name": name},
                     "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}})
        eps = [{"addresses": [f"10.{128 + j}.{(i >> 8) & 255}.{i & 255}"], "conditions": {"ready": True},
                "nodeName": "n1"}
            for j in range(n_ep)]
        if drop_one and i == n_svc // 2:
            eps = eps[:-1]
        slices.append({"metadata": {"namespace": "bench", "name": f"{name}-x",
                                    "labels": {wk.SERVICE_NAME_LABEL: name}},
                       "addressType": "IPv4", "endpoints": eps,
                       "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    return svcs, slices


def drop_endpoint(state: DesiredState, k: int) -> tuple[DesiredState, set[ServicePortName]]:
    """``state`` with the last endpoint of the k-th service (by name) removed."""
    names = state.sorted_names()
    spn = names[k % len(names)]
    st = state.services[spn]
    st2 = replace(st, endpoints=st.endpoints[:-1], cluster=st.cluster[:-1])
    services = dict(state.services)
    services[spn] = st2
    return replace(state, services=services), {spn}


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def cpu() -> float:
    """User + system CPU seconds of this process so far (its netlink work is system time here; a
    shared machine moves this much less than wall time)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def bench_backend(name: str, backend: object, s1: DesiredState, changes: int, limit: float) -> None:
    """Full sync, then ``changes`` single-endpoint changes; each apply is bounded by ``limit`` seconds."""
    t0, c0 = time.perf_counter(), cpu()
    try:
        r = await asyncio.wait_for(backend.apply(s1, None), limit)  # type: ignore[attr-defined]
    except (TimeoutError, ApplyError) as e:
        print(f"{name:16s} full sync: >{limit:.0f}s ({type(e).__name__}); single changes not measured", flush=True)
        return
    full = time.perf_counter() - t0
    print(f"{name:16s} full sync: {full:7.2f}s (render {r.render_seconds:.2f}s, apply {r.apply_seconds:.2f}s, "
          f"{r.bytes / 1e6:.1f} MB; CPU {cpu() - c0:.2f}s)", flush=True)
    # full syncs over the populated table (what a restart or a periodic resync does): the first one
    # after the cold start, then another (nftables: what it learnt the first time is reused)
    for label in ("full resync:", "resync again:"):
        t0, c0 = time.perf_counter(), cpu()
        try:
            r = await asyncio.wait_for(backend.apply(s1, None), limit)  # type: ignore[attr-defined]
            repairs = getattr(backend, "last_repairs", None)
            print(f"{name:16s} {label:12s}{time.perf_counter() - t0:7.2f}s (render {r.render_seconds:.2f}s, "
                  f"apply {r.apply_seconds:.2f}s{'' if repairs is None else f', {repairs} repairs'}; "
                  f"CPU {cpu() - c0:.2f}s)", flush=True)
        except (TimeoutError, ApplyError) as e:
            print(f"{name:16s} {label} >{limit:.0f}s ({type(e).__name__})", flush=True)
    totals, renders, applies = [], [], []
    state, used = s1, 0.0
    deadline = time.monotonic() + limit
    for k in range(changes):
        state, changed = drop_endpoint(state, k * 7919)  # one endpoint less in a different service each time
        t0, c0 = time.perf_counter(), cpu()
        r = await asyncio.wait_for(backend.apply(state, changed), limit)  # type: ignore[attr-defined]
        totals.append(time.perf_counter() - t0)
        used += cpu() - c0
        renders.append(r.render_seconds)
        applies.append(r.apply_seconds)
        if time.monotonic() > deadline:
            break
    print(f"{name:16s} one endpoint changed x{len(totals)}: p50 {pct(totals, 50) * 1e3:7.1f} ms, "
          f"p99 {pct(totals, 99) * 1e3:7.1f} ms (render p50 {pct(renders, 50) * 1e3:.1f} ms, "
          f"apply p50 {pct(applies, 50) * 1e3:.1f} ms; CPU {used / max(1, len(totals)) * 1e3:.1f} ms each)",
          flush=True)


async def bench_sync(n_svc: int, n_ep: int, modes: list[str], limit: float, changes: int) -> None:
    if os.geteuid() != 0:
        print("rule sync: skipped (needs root)")
        return
    t = time.perf_counter()
    s1 = compute(*world(n_svc, n_ep), "n1", ["10.244.0.1"])
    print(f"model: {n_svc} services x {n_ep} endpoints computed in {time.perf_counter() - t:.2f}s", flush=True)
    for name in modes:
        ns = f"sn-{uuid.uuid4().hex[:6]}-bench"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            if name == "nftables":
                backend: object = NftablesBackend(ns, NftConfig(cluster_cidr="10.244.0.0/16"), limit)
            else:
                variant = name.removeprefix("iptables").removeprefix("-")
                backend = IptablesBackend(ns, IptablesConfig(cluster_cidr="10.244.0.0/16"), limit, variant=variant)
            await bench_backend(name, backend, s1, changes, limit)
        finally:
            subprocess.run(["ip", "netns", "del", ns], check=False)  # drops every rule with it


# -- data path -------------------------------------------------------------------------------------

def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def wait_port(ip: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((ip, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{ip}:{port} did not come up")


PROXY_SCRIPT = textwrap.dedent("""
    import asyncio, sys, uvloop
    sys.path.insert(0, {root!r})
    from servicenet.api import wellknown as wk
    from servicenet.proxy.model import compute
    from servicenet.proxy.userspace import UserspaceProxy
    vip, port, target, copy = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    svc = {{"metadata": {{"namespace": "b", "name": "web"}},
           "spec": {{"clusterIP": vip, "ports": [{{"name": "h", "port": port, "protocol": "TCP"}}]}}}}
    es = {{"metadata": {{"namespace": "b", "name": "web-x", "labels": {{wk.SERVICE_NAME_LABEL: "web"}}}},
          "addressType": "IPv4", "endpoints": [{{"addresses": ["127.0.0.1"], "conditions": {{"ready": True}}}}],
          "ports": [{{"name": "h", "port": target, "protocol": "TCP"}}]}}
    async def main():
        p = UserspaceProxy(copy=copy)
        p.apply(compute([svc], [es], "n1", ["127.0.0.1"]))
        await asyncio.Event().wait()
    uvloop.run(main())
""")


def wrk(url: str, conns: int, duration: int, close: bool) -> tuple[float, float]:
    args = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "5s"]
    if close:
        args += ["-H", "Connection: close"]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=duration + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    unit = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[m.group(2)] if m else 0  # type: ignore[union-attr]
    return rps, float(m.group(1)) * unit if m else 0.0  # type: ignore[union-attr]


def bench_data(duration: int) -> None:
    for tool in ("nginx", "haproxy", "wrk"):
        if not shutil.which(tool):
            print(f"data path: skipped ({tool} not installed)")
            return
    tmp = Path(tempfile.mkdtemp(prefix="sn-bench-"))
    tmp.chmod(0o755)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        (tmp / "www").mkdir()
        (tmp / "www" / "small.txt").write_bytes(b"x" * 100)
        (tmp / "www" / "big.bin").write_bytes(os.urandom(1 << 20))
        ngx_port, ha_port, our_port, our_port2 = free_port(), free_port(), 0, 0
        (tmp / "nginx.conf").write_text(textwrap.dedent(f"""
            worker_processes 1; daemon off; pid {tmp}/nginx.pid; error_log {tmp}/nginx.err;
            events {{ worker_connections 4096; }}
            http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
              client_body_temp_path {tmp}/cb; proxy_temp_path {tmp}/pt; fastcgi_temp_path {tmp}/ft;
              uwsgi_temp_path {tmp}/ut; scgi_temp_path {tmp}/st;
              server {{ listen 127.0.0.1:{ngx_port}; root {tmp}/www; }} }}
        """))
        (tmp / "haproxy.cfg").write_text(textwrap.dedent(f"""
            global
              nbthread 1
              maxconn 4096
            defaults
              mode tcp
              timeout connect 5s
              timeout client 30s
              timeout server 30s
            frontend f
              bind 127.0.0.1:{ha_port}
              default_backend b
            backend b
              server s1 127.0.0.1:{ngx_port}
        """))
        procs.append(subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)]))
        procs.append(subprocess.Popen(["haproxy", "-f", str(tmp / "haproxy.cfg"), "-db"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        vip = f"127.96.{os.getpid() % 200 + 20}.{os.getpid() % 250 + 2}"
        our_port, our_port2 = free_port(vip), free_port(vip)
        script = PROXY_SCRIPT.format(root=str(ROOT))
        for port, copy in ((our_port, "auto"), (our_port2, "buffer")):
            procs.append(subprocess.Popen([sys.executable, "-c", script, vip, str(port), str(ngx_port), copy]))
        for ip, port in (("127.0.0.1", ngx_port), ("127.0.0.1", ha_port), (vip, our_port), (vip, our_port2)):
            try:
                wait_port(ip, port)
            except RuntimeError:
                err = tmp / "nginx.err"
                print(err.read_text() if err.exists() else "", file=sys.stderr)
                raise
        targets = {"direct": f"127.0.0.1:{ngx_port}", "haproxy": f"127.0.0.1:{ha_port}",
                   "ours-auto": f"{vip}:{our_port}", "ours-buffer": f"{vip}:{our_port2}"}
        workloads = [("keep-alive small (32 conns)", "/small.txt", 32, False),
                     ("bulk 1 MiB (8 conns)", "/big.bin", 8, False),
                     ("new conn/request (32 conns)", "/small.txt", 32, True)]
        results: dict[tuple[str, str], tuple[float, float]] = {}
        for wname, path, conns, close in workloads:
            for tname, hp in targets.items():
                results[(wname, tname)] = wrk(f"http://{hp}{path}", conns, duration, close)
                rps, bps = results[(wname, tname)]
                print(f"{wname:30s} {tname:12s} {rps:10.0f} req/s {bps / 1e9:7.2f} GB/s", flush=True)
        print("\nratios (req/s) vs HAProxy:")
        for wname, *_ in workloads:
            ha = results[(wname, "haproxy")][0]
            parts = [f"{t}={results[(wname, t)][0] / ha:.2f}" for t in ("ours-auto", "ours-buffer", "direct")]
            print(f"  {wname:30s} " + "  ".join(parts))
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--skip-sync", action="store_true")
    ap.add_argument("--skip-data", action="store_true")
    ap.add_argument("--modes", default="nftables,iptables-legacy,iptables",
                    help="kernel modes for the sync benchmark (iptables = the system's default variant)")
    ap.add_argument("--limit", type=float, default=300.0, help="seconds allowed per phase; beyond: reported as >limit")
    ap.add_argument("--changes", type=int, default=20, help="single-endpoint changes measured after the full sync")
    args = ap.parse_args(argv)
    if not args.skip_data:
        bench_data(args.duration)
    if not args.skip_sync:
        asyncio.run(bench_sync(args.services, args.endpoints, args.modes.split(","), args.limit, args.changes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
