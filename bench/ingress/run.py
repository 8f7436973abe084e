"""Ingress benchmark: servicenet's ingress (controller + HAProxy) beside nginx configured by hand as in
the walkthrough's nginx.conf, same backends (an nginx application server), same TLS certificate,
same client (wrk, 1 thread), one after the other in the same run.

1. Data path: requests/s and p99 for small responses over HTTPS keep-alive and over HTTP; new TLS
   connections per second (``Connection: close``); 1 MiB transfer throughput; memory (RSS).
2. Scale: with N Ingresses and M endpoints in the API, the time from an API write to traffic
   following it: a new Ingress answering, an endpoint removed from rotation (p50/p99).

    python -m bench.ingress.run [--duration 5] [--ingresses 1000] [--endpoints 10000] [--samples 20]
                                [--skip-data] [--skip-scale]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import gc
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.ingress.peers import (  # noqa: E402
    BACKEND_CONF,
    PROXY_CONF,
    Nginx,
    children,
    cpu_seconds,
    rss_mb,
    wait_port,
    write_1m,
    wrk,
)
from servicenet.ingress.certs import self_signed  # noqa: E402
from servicenet.ingress.controller import IngressConfig, IngressController  # noqa: E402
from servicenet.testing import running_apiserver  # noqa: E402
from tests.ingress.harness import free_port  # noqa: E402
from tests.ingress.objects import CLASS, ingress, path, rule, service, slice_  # noqa: E402

HOST = "bbs.test.com"


def _secret(pem: bytes) -> dict[str, Any]:
    crt, key = pem.split(b"-----BEGIN PRIVATE KEY-----")
    key = b"-----BEGIN PRIVATE KEY-----" + key
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "bbs-tls", "namespace": "default"},
            "data": {"tls.crt": base64.b64encode(crt).decode(), "tls.key": base64.b64encode(key).decode()}}


def _bbs() -> dict[str, Any]:
    return ingress("bbs", [rule(HOST, path("/", "ui", 8001), path("/api", "api", 8004), path("/signin", "api", 8004),
                                path("/signout", "api", 8004))],
                   tls=[{"hosts": [HOST], "secretName": "bbs-tls"}],
                   annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "200m",
                                "nginx.ingress.kubernetes.io/proxy-read-timeout": "300",
                                "nginx.ingress.kubernetes.io/proxy-send-timeout": "300",
                                "nginx.ingress.kubernetes.io/ssl-redirect": "false"})


async def data_path(ctl: IngressController, nginx: Nginx, ports: dict[str, int], duration: float,
                    rounds: int, only: list[str] | None = None, perf_dir: str = "") -> dict[str, Any]:
    """Each case ``rounds`` times, the two sides interleaved (A B, then B A, ...) so that the other
    load on the machine falls on both; the ratio of each round, and their median."""
    assert ctl.haproxy is not None and ctl.haproxy.proc is not None
    sides = {"servicenet": (ctl.cfg.http_port, ctl.cfg.https_port), "nginx": (ports["nx_http"], ports["nx_https"])}
    host = f"Host: {HOST}"
    cases = [("HTTPS keep-alive small", "https://127.0.0.1:{s}/api/x", 32, (host,), "rps"),
             ("HTTP keep-alive small", "http://127.0.0.1:{p}/api/x", 32, (host,), "rps"),
             ("new TLS connections", "https://127.0.0.1:{s}/api/x", 32, (host, "Connection: close"), "rps"),
             ("1 MiB over HTTPS", "https://127.0.0.1:{s}/1m", 8, (host,), "bps")]
    ha_pids = [ctl.haproxy.proc.pid, *children(ctl.haproxy.proc.pid)]
    out: dict[str, Any] = {}
    print(f"\n{'case':<26}{'servicenet':>22}{'nginx':>22}{'ratio':>8}   (median of {rounds} interleaved rounds)")
    for name, url, conns, headers, key in cases:
        if only and not any(o in name for o in only):
            continue
        runs: list[dict[str, Any]] = []
        for p, s in sides.values():  # warm both (backend connections, TLS tickets, caches), unmeasured
            await asyncio.to_thread(wrk, url.format(p=p, s=s), conns, 1, *headers)
        for k in range(rounds):
            res = {}
            for side in (list(sides) if k % 2 == 0 else list(sides)[::-1]):
                p, s = sides[side]
                pids = ha_pids if side == "servicenet" else nginx.pids()
                c0, py0, log0 = cpu_seconds(pids), time.process_time(), ctl.access.cpu_seconds
                rec = None
                if perf_dir:  # a profile of the proxy's processes while wrk runs (perf report -i ...)
                    out_file = f"{perf_dir}/{side}-{name.replace(' ', '_')}-{k}.data"
                    rec = subprocess.Popen(["perf", "record", "-q", "-F", "1999", *os.environ.get("BENCH_PERF_OPTS", "-g").split(), "-o", out_file,
                                            "-p", ",".join(map(str, pids))], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
                res[side] = await asyncio.to_thread(wrk, url.format(p=p, s=s), conns, duration, *headers)
                if rec is not None:
                    rec.send_signal(signal.SIGINT)
                    await asyncio.to_thread(rec.wait, 30)
                # CPU per request: the proxy's processes, and for servicenet also this process's share
                # (the controller turning access-log lines into metrics; wrk runs in another process)
                py = time.process_time() - py0 if side == "servicenet" else 0.0
                cpu = cpu_seconds(pids) - c0 + py
                n = res[side]["rps"] * duration
                res[side]["cpu_us_per_req"] = 1e6 * cpu / max(n, 1)
                res[side]["python_us_per_req"] = 1e6 * py / max(n, 1)
                res[side]["log_us_per_req"] = 1e6 * (ctl.access.cpu_seconds - log0) / max(n, 1)
            res["ratio"] = res["servicenet"][key] / max(res["nginx"][key], 1e-9)
            res["cpu_ratio"] = res["nginx"]["cpu_us_per_req"] / max(res["servicenet"]["cpu_us_per_req"], 1e-9)
            runs.append(res)
        ratios = sorted(r["ratio"] for r in runs)
        cpu_ratios = sorted(r["cpu_ratio"] for r in runs)
        res = sorted(runs, key=lambda r: r["ratio"])[len(runs) // 2]  # the median round
        out[name] = {"rounds": runs, "median_ratio": res["ratio"], "min_ratio": ratios[0], "max_ratio": ratios[-1],
                     "median_cpu_ratio": cpu_ratios[len(cpu_ratios) // 2]}
        unit = (lambda r: f"{r['bps'] / 1e9:.2f} GB/s") if key == "bps" else (lambda r: f"{r['rps']:,.0f} req/s")
        cells = [f"{unit(res[x])} p99 {res[x]['p99_ms']:.1f}ms" + (f" ERR {res[x]['errors']}" if res[x]["errors"]
                                                                     else "") for x in sides]
        print(f"{name:<26}{cells[0]:>22}{cells[1]:>22}{res['ratio']:>7.2f}x   "
              f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})")
        print(f"{'  wrk CPU (of one core)':<26}{res['servicenet']['wrk_cpu']:>22.2f}{res['nginx']['wrk_cpu']:>22.2f}")
        print(f"{'  CPU per request':<26}{res['servicenet']['cpu_us_per_req']:>19.1f} us"
              f"{res['nginx']['cpu_us_per_req']:>19.1f} us{cpu_ratios[len(cpu_ratios) // 2]:>7.2f}x   "
              f"(nginx / servicenet; rounds {', '.join(f'{r:.2f}' for r in cpu_ratios)}; "
              f"of servicenet's, the controller's Python {res['servicenet']['python_us_per_req']:.1f} us, "
              f"its access-log reader {res['servicenet']['log_us_per_req']:.1f} us)")
    ha_pids = [ctl.haproxy.proc.pid, *children(ctl.haproxy.proc.pid)]
    out["memory_mb"] = {"haproxy": rss_mb(ha_pids), "nginx": rss_mb(nginx.pids()),
                        "controller+apiserver python": rss_mb([os.getpid()])}
    m = out["memory_mb"]
    print(f"{'memory (RSS)':<26}{m['haproxy']:>18.1f} MB{m['nginx']:>19.1f} MB"
          f"{m['haproxy'] / max(m['nginx'], 1e-9):>7.2f}x   (+ controller and API server process "
          f"{m['controller+apiserver python']:.0f} MB)")
    return out


async def _get(sess: aiohttp.ClientSession, port: int, host: str) -> tuple[int, str]:
    async with sess.get(f"http://127.0.0.1:{port}/", headers={"Host": host}) as r:
        return r.status, await r.text()


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


async def scale(api: Any, ctl: IngressController, ports: dict[str, int], n_ing: int, n_ep: int,
                samples: int) -> dict[str, Any]:
    c = api.client
    per = max(1, n_ep // max(n_ing, 1))
    sem = asyncio.Semaphore(16)

    async def one(i: int) -> None:
        async with sem:
            await c.create("v1", "services", "default", service(f"b{i}", [("http", 80)]))
            eps = [f"127.{1 + (i * per + j) // 65536}.{((i * per + j) // 256) % 256}.{(i * per + j) % 256}"
                   for j in range(per)]
            await c.create("discovery.k8s.io/v1", "endpointslices", "default",
                           slice_(f"b{i}", eps, [("http", ports["b1"])]))
            await c.create("networking.k8s.io/v1", "ingresses", "default",
                           ingress(f"b{i}", [rule(f"h{i}.bench", path("/", f"b{i}"))],
                                   annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"}))

    t0 = time.monotonic()
    await asyncio.gather(*(one(i) for i in range(n_ing)))
    t_write = time.monotonic() - t0
    while len(ctl.table.ingresses) < n_ing + 1:
        await asyncio.sleep(0.05)
    await ctl.wait_applied(300)
    t_all = time.monotonic() - t0
    t1 = time.monotonic()
    while ctl._report_task is not None and not ctl._report_task.done():  # the first status writes
        await asyncio.sleep(0.05)
    t_status = time.monotonic() - t1
    n_servers = sum(len(u.endpoints) for u in ctl.table.upstreams)
    print(f"\nscale: {n_ing} Ingresses, {n_servers} endpoints in HAProxy: API writes {t_write:.1f} s, "
          f"programmed {t_all:.1f} s after the first write; their status written {t_status:.1f} s later")
    port = ctl.cfg.http_port
    seen: dict[str, float] = {}  # Ingress name -> when the controller's informer delivered it
    applied: dict[str, float] = {}  # -> when the sync that follows finished
    orig_on_event, orig_sync = ctl._on_event, ctl.sync

    def on_event(etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if obj.get("kind") == "Ingress":
            seen.setdefault(obj["metadata"]["name"], time.monotonic())
        orig_on_event(etype, obj, old)

    prof = cProfile.Profile() if os.environ.get("BENCH_PROFILE_SYNC") else None

    async def sync() -> None:
        pending = [n for n in seen if n not in applied]
        if prof is not None:
            prof.enable()
        try:
            await orig_sync()
        finally:
            if prof is not None:
                prof.disable()
        for n in pending:
            applied[n] = time.monotonic()
    phases: dict[str, list[float]] = {}

    def timed(obj: Any, name: str) -> None:  # how long each step of a sync takes (wall clock)
        fn = getattr(obj, name)

        async def awrap(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return await fn(*a, **k)
            finally:
                phases.setdefault(name, []).append(1000 * (time.perf_counter() - t))

        def wrap(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                phases.setdefault(name, []).append(1000 * (time.perf_counter() - t))
        setattr(obj, name, awrap if asyncio.iscoroutinefunction(fn) else wrap)
    for name in ("_compile", "_retain", "_commit", "_after_apply", "_ingresses_only", "_endpoints_only"):
        timed(ctl, name)
    assert ctl.haproxy is not None
    timed(ctl.haproxy, "commands")
    ctl._on_event = on_event  # type: ignore[method-assign]
    ctl.sync = sync  # type: ignore[method-assign]
    for inf in (ctl.ingresses,):
        inf._handlers = [on_event if h == orig_on_event else h for h in inf._handlers]
    parts: list[tuple[float, float, float]] = []
    route_ms: list[float] = []
    ep_ms: list[float] = []
    def syncs() -> dict[str, float]:
        return {h: ctl.registry.get_sample_value("servicenet_ingress_syncs_total", {"how": h}) or 0.0
                for h in ("patch", "runtime", "reload", "noop")}
    syncs0, gc0 = syncs(), [g["collections"] for g in gc.get_stats()]
    before, kinds = syncs0, []  # each new-route sample: how the syncs meanwhile were applied
    async with aiohttp.ClientSession() as sess:
        for k in range(samples):
            body = ingress(f"new{k}", [rule(f"new{k}.bench", path("/", "ui", 8001))],
                           annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"})
            t0 = time.monotonic()
            await c.create("networking.k8s.io/v1", "ingresses", "default", body)
            while (await _get(sess, port, f"new{k}.bench"))[0] != 200:
                await asyncio.sleep(0.001)
            route_ms.append(1000 * (time.monotonic() - t0))
            kinds.append(",".join(f"{h}+{int(v - before[h])}" for h, v in syncs().items() if v != before[h]))
            before = syncs()
            if f"new{k}" in seen and f"new{k}" in applied:
                parts.append((1000 * (seen[f"new{k}"] - t0), 1000 * (applied[f"new{k}"] - seen[f"new{k}"]),
                              route_ms[-1]))
        how = {h: int(v - syncs0[h]) for h, v in syncs().items()}
        gcs = [g["collections"] - c for g, c in zip(gc.get_stats(), gc0, strict=True)]
        print(f"  during the {samples} new routes: syncs by kind {how}; garbage collections by generation {gcs}")
        slow = [(k, round(ms, 1), kinds[k]) for k, ms in enumerate(route_ms) if ms > 50]
        print(f"  samples over 50 ms (index, ms, the syncs meanwhile): {slow}")
        await c.create("v1", "services", "default", service("probe", [("http", 80)]))
        await c.create("networking.k8s.io/v1", "ingresses", "default",
                       ingress("probe", [rule("probe.bench", path("/", "probe"))],
                               annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"}))
        sl = await c.create("discovery.k8s.io/v1", "endpointslices", "default",
                            slice_("probe", ["127.0.0.1"], [("http", ports["b1"])]))
        for _ in range(samples):
            # two endpoints (the backend answers with the address it was reached on), both in rotation
            sl["endpoints"] = [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}},
                               {"addresses": ["127.0.0.2"], "conditions": {"ready": True}}]
            sl = await c.update("discovery.k8s.io/v1", "endpointslices", "default", sl["metadata"]["name"], sl)
            while "127.0.0.2" not in (await _get(sess, port, "probe.bench"))[1]:
                await asyncio.sleep(0.001)
            await ctl.wait_applied(30)
            # 127.0.0.2 turns NotReady: time until it no longer answers (10 answers in a row from .1)
            sl["endpoints"] = [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}},
                               {"addresses": ["127.0.0.2"], "conditions": {"ready": False}}]
            t0 = time.monotonic()
            sl = await c.update("discovery.k8s.io/v1", "endpointslices", "default", sl["metadata"]["name"], sl)
            streak, t_first = 0, 0.0
            while streak < 10:
                code, text = await _get(sess, port, "probe.bench")
                if code != 200 or "127.0.0.1" not in text:
                    streak = 0
                    continue
                if streak == 0:
                    t_first = time.monotonic()
                streak += 1
            ep_ms.append(1000 * (t_first - t0))
        reload_ms: list[float] = []
        for k in range(max(2, samples // 5)):  # a new Service too: a new backend, which is structural
            await c.create("v1", "services", "default", service(f"newsvc{k}", [("http", 80)]))
            await c.create("discovery.k8s.io/v1", "endpointslices", "default",
                           slice_(f"newsvc{k}", ["127.0.0.1"], [("http", ports["b1"])]))
            await ctl.wait_applied(60)
            t0 = time.monotonic()
            await c.create("networking.k8s.io/v1", "ingresses", "default",
                           ingress(f"newsvc{k}", [rule(f"newsvc{k}.bench", path("/", f"newsvc{k}"))],
                                   annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"}))
            while (await _get(sess, port, f"newsvc{k}.bench"))[0] != 200:
                await asyncio.sleep(0.002)
            reload_ms.append(1000 * (time.monotonic() - t0))
    res = {"ingresses": n_ing, "endpoints": n_servers,
           "route_new_service_ms": {"p50": _pct(reload_ms, 0.5), "max": max(reload_ms)},
           "route_ms": {"p50": _pct(route_ms, 0.5), "p90": _pct(route_ms, 0.9), "p99": _pct(route_ms, 0.99),
                        "samples": sorted(round(x, 1) for x in route_ms)},
           "endpoint_ms": {"p50": _pct(ep_ms, 0.5), "p90": _pct(ep_ms, 0.9), "p99": _pct(ep_ms, 0.99),
                           "samples": sorted(round(x, 1) for x in ep_ms)},
           "route_parts_ms": [(round(a, 1), round(b, 1)) for a, b, _ in parts],
           "route_ms_in_order": [(round(x, 1), kd) for x, kd in zip(route_ms, kinds, strict=True)]}
    print(f"API write -> traffic, new route:        p50 {res['route_ms']['p50']:.0f} ms  p90 "
          f"{res['route_ms']['p90']:.0f} ms  p99 {res['route_ms']['p99']:.0f} ms  (goal p99 <= 100 ms; "
          f"ingress-nginx reloads take seconds); over 100 ms: {sum(x > 100 for x in route_ms)} of {len(route_ms)}")
    print(f"API write -> traffic, new route to a new Service (a reload): p50 {res['route_new_service_ms']['p50']:.0f} ms"
          f"  max {res['route_new_service_ms']['max']:.0f} ms")
    print("  sync steps, p50/max ms: " + ", ".join(f"{k} {_pct(v, 0.5):.1f}/{max(v):.1f} (n={len(v)})"
                                                 for k, v in phases.items()))
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumtime").print_stats(30)
    if parts:
        print(f"  new route, p50 of its parts: API write -> informer {_pct([p[0] for p in parts], 0.5):.0f} ms, "
              f"informer -> applied {_pct([p[1] for p in parts], 0.5):.0f} ms (p99 "
              f"{_pct([p[1] for p in parts], 0.99):.0f} ms)")
    print(f"API write -> traffic, endpoint removed: p50 {res['endpoint_ms']['p50']:.1f} ms  p90 "
          f"{res['endpoint_ms']['p90']:.1f} ms  p99 {res['endpoint_ms']['p99']:.1f} ms  (goal p99 <= 50 ms); "
          f"over 50 ms: {sum(x > 50 for x in ep_ms)} of {len(ep_ms)}")
    return res


async def main(args: argparse.Namespace) -> None:
    load0 = os.getloadavg()
    d = Path(tempfile.mkdtemp(prefix="sn-bench-ingress-"))
    ports = {k: free_port() for k in ("b1", "b2", "nx_http", "nx_https")}
    write_1m(d)
    pem = self_signed(HOST, (HOST,))
    (d / "tls.pem").write_bytes(pem)
    (d / "tls.pem").chmod(0o600)
    backend = Nginx(d, "backend", BACKEND_CONF.format(d=d, port=ports["b1"], port2=ports["b2"]))
    conf = PROXY_CONF.format(d=d, workers=args.workers, ui=ports["b1"], api=ports["b1"], https=ports["nx_https"],
                             http=ports["nx_http"])
    if args.nginx_no_log:
        conf = conf.replace(f"access_log {d}/proxy-access.log;", "access_log off;")
    proxy = Nginx(d, "proxy", conf)
    results: dict[str, Any] = {}
    backend.start()
    proxy.start()
    try:
        wait_port(ports["b1"])
        wait_port(ports["nx_https"])
        async with running_apiserver(d / "api") as api:
            c = api.client
            await c.create("networking.k8s.io/v1", "ingressclasses", None, CLASS)
            for name, sport in (("ui", 8001), ("api", 8004)):
                await c.create("v1", "services", "default", service(name, [("http", sport)]))
                await c.create("discovery.k8s.io/v1", "endpointslices", "default",
                               slice_(name, ["127.0.0.1"], [("http", ports["b1"])]))
            await c.create("v1", "secrets", "default", _secret(pem))
            await c.create("networking.k8s.io/v1", "ingresses", "default", _bbs())
            client = api.new_client()
            ctl = IngressController(client, IngressConfig(state_dir=d / "ingress", http_port=free_port(),
                                                          https_port=free_port(),
                                                          access_log=not args.no_access_log,
                                                          haproxy_global=(f"nbthread {args.workers}",
                                                                          *args.haproxy_global)))
            await ctl.start()
            try:
                while not ctl.table.certs:
                    await asyncio.sleep(0.05)
                await ctl.wait_applied(30)
                if not args.skip_data:
                    results["data"] = await data_path(ctl, proxy, ports, args.duration, args.rounds, args.case,
                                                      args.perf)
                if not args.skip_scale:
                    results["scale"] = await scale(api, ctl, ports, args.ingresses, args.endpoints, args.samples)
            finally:
                await ctl.stop()
                await client.close()
    finally:
        proxy.stop()
        backend.stop()
    results["machine"] = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
                          "load_avg_at_start": load0, "load_avg_at_end": os.getloadavg()}
    out = ROOT / "bench" / "results" / args.out
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"\nresults: {out} (load average {load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=float, default=5)
    p.add_argument("--ingresses", type=int, default=1000)
    p.add_argument("--endpoints", type=int, default=10000)
    p.add_argument("--samples", type=int, default=20)
    p.add_argument("--skip-data", action="store_true")
    p.add_argument("--skip-scale", action="store_true")
    p.add_argument("--no-access-log", action="store_true", help="run the ingress without its access log")
    p.add_argument("--case", action="append", help="only the data-path cases whose name holds this")
    p.add_argument("--workers", type=int, default=2, help="nginx worker_processes = HAProxy nbthread")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per data-path case")
    p.add_argument("--haproxy-global", action="append", default=[], help="an extra HAProxy global line")
    p.add_argument("--out", default="ingress.json", help="file name under bench/results/")
    p.add_argument("--perf", default="", help="a directory: record a perf profile of each proxy during each run")
    p.add_argument("--nginx-no-log", action="store_true", help="nginx without its access log")
    asyncio.run(main(p.parse_args()))
