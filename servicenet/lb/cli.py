"""``servicenet endpoints SERVICE``: the live endpoint set the library sees, for debugging.

Prints each endpoint with its conditions, zone/node hints and the policy's current score;
``--watch`` prints again on every change (``-o json``: one JSON document per line, with the time).
``--requests N`` also sends N HTTP GETs through the library and prints how they spread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from typing import Any

from servicenet.common import log
from servicenet.lb.adapters.aiohttp import LBSession
from servicenet.lb.balancer import Balancer
from servicenet.lb.model import Topology
from servicenet.lb.policies import POLICIES
from servicenet.lb.sources import ApiSource, DnsSource, Source


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {s!r}")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="servicenet endpoints", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("service")
    p.add_argument("-n", "--namespace", default=None, help="default: the kubeconfig's (or pod's) namespace")
    p.add_argument("--via", choices=["api", "dns"], default="api")
    p.add_argument("--watch", "-w", action="store_true")
    p.add_argument("--port", default=None, help="port name or number (API: default the first; DNS: 80)")
    p.add_argument("--policy", choices=sorted(POLICIES), default="round_robin")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--in-cluster", action="store_true", help="use the pod's ServiceAccount (in-cluster config)")
    p.add_argument("--dns-server", type=_hostport, default=None, metavar="HOST:PORT",
                   help="default: /etc/resolv.conf")
    p.add_argument("--cluster-domain", default="cluster.local")
    p.add_argument("--zone", default="")
    p.add_argument("--node", default="")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    p.add_argument("--requests", type=int, default=0, help="send this many GETs through the library")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--path", default="/")
    p.add_argument("--timeout", type=float, default=30.0, help="give up if the set is not known by then")
    return p


def make_source(args: argparse.Namespace) -> Source:
    topo = Topology(zone=args.zone, node=args.node)
    if args.via == "dns":
        ns = args.namespace or "default"
        name = args.service if "." in args.service else f"{args.service}.{ns}.svc.{args.cluster_domain}"
        port = int(args.port) if args.port and str(args.port).isdigit() else 80
        srv = args.port if args.port and not str(args.port).isdigit() else None
        return DnsSource(name, port, srv=srv, search=False, topology=topo,
                         nameservers=[args.dns_server] if args.dns_server else None)
    port: int | str | None = int(args.port) if args.port and str(args.port).isdigit() else args.port
    return ApiSource(args.service, args.namespace, port=port, kubeconfig=args.kubeconfig,
                     in_cluster=True if args.in_cluster else None, topology=topo)


def render(balancer: Balancer, source: Source, fmt: str) -> str:
    rows = balancer.table()
    if fmt == "json":
        stats = {k: getattr(source, k) for k in ("updates", "lookups", "ttl") if hasattr(source, k)}
        return json.dumps({"time": time.time(), "via": source.kind, "policy": balancer.policy.name,
                           "panic": balancer.panic, "source": stats, "endpoints": rows}, sort_keys=True)
    cols = ["endpoint", "name", "conditions", "zone", "node", "hints", "weight", "used", "outstanding",
            "ewma_ms", "score"]
    table = [[c.upper() for c in cols]]
    for r in rows:
        table.append(["" if r[c] is None else (f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]))
                      for c in cols])
    widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in table]
    head = f"# {source.kind} · policy {balancer.policy.name}" + (" · PANIC" if balancer.panic else "")
    return "\n".join([head, *lines])


async def spread(balancer: Balancer, n: int, path: str, host: str, concurrency: int) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    failed = 0
    left = n

    async with LBSession(balancer, host) as s:
        async def worker() -> None:
            nonlocal left, failed
            while left > 0:
                left -= 1
                try:
                    r = await s.get(path)
                    counts[r.text().strip() or r.endpoint] += 1
                    failed += r.status >= 500
                except Exception:
                    failed += 1

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    return {"requests": n, "failed": failed, "answers": dict(counts)}


async def run(args: argparse.Namespace) -> int:
    balancer = Balancer(args.policy, name=args.service)
    source = make_source(args)
    changed = asyncio.Event()
    loop = asyncio.get_running_loop()
    source.subscribe(balancer)
    balancer.add_listener(lambda _b: loop.call_soon_threadsafe(changed.set))
    try:
        async with asyncio.timeout(args.timeout):
            await source.start()
    except TimeoutError:
        print(f"servicenet endpoints: no endpoint set for {args.service} after {args.timeout}s", file=sys.stderr)
        return 1
    try:
        changed.clear()  # cleared before each render, so an update during a render is never lost
        print(render(balancer, source, args.output), flush=True)
        if args.requests:
            res = await spread(balancer, args.requests, args.path, args.service, args.concurrency)
            print(json.dumps({"time": time.time(), "spread": res}, sort_keys=True), flush=True)
        if args.watch:
            stop = asyncio.Event()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            while not stop.is_set():
                waiter = asyncio.ensure_future(changed.wait())
                halt = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, halt}, return_when=asyncio.FIRST_COMPLETED)
                for t in (waiter, halt):
                    t.cancel()
                if changed.is_set():
                    changed.clear()
                    print(render(balancer, source, args.output), flush=True)
    finally:
        with contextlib.suppress(Exception):
            await source.stop()
    return 0


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    log.setup("warning")
    try:
        return asyncio.run(run(args))
    except Exception as exc:  # a clear message, not a traceback, for config/network errors
        print(f"servicenet endpoints: {exc}", file=sys.stderr)
        return 1
