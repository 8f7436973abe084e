"""API server benchmark: durable create rate, write latency, watch fan-out, LIST, memory.

    .venv/bin/python bench/api/run.py [--quick] [--only PHASES] [--profile] [--workdir DIR]
    .venv/bin/python -m bench.api.run ...

The server runs as its own process (``python -m servicenet.cli apiserver``, SQLite storage, HTTPS +
bearer token, uvloop); clients run in other processes with cheap keep-alive connections
(bench/api/conn.py), so client and server never share an event loop:

1. creates: 10,000 pods (1.5 KB sent, 2.2 KB stored + 2.3 KB of managedFields) with JSON bodies,
   10,000 more with protobuf bodies (``application/vnd.kubernetes.protobuf``, as client-go's typed
   clients send them, answered in protobuf), and 10,000 ConfigMaps, closed loop from ``--client-procs`` processes x ``--conns`` connections each (64
   writes in flight: enough for the store's group commit to batch); compared with a raw sqlite3
   loop (WAL, synchronous=FULL, one row per commit) in the same directory, measured before and
   after the create phases (the disk is shared and its fsync rate drifts).
2. write latency: ConfigMap creates sent open-loop at a steady 500/s (one process, a pool of
   connections); latency from the request write, and from the scheduled send time.
3. watch delivery: 100 watch streams (two processes) on a namespace; a third process creates
   ConfigMaps at 100/s, each stamped with the monotonic clock (shared by every process) just
   before sending; latency = receive - send, and receive - acknowledgement.
4. LIST of the 10,000 pods on a blocking connection (time to last byte): plain JSON, and as
   kubectl asks (Table Accept header, limit=500 pages following ``continue``).
5. memory: a state.db written directly with the store's API by a helper process (150,000 pods
   and 10,000 services, templates taken from objects the server stored), a fresh server started on
   it; RSS after startup and after LISTs (one namespace, then all pods unpaged).

Every phase has a deadline; --quick (smaller) runs in about a minute, the full run in 2-3 minutes.
``--profile`` attaches py-spy (``pip install py-spy``) to the server during the create and watch phases and
writes collapsed stacks to bench/results/; summarise them with ``python -m bench.api.profile_summary``.
Results: a summary table on stdout and bench/results/api.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository importable
    # (replacing the script's own directory, whose modules must not shadow top-level names)
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import orjson  # noqa: E402

from bench.api import load, objects, preload  # noqa: E402
from bench.api.conn import Conn, HttpError, SyncConn, Target  # noqa: E402
from bench.api.server_proc import ROOT, ServerProc  # noqa: E402
from bench.store_raw import raw_sqlite_insert_rate  # noqa: E402

MiB = 1024 * 1024
TABLE_ACCEPT = ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;"
                "g=meta.k8s.io,application/json")
CTX = mp.get_context("fork")
CONTINUE = re.compile(rb'"continue":"([^"]+)"')
PHASES = ["creates", "steady", "watch", "list", "memory"]


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def ms(x: float) -> float:
    return round(x * 1000, 2)


# ----------------------------------------------------------------------------- child-process plumbing
def _child(q: Any, fn: Any, args: tuple[Any, ...]) -> None:
    try:
        q.put(("ok", fn(*args)))
    except BaseException as exc:  # report, never hang the parent
        q.put(("err", repr(exc)))


class Child:
    def __init__(self, fn: Any, *args: Any) -> None:
        self.q = CTX.Queue()
        self.p = CTX.Process(target=_child, args=(self.q, fn, args), daemon=True)
        self.p.start()

    def result(self, timeout: float) -> Any:
        try:
            status, value = self.q.get(timeout=max(0.1, timeout))
        except Exception:
            self.p.kill()
            raise TimeoutError(f"client process did not finish within {timeout:.0f}s") from None
        self.p.join(5)
        if status != "ok":
            raise RuntimeError(f"client process failed: {value}")
        return value


def run_children(specs: list[tuple[Any, tuple[Any, ...]]], timeout: float) -> list[Any]:
    kids = [Child(fn, *args) for fn, args in specs]
    deadline = time.monotonic() + timeout
    try:
        return [k.result(deadline - time.monotonic()) for k in kids]
    finally:
        for k in kids:
            if k.p.is_alive():
                k.p.kill()


# --------------------------------------------------------------------------------------- small client
async def _api(target: Target, fn: Any) -> Any:
    c = await Conn.open(target, target.ssl_context())
    try:
        return await fn(c)
    finally:
        c.close()


def api(target: Target, fn: Any) -> Any:
    return asyncio.run(_api(target, fn))


def ensure_namespaces(target: Target, names: list[str]) -> None:
    """Create the namespaces ``names``; one that exists already is fine."""
    async def go(c: Conn) -> None:
        for n in names:
            try:
                await c.request("POST", "/api/v1/namespaces", orjson.dumps(objects.namespace(n)))
            except HttpError as e:
                if e.status != 409:
                    raise
    api(target, go)


# -------------------------------------------------------------------------------------------- phases
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.work = Path(args.workdir or tempfile.mkdtemp(prefix="sn-api-bench-"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.results: dict[str, Any] = {"quick": self.quick, "workdir": str(self.work)}
        self.rows: list[tuple[str, str, str, str]] = []
        self.server: ServerProc | None = None

    def row(self, name: str, value: float, unit: str, target: float | None, higher_better: bool) -> None:
        if target is None:
            verdict = "-"
        elif math.isnan(value):
            verdict = "MISS"
        else:
            verdict = "PASS" if (value >= target if higher_better else value <= target) else "MISS"
        tgt = "-" if target is None else (">= " if higher_better else "<= ") + f"{target:g} {unit}"
        self.rows.append((name, f"{value:,.1f} {unit}", tgt, verdict))
        self.results.setdefault("summary", []).append(
            {"figure": name, "value": value, "unit": unit, "target": target,
             "higher_is_better": higher_better, "verdict": verdict})

    def log(self, msg: str) -> None:
        load1 = os.getloadavg()[0]
        self.results.setdefault("loadavg_log", []).append([time.strftime("%H:%M:%S"), round(load1, 2), msg[:60]])
        print(f"[{time.strftime('%H:%M:%S')} load {load1:4.1f}] {msg}", flush=True)

    # -- 0: raw sqlite baseline
    def raw_baseline(self, when: str = "before") -> float:
        """The disk's durable single-row commit rate (its fsync rate); the disk is shared, so it is
        measured just before the create phases and again after them."""
        n = 1000 if self.quick else 3000
        rate = raw_sqlite_insert_rate(str(self.work / "raw.db"), n=n, batch=1)
        self.results[f"raw_sqlite_rows_per_s_{when}"] = rate
        self.log(f"raw sqlite3 (WAL, synchronous=FULL, 1 row/commit), {when} the creates: {rate:,.0f} rows/s")
        return rate

    # -- 1: create throughput
    def creates(self, target: Target, kind: str, namespace: str, n: int) -> dict[str, Any]:
        procs, conns = self.args.client_procs, self.args.conns
        names = [f"{kind.removesuffix('-protobuf')[:-1]}-{i:05d}" for i in range(n)]
        share = [names[k::procs] for k in range(procs)]
        start_at = time.monotonic() + 1.5
        deadline = start_at + (40 if self.quick else 90)
        cpu0 = self.server.cpu() if self.server else 0.0
        loop0 = self.server.loop_cpu() if self.server else 0.0
        prof = self.start_profile(f"create-{kind}") if self.args.profile else None
        outs = run_children([(load.create_burst, (target, kind, namespace, share[k], conns, start_at, deadline))
                             for k in range(procs)], timeout=deadline - time.monotonic() + 30)
        if prof is not None:
            self.stop_profile(prof)
        done = sum(o["done"] for o in outs)
        t0 = min(o["t0"] for o in outs)
        t1 = max(o["t1"] for o in outs)
        lat = [x for o in outs for x in o["lat"]]
        errs = [e for o in outs for e in o["errors"]]
        rate = done / (t1 - t0)
        cpu = (self.server.cpu() - cpu0) if self.server else 0.0
        loop_cpu = (self.server.loop_cpu() - loop0) if self.server else 0.0
        r = {"kind": kind, "objects": done, "seconds": t1 - t0, "rate": rate, "client_procs": procs,
             "connections_per_proc": conns, "lat_p50_ms": ms(pct(lat, 50)), "lat_p99_ms": ms(pct(lat, 99)),
             "server_cpu_s": cpu, "server_cpu_us_per_create": cpu / max(1, done) * 1e6,
             "loop_cpu_us_per_create": loop_cpu / max(1, done) * 1e6,
             # what one core could do: the event-loop thread is serial, the SQLite writer thread
             # (mostly waiting on fsync) runs beside it
             "implied_rate_one_core": done / max(cpu, 1e-9),
             "implied_rate_loop_bound": done / max(loop_cpu, 1e-9),
             "client_cpu_us_per_create": sum(o["cpu"] for o in outs) / max(1, done) * 1e6, "errors": errs}
        self.log(f"create {kind}: {done} in {t1 - t0:.2f}s = {rate:,.0f}/s (latency p50 {r['lat_p50_ms']} ms, "
                 f"p99 {r['lat_p99_ms']} ms; CPU per create: server {r['server_cpu_us_per_create']:.0f} us "
                 f"(event loop {r['loop_cpu_us_per_create']:.0f} us), clients {r['client_cpu_us_per_create']:.0f} us; "
                 f"implied by server CPU: {r['implied_rate_one_core']:,.0f}/s on one core)"
                 + (f" errors: {errs[:2]}" if errs else ""))
        return r

    # -- 2: steady-rate latency
    def steady(self, target: Target) -> dict[str, Any]:
        rate = 500.0
        duration = 5.0 if self.quick else 15.0
        (out,) = run_children([(load.steady_writes, (target, "steady", rate, duration))], timeout=duration + 60)
        lat, co = out["lat"], out["lat_co"]
        r = {"rate": rate, "duration": duration, "done": out["done"], "achieved_rate": out["done"] / out["elapsed"],
             "p50_ms": ms(pct(lat, 50)), "p99_ms": ms(pct(lat, 99)), "max_ms": ms(max(lat) if lat else math.nan),
             "p99_from_schedule_ms": ms(pct(co, 99)), "skipped": out["skipped"], "errors": out["errors"],
             "connections": out["conns"]}
        self.log(f"steady {rate:.0f}/s for {duration:.0f}s: {out['done']} writes, p50 {r['p50_ms']} ms, "
                 f"p99 {r['p99_ms']} ms, max {r['max_ms']} ms (p99 from schedule {r['p99_from_schedule_ms']} ms, "
                 f"skipped {out['skipped']})")
        return r

    # -- 3: watch fan-out
    def watch(self, target: Target) -> dict[str, Any]:
        n_watch, rate = 100, 100.0
        n = 200 if self.quick else 1000
        rv = api(target, lambda c: c.request("GET", "/api/v1/namespaces/watch/configmaps?limit=1"))
        rv = orjson.loads(rv)["metadata"]["resourceVersion"]
        deadline = time.monotonic() + 30 + n / rate
        halves = [n_watch // 2, n_watch - n_watch // 2]
        events = [CTX.Event() for _ in halves]
        kids = [Child(load.watchers, target, "watch", h, rv, n, ev, deadline) for h, ev in zip(halves, events, strict=True)]
        prof = None
        try:
            for ev in events:
                if not ev.wait(30):
                    raise TimeoutError("watchers did not connect")
            prof = self.start_profile("watch") if self.args.profile else None
            cpu0 = self.server.cpu() if self.server else 0.0
            (wout,) = run_children([(load.watch_writer, (target, "watch", rate, n))], timeout=n / rate + 60)
            if prof is not None:
                self.stop_profile(prof)
                prof = None
            outs = [k.result(deadline - time.monotonic() + 10) for k in kids]
            cpu = (self.server.cpu() - cpu0) if self.server else 0.0
        finally:
            if prof is not None:
                self.stop_profile(prof)
            for k in kids:
                if k.p.is_alive():
                    k.p.kill()
        acks = wout["acks"]
        from_send, from_ack = [], []
        received = 0
        for o in outs:
            for stream in o["recv"]:
                for name, sent, now in stream:
                    received += 1
                    from_send.append(now - sent)
                    if name in acks:
                        from_ack.append(now - acks[name])
        expected = n * n_watch
        r = {"watchers": n_watch, "writes": n, "write_rate": rate, "events_expected": expected,
             "events_received": received, "p50_from_send_ms": ms(pct(from_send, 50)),
             "p99_from_send_ms": ms(pct(from_send, 99)), "max_from_send_ms": ms(max(from_send, default=math.nan)),
             "p99_from_ack_ms": ms(pct(from_ack, 99)),
             "events_before_ack_pct": round(100 * sum(1 for x in from_ack if x < 0) / max(1, len(from_ack)), 1),
             "server_cpu_s": round(cpu, 3), "server_cpu_us_per_event": round(cpu / max(1, received) * 1e6, 1)}
        self.log(f"watch: {n_watch} watchers x {n} writes at {rate:.0f}/s: {received}/{expected} events, "
                 f"from send p50 {r['p50_from_send_ms']} ms p99 {r['p99_from_send_ms']} ms "
                 f"max {r['max_from_send_ms']} ms; from ack p99 {r['p99_from_ack_ms']} ms; server CPU "
                 f"{r['server_cpu_us_per_event']} us per delivered event ({cpu:.2f} s, writes included)")
        return r

    # -- 4: LIST
    def lists(self, target: Target, namespace: str, reps: int) -> dict[str, Any]:
        """Time to the last byte on a blocking keep-alive connection (the client spends little CPU).

        Table pages are followed the way kubectl does (``limit=500`` + ``continue``); the token is
        read from the page's leading metadata and rows are counted without a full parse.
        """
        path = f"/api/v1/namespaces/{namespace}/pods"
        c = SyncConn(target)
        try:
            def plain() -> tuple[float, int, int]:
                t0 = time.monotonic()
                body = c.get(path)
                return time.monotonic() - t0, len(body), body.count(b'"kind":"Pod"')

            def table() -> tuple[float, int, int]:
                t0 = time.monotonic()
                cont, rows, size = "", 0, 0
                while True:
                    body = c.get(path + (f"?limit=500&continue={cont}" if cont else "?limit=500"),
                                 accept=TABLE_ACCEPT)
                    size += len(body)
                    rows += body.count(b'"cells":')
                    m = CONTINUE.search(body, 0, 4096)
                    cont = m.group(1).decode() if m else ""
                    if not cont:
                        break
                return time.monotonic() - t0, size, rows

            def cpu_of(fn: Any) -> tuple[float, int, int, float]:
                c0 = self.server.cpu() if self.server else 0.0
                out = fn()
                return (*out, (self.server.cpu() - c0) if self.server else 0.0)

            plain()  # warm-up
            p = [cpu_of(plain) for _ in range(reps)]
            t = [cpu_of(table) for _ in range(reps)]
            doc = orjson.loads(c.get(path + "?limit=500", accept=TABLE_ACCEPT))  # one page, fully checked
            assert doc["kind"] == "Table" and len(doc["rows"]) == 500, doc.get("kind")
        finally:
            c.close()
        r = {"plain_ms": [ms(x[0]) for x in p], "plain_bytes": p[0][1], "plain_items": p[0][2],
             "table_ms": [ms(x[0]) for x in t], "table_bytes": t[0][1], "table_rows": t[0][2],
             "plain_median_ms": statistics.median(ms(x[0]) for x in p),
             "table_median_ms": statistics.median(ms(x[0]) for x in t),
             "plain_server_cpu_ms": [ms(x[3]) for x in p], "table_server_cpu_ms": [ms(x[3]) for x in t],
             "table_server_cpu_median_ms": statistics.median(ms(x[3]) for x in t)}
        self.log(f"LIST {r['plain_items']} pods: plain JSON median {r['plain_median_ms']} ms "
                 f"({r['plain_bytes'] / MiB:.1f} MiB) {r['plain_ms']}; Table limit=500 median "
                 f"{r['table_median_ms']} ms ({r['table_rows']} rows, {r['table_bytes'] / MiB:.1f} MiB) "
                 f"{r['table_ms']}; server CPU per listing: plain {r['plain_server_cpu_ms']} ms, Table "
                 f"{r['table_server_cpu_ms']} ms (the first Table listing renders the rows it then keeps)")
        return r

    # -- 5: memory with a large preloaded state
    def memory(self, target: Target) -> dict[str, Any]:
        n_pods = 30_000 if self.quick else 150_000
        n_svc = 2_000 if self.quick else 10_000

        async def templates(c: Conn) -> tuple[Any, Any, Any]:
            await c.request("POST", "/api/v1/namespaces/list/services", orjson.dumps(objects.service("tpl")))
            pod = orjson.loads(await c.request("GET", "/api/v1/namespaces/list/pods/pod-00000"))
            svc = orjson.loads(await c.request("GET", "/api/v1/namespaces/list/services/tpl"))
            ns = orjson.loads(await c.request("GET", "/api/v1/namespaces/list"))
            return pod, svc, ns

        pod, svc, ns = api(target, templates)
        self.results["pod_stored_bytes"] = len(orjson.dumps(pod))
        d2 = self.work / "big"
        shutil.rmtree(d2, ignore_errors=True)
        d2.mkdir(parents=True)
        self.log(f"preloading {n_pods:,} pods ({len(orjson.dumps(pod))} B each) + {n_svc:,} services ...")
        (pre,) = run_children([(preload.preload, (str(d2 / "state.db"), pod, svc, ns, n_pods, n_svc))],
                              timeout=300)
        db_mib = (d2 / "state.db").stat().st_size / MiB
        self.log(f"preloaded in {pre['seconds']:.1f}s ({(n_pods + n_svc) / pre['seconds']:,.0f} objects/s), "
                 f"state.db {db_mib:.0f} MiB")
        big = ServerProc(d2)
        try:
            t2 = big.start(timeout=240)
            rss0, _ = big.rss()
            self.log(f"server on preloaded state: ready in {big.startup_seconds:.1f}s, RSS {rss0 / MiB:.0f} MiB")
            ns0 = pre["namespaces"][0]

            lr: dict[str, Any] = {}
            c = SyncConn(t2)
            try:
                times = []
                for _ in range(3):
                    t0 = time.monotonic()
                    body = c.get(f"/api/v1/namespaces/{ns0}/pods")
                    times.append(time.monotonic() - t0)
                lr["ns_list_ms"] = ms(statistics.median(times))
                lr["ns_list_items"] = body.count(b'"kind":"Pod"')
                del body
                t0 = time.monotonic()
                body = c.get("/api/v1/pods")
                lr["all_list_ms"] = ms(time.monotonic() - t0)
                lr["all_list_mib"] = round(len(body) / MiB, 1)
                lr["all_list_items"] = body.count(b'"kind":"Pod"')
                del body
            finally:
                c.close()
            rss1, hwm1 = big.rss()
            r = {"pods": n_pods, "services": n_svc, "preload_seconds": round(pre["seconds"], 1),
                 "state_db_mib": round(db_mib), "startup_seconds": round(big.startup_seconds, 2),
                 "rss_after_start_mib": round(rss0 / MiB), "rss_after_list_mib": round(rss1 / MiB),
                 "peak_rss_mib": round(hwm1 / MiB), **lr}
            self.log(f"LIST {lr['ns_list_items']} pods in {ns0}: {lr['ns_list_ms']} ms; LIST all "
                     f"{lr['all_list_items']:,} pods: {lr['all_list_ms']} ms ({lr['all_list_mib']} MiB); RSS after "
                     f"{rss1 / MiB:.0f} MiB, peak {hwm1 / MiB:.0f} MiB")
            return r
        finally:
            big.stop()

    # -- profiling (optional)
    def start_profile(self, name: str) -> Any:
        out = ROOT / "bench" / "results" / f"api-{name}.folded"
        out.parent.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).parent / "py-spy"
        if not spy.exists():
            self.log("--profile: py-spy is not installed in the venv (pip install py-spy); not profiling")
            return None
        assert self.server is not None
        p = subprocess.Popen([str(spy), "record", "--pid", str(self.server.pid), "--format", "raw", "--rate", "200",
                              "--nonblocking", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        return p, out

    def stop_profile(self, prof: Any) -> None:
        import signal

        p, out = prof
        p.send_signal(signal.SIGINT)
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
        self.log(f"profile written to {out}")

    # -- driver
    def run(self) -> int:
        t_start = time.monotonic()
        raw = self.raw_baseline()
        self.server = ServerProc(self.work / "main")
        try:
            target = self.server.start()
            self.log(f"apiserver pid {self.server.pid} at {target.host}:{target.port} "
                     f"(ready in {self.server.startup_seconds:.1f}s)")
            ensure_namespaces(target, ["list", "podspb", "cms", "steady", "watch"])
            want = self.args.only.split(",") if self.args.only else PHASES
            mem = None
            if "creates" in want or "list" in want or "memory" in want:  # these read the pods
                pods = self.creates(target, "pods", "list", 10_000)
                self.results["create_pods"] = pods
                self.results["create_ratio_pods_to_raw"] = pods["rate"] / raw
                self.row("durable creates, pods (~2 KB), JSON bodies", pods["rate"], "obj/s", 2000, True)
                self.row("  JSON: server CPU per create", pods["server_cpu_us_per_create"], "us", None, False)
                self.row("  JSON: creates/s implied on one core", pods["implied_rate_one_core"], "obj/s", 2000, True)
            if "creates" in want:
                pb = self.creates(target, "pods-protobuf", "podspb", 10_000)
                self.results["create_pods_protobuf"] = pb
                self.row("durable creates, pods, protobuf bodies", pb["rate"], "obj/s", 2000, True)
                self.row("  protobuf: server CPU per create", pb["server_cpu_us_per_create"], "us", None, False)
                self.row("  protobuf: creates/s implied on one core", pb["implied_rate_one_core"], "obj/s", 2000,
                         True)
                if "create_pods" in self.results:
                    json_r = self.results["create_pods"]
                    self.log(f"pod creates side by side (target 2,000/s): JSON {json_r['rate']:,.0f}/s wall, "
                             f"{json_r['server_cpu_us_per_create']:.0f} us server CPU each = "
                             f"{json_r['implied_rate_one_core']:,.0f}/s on one core; protobuf {pb['rate']:,.0f}/s "
                             f"wall, {pb['server_cpu_us_per_create']:.0f} us each = "
                             f"{pb['implied_rate_one_core']:,.0f}/s on one core")
                cms = self.creates(target, "configmaps", "cms", 10_000)
                self.results["create_configmaps"] = cms
                self.results["create_ratio_configmaps_to_raw"] = cms["rate"] / raw
                self.row("durable creates, ConfigMaps", cms["rate"], "obj/s", 2000, True)
            raw_after = self.raw_baseline("after")
            self.row("raw sqlite3 1 row/commit (before)", raw, "rows/s", None, True)
            self.row("raw sqlite3 1 row/commit (after)", raw_after, "rows/s", None, True)
            if "create_pods" in self.results:
                self.row("ratio pod creates / raw sqlite", self.results["create_ratio_pods_to_raw"], "x", None, True)
            if "create_configmaps" in self.results:
                self.row("ratio ConfigMap creates / raw sqlite", self.results["create_ratio_configmaps_to_raw"],
                         "x", None, True)
            if "steady" in want:
                st = self.steady(target)
                self.results["steady_500"] = st
                self.row("write p99 at 500/s", st["p99_ms"], "ms", 50, False)
            if "watch" in want:
                w = self.watch(target)
                self.results["watch"] = w
                self.row("watch delivery p99, from send (100 w.)", w["p99_from_send_ms"], "ms", 20, False)
                self.row("watch delivery p99, from ack (100 w.)", w["p99_from_ack_ms"], "ms", 20, False)
                self.row("  watch: server CPU per delivered event", w["server_cpu_us_per_event"], "us", None, False)
            if "list" in want:
                ls = self.lists(target, "list", 3 if self.quick else 5)
                self.results["list_10k"] = ls
                self.row("LIST 10k pods, JSON", ls["plain_median_ms"], "ms", 300, False)
                self.row("LIST 10k pods, Table limit=500", ls["table_median_ms"], "ms", 300, False)
                self.row("  Table: server CPU per listing (median)", ls["table_server_cpu_median_ms"], "ms", None,
                         False)
            rss, hwm = self.server.rss()
            self.results["main_server_rss_mib"] = round(rss / MiB)
            if "memory" in want:
                mem = self.memory(target)
        finally:
            self.server.stop()
        if mem is not None:
            self.results["memory"] = mem
            label = f"RSS {mem['pods'] // 1000}k pods + {mem['services'] // 1000}k svcs"
            full = not self.quick
            self.row(label + ", after start", mem["rss_after_start_mib"], "MiB", 2048 if full else None, False)
            self.row(label + ", after LISTs", mem["rss_after_list_mib"], "MiB", 2048 if full else None, False)
        self.results["total_seconds"] = round(time.monotonic() - t_start, 1)
        self.report()
        return 0

    def report(self) -> None:
        w = max(len(r[0]) for r in self.rows)
        print()
        print(f"{'figure':<{w}}  {'value':>16}  {'target':>16}  verdict")
        for name, value, tgt, verdict in self.rows:
            print(f"{name:<{w}}  {value:>16}  {tgt:>16}  {verdict}")
        loads = [x[1] for x in self.results.get("loadavg_log", [])]
        print(f"(total {self.results['total_seconds']}s; quick={self.quick}; 1-min load average during the run "
              f"{min(loads, default=0):.1f}-{max(loads, default=0):.1f} on {os.cpu_count()} CPUs, benchmark "
              f"included: latency figures are only meaningful when the machine is otherwise idle)")
        out = ROOT / "bench" / "results" / "api.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.results, indent=2, default=str))
        print(f"written {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller, < 2 minutes")
    ap.add_argument("--profile", action="store_true", help="py-spy the server during the create phases")
    ap.add_argument("--client-procs", type=int, default=2)
    ap.add_argument("--conns", type=int, default=32, help="connections per client process")
    ap.add_argument("--only", default="", help="comma-separated subset of " + ",".join(PHASES)
                    + " (list and memory also create the 10,000 pods they read)")
    ap.add_argument("--workdir", default=None, help="where state goes (default: a fresh temp dir, removed)")
    args = ap.parse_args(argv)
    b = Bench(args)
    try:
        return b.run()
    finally:
        if args.workdir is None:
            shutil.rmtree(b.work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
