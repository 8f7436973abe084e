"""Client-side load balancing benchmark: ten backends, one 10x slower (then one failing 20 %).

Same closed-loop client load (``--concurrency`` workers, ``--requests`` per arm, ``--seconds`` cap)
through each path, side by side in one run:

* ``clusterip-random``: the ClusterIP through servicenet's userspace service proxy in random mode
  (kube-proxy's per-connection random pick; a new connection per request so every request is
  balanced; the proxy runs as its own process);
* the library over the same EndpointSlice: ``random``, ``round_robin``, P2C ``least_outstanding``,
  P2C ``peak_ewma`` (keep-alive connections);
* ``fleet-without-slow``: P2C peak EWMA over the nine fast backends only (the reference);
* with one backend failing 20 %: success rate without retries and with the retry budget.

Also the library's per-pick cost at 1,000 endpoints. Writes ``bench/results/clientlb.json``.

    python -m bench.clientlb.run [--requests 5000] [--concurrency 8] [--fast-ms 20] [--slow-ms 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from servicenet.lb import Balancer, Endpoint, RequestPolicy, RetryBudget  # noqa: E402
from servicenet.lb.adapters.aiohttp import LBSession  # noqa: E402
from servicenet.testing import running_apiserver  # noqa: E402

PORT = 28080
N = 10
ADDRS = [f"127.77.0.{i}" for i in range(1, N + 1)]


@contextlib.contextmanager
def backends(fast_ms: float, slow_ms: float, fail_pct: float) -> Any:
    proc = subprocess.Popen([sys.executable, "-m", "bench.clientlb.backends", str(PORT), str(fast_ms),
                             str(slow_ms), str(fail_pct), str(N)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", "backends did not start"
        yield
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def clusterip(tmp: Path) -> AsyncIterator[str]:
    """API server (in process) + the userspace proxy (a process, random) + a Service whose
    EndpointSlice lists the ten backends. Yields the ClusterIP."""
    async with running_apiserver(tmp / "api", service_cidrs=["127.96.0.0/16"]) as api:
        c = api.client
        svc = await c.create("v1", "services", "default", {
            "metadata": {"name": "bench"}, "spec": {"ports": [{"name": "http", "port": PORT, "protocol": "TCP"}]}})
        await c.create("discovery.k8s.io/v1", "endpointslices", "default", {
            "metadata": {"name": "bench-1", "labels": {"kubernetes.io/service-name": "bench",
                                                       "endpointslice.kubernetes.io/managed-by": "bench"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": PORT, "protocol": "TCP"}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}, "nodeName": "bench"} for a in ADDRS]})
        await c.create("v1", "nodes", None, {"metadata": {"name": "bench"}, "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}})
        vip = svc["spec"]["clusterIP"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "servicenet.cli", "proxy", "--kubeconfig", str(api.kubeconfig),
             "--mode", "userspace", "--balance", "random", "--node-name", "bench", "--node-ip", "127.0.0.1",
             "--service-cidr", "127.96.0.0/16", "--health-listen", "127.0.0.1:0", "--min-sync-period", "0",
             "--log-level", "warning"], cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while True:  # the proxy listens on the ClusterIP once it has synced the Service
                try:
                    _, w = await asyncio.open_connection(vip, PORT)
                    w.close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the proxy does not listen on {vip}:{PORT}") from None
                    await asyncio.sleep(0.05)
            yield vip
        finally:
            proc.terminate()
            proc.wait(10)


def pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100.0 * len(s)))]


async def drive(send: Callable[[], Awaitable[bool]], n: int, conc: int, seconds: float) -> dict[str, Any]:
    lat: list[float] = []
    ok = bad = 0
    left = n
    t_end = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal left, ok, bad
        while left > 0 and time.monotonic() < t_end:
            left -= 1
            t0 = time.perf_counter()
            try:
                good = await send()
            except Exception:
                good = False
            lat.append(time.perf_counter() - t0)
            ok += good
            bad += not good

    t0 = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(conc)))
    took = time.monotonic() - t0
    return {"requests": ok + bad, "success": ok / max(ok + bad, 1), "p50_ms": pct(lat, 50) * 1e3,
            "p99_ms": pct(lat, 99) * 1e3, "p999_ms": pct(lat, 99.9) * 1e3, "rps": (ok + bad) / took}


async def via_lb(policy: str, addrs: list[str], args: argparse.Namespace, retries: bool,
                 odd: str = ADDRS[0]) -> dict[str, Any]:
    lb = Balancer(policy, name=policy)
    lb.update([Endpoint(a, PORT) for a in addrs])
    rp = RequestPolicy(retries=2, budget=RetryBudget()) if retries else RequestPolicy(retries=0, budget=None)
    async with LBSession(lb, "bench", policy=rp) as s:
        async def send() -> bool:
            return (await s.get("/")).status == 200

        res = await drive(send, args.requests, args.concurrency, args.seconds)
    if rp.budget is not None:
        res["retries"] = rp.budget.retries
    res["share_odd"] = next((b.picks for b in lb.members if b.ep.address == odd), 0) / max(
        sum(b.picks for b in lb.members), 1)
    return res


async def via_clusterip(vip: str, args: argparse.Namespace) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=0)) as s:
        async def send() -> bool:
            async with s.get(f"http://{vip}:{PORT}/") as r:
                await r.read()
                return r.status == 200

        return await drive(send, args.requests, args.concurrency, args.seconds)


def pick_cost(n: int = 1000, rounds: int = 50_000) -> dict[str, dict[str, float]]:
    """Per request: pick + done, best of three; CPU time of this thread and wall time."""
    out = {}
    for policy in ("round_robin", "random", "least_outstanding", "peak_ewma", "ring_hash", "maglev"):
        lb = Balancer(policy)
        lb.update([Endpoint(f"127.1.{i // 250}.{i % 250 + 1}", 80) for i in range(n)])
        cpu = wall = float("inf")
        for _ in range(3):
            c0, w0 = time.thread_time(), time.perf_counter()
            for i in range(rounds):
                lb.done(lb.pick(i if lb.policy.needs_key else None), True, 0.001)
            cpu = min(cpu, (time.thread_time() - c0) / rounds)
            wall = min(wall, (time.perf_counter() - w0) / rounds)
        out[policy] = {"cpu_us": cpu * 1e6, "wall_us": wall * 1e6}
    return out


def row(name: str, r: dict[str, Any]) -> str:
    extra = f"  odd pod share {r['share_odd'] * 100:5.1f}%" if "share_odd" in r else ""
    extra += f"  retries {r['retries']}" if "retries" in r else ""
    return (f"  {name:<26} {r['requests']:>6} req {r['rps']:>7.0f}/s  p50 {r['p50_ms']:7.2f}  "
            f"p99 {r['p99_ms']:7.2f}  p99.9 {r['p999_ms']:7.2f} ms  success {r['success'] * 100:7.3f}%{extra}")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {"config": vars(args).copy(), "slow": {}, "failing": {}}
    with tempfile.TemporaryDirectory(prefix="sn-clientlb-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            vip = None if args.skip_clusterip else await stack.enter_async_context(clusterip(Path(tmp)))
            print(f"\none backend {args.slow_ms / args.fast_ms:.0f}x slower ({args.fast_ms} ms vs {args.slow_ms} ms), "
                  f"{args.concurrency} concurrent, {args.requests} requests per arm:")
            with backends(args.fast_ms, args.slow_ms, 0):
                arms: list[tuple[str, Awaitable[dict[str, Any]]]] = []
                if vip:
                    arms.append(("clusterip-random (proxy)", via_clusterip(vip, args)))
                for p in ("random", "round_robin", "least_outstanding", "peak_ewma"):
                    arms.append((p, via_lb(p, ADDRS, args, retries=False)))
                arms.append(("fleet-without-slow (ewma)", via_lb("peak_ewma", ADDRS[1:], args, retries=False)))
                for name, coro in arms:
                    r = await coro
                    results["slow"][name] = r
                    print(row(name, r), flush=True)
            print(f"\none backend failing {args.fail_pct:.0f}% (all {args.fast_ms} ms):")
            with backends(args.fast_ms, args.fast_ms, args.fail_pct):
                arms = []
                if vip:
                    arms.append(("clusterip-random (proxy)", via_clusterip(vip, args)))
                arms += [("round_robin no retries", via_lb("round_robin", ADDRS, args, retries=False, odd=ADDRS[1])),
                         ("round_robin + budget", via_lb("round_robin", ADDRS, args, retries=True, odd=ADDRS[1])),
                         ("peak_ewma no retries", via_lb("peak_ewma", ADDRS, args, retries=False, odd=ADDRS[1])),
                         ("peak_ewma + budget", via_lb("peak_ewma", ADDRS, args, retries=True, odd=ADDRS[1]))]
                for name, coro in arms:
                    r = await coro
                    results["failing"][name] = r
                    print(row(name, r), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--seconds", type=float, default=40.0, help="cap per arm")
    p.add_argument("--fast-ms", type=float, default=20.0)
    p.add_argument("--slow-ms", type=float, default=200.0)
    p.add_argument("--fail-pct", type=float, default=20.0)
    p.add_argument("--skip-clusterip", action="store_true")
    args = p.parse_args(argv)
    print("per-pick cost at 1,000 endpoints (pick + done, best of 3):")
    cost = pick_cost()
    for k, v in cost.items():
        print(f"  {k:<20} {v['cpu_us']:6.2f} us CPU  {v['wall_us']:6.2f} us wall")
    try:
        import uvloop
        res = uvloop.run(main_async(args))
    except ImportError:
        res = asyncio.run(main_async(args))
    res["pick_us_at_1000"] = cost
    slow = res["slow"]
    ewma, ref = slow["peak_ewma"]["p99_ms"], slow["fleet-without-slow (ewma)"]["p99_ms"]
    goals = {
        "ewma_p99_vs_fleet_without_slow": ewma / ref,
        "random_lib_p99_vs_ewma": slow["random"]["p99_ms"] / ewma,
        "max_pick_us": max(v["cpu_us"] for v in cost.values()),
        "success_with_budget_pct": res["failing"]["peak_ewma + budget"]["success"] * 100,
    }
    if "clusterip-random (proxy)" in slow:
        goals["clusterip_p99_vs_ewma"] = slow["clusterip-random (proxy)"]["p99_ms"] / ewma
    res["goals"] = goals
    print("\ngoals:")
    print(f"  P2C-EWMA p99 / fleet without the slow pod p99 = {goals['ewma_p99_vs_fleet_without_slow']:.2f} "
          f"(goal <= 1.5)")
    if "clusterip_p99_vs_ewma" in goals:
        print(f"  ClusterIP random p99 / P2C-EWMA p99 = {goals['clusterip_p99_vs_ewma']:.1f}x (goal >= 5)")
    print(f"  library random p99 / P2C-EWMA p99 = {goals['random_lib_p99_vs_ewma']:.1f}x (goal >= 5)")
    print(f"  slowest pick + done at 1,000 endpoints = {goals['max_pick_us']:.2f} us CPU (goal < 5)")
    print(f"  success with one failing pod, retry budget on = {goals['success_with_budget_pct']:.3f}% "
          f"(goal >= 99.9)")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "clientlb.json").write_text(json.dumps(res, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    sys.exit(main())
