"""Route write -> traffic: Gateway API HTTPRoutes beside Ingresses, one API server, same backend.

With N routes of each kind already served, S times: write a new HTTPRoute (a new Ingress), then poll
its host until it answers; p50/p99 of the time from the write's return to the first good answer,
and each data plane's reloads meanwhile (HAProxy's master counter). Bounded: N+S objects each.

    python -m bench.ingress.gateway_routes [--routes 200] [--samples 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from servicenet.ingress.controller import IngressConfig, IngressController  # noqa: E402
from tests.ingress import gwobjects as g  # noqa: E402
from tests.ingress.backends import serve  # noqa: E402
from tests.ingress.gw_harness import gateway_stack  # noqa: E402
from tests.ingress.harness import free_port  # noqa: E402
from tests.ingress.objects import CLASS, ingress, path, rule, service, slice_  # noqa: E402

GW = "gateway.networking.k8s.io/v1"
NET = "networking.k8s.io/v1"


def _route(i: int) -> dict[str, Any]:
    obj = g.httproute(f"g{i}", [g.parent("gw")], g.hrule(g.bref("app")), hostnames=[f"g{i}.test"])
    obj["metadata"] = {"name": f"g{i}", "namespace": "default"}
    return obj


def _ingress(i: int) -> dict[str, Any]:
    return ingress(f"i{i}", [rule(f"i{i}.test", path("/", "app", 80))])


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000


async def _follow(client: Any, av: str, plural: str, obj: dict[str, Any], port: int, host: str,
                  sess: aiohttp.ClientSession) -> float:
    t0 = time.monotonic()
    await client.create(av, plural, "default", obj)
    while time.monotonic() - t0 < 30:
        async with sess.get(f"http://127.0.0.1:{port}/", headers={"Host": host}) as r:
            if r.status == 200:
                return time.monotonic() - t0
        await asyncio.sleep(0.001)
    raise TimeoutError(host)


async def main(args: argparse.Namespace) -> None:
    backend, gw_port = free_port(), free_port()
    runner = await serve("app", "127.0.0.1", [backend])
    with tempfile.TemporaryDirectory() as d:
        async with gateway_stack(Path(d)) as gs:
            client = gs.client
            await gs.put(service("app", [("http", 80)]))
            await gs.put(slice_("app", ["127.0.0.1"], [("http", backend)]))
            await client.create(NET, "ingressclasses", None, CLASS)
            ing_client = gs.api.new_client()
            ing = IngressController(ing_client, IngressConfig(state_dir=Path(d) / "ingress",
                                                                       http_port=free_port(), https_port=free_port()))
            await ing.start()
            try:
                await gs.put(g.gateway_class())
                await gs.put(g.gateway("gw", g.listener("http", gw_port)))
                for i in range(args.routes):
                    await client.create(GW, "httproutes", "default", _route(i))
                    await client.create(NET, "ingresses", "default", _ingress(i))
                async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as sess:
                    # both served before measuring
                    await _follow(client, GW, "httproutes", _route(args.routes), gw_port, f"g{args.routes}.test", sess)
                    await _follow(client, NET, "ingresses", _ingress(args.routes), ing.listen.http_port,
                                  f"i{args.routes}.test", sess)
                    assert gs.ctl.haproxy is not None and ing.haproxy is not None
                    r_gw, r_ing = await gs.ctl.haproxy.master_reloads(), await ing.haproxy.master_reloads()
                    lat: dict[str, list[float]] = {"gateway": [], "ingress": []}
                    for k in range(args.routes + 1, args.routes + 1 + args.samples):  # interleaved
                        lat["gateway"].append(await _follow(client, GW, "httproutes", _route(k), gw_port,
                                                            f"g{k}.test", sess))
                        lat["ingress"].append(await _follow(client, NET, "ingresses", _ingress(k),
                                                            ing.listen.http_port, f"i{k}.test", sess))
                    out = {kind: {"p50_ms": round(_pct(xs, 0.5), 1), "p99_ms": round(_pct(xs, 0.99), 1)}
                           for kind, xs in lat.items()}
                    out["gateway"]["reloads"] = await gs.ctl.haproxy.master_reloads() - r_gw
                    out["ingress"]["reloads"] = await ing.haproxy.master_reloads() - r_ing
                    out["p50_ratio_gateway_over_ingress"] = round(out["gateway"]["p50_ms"] / out["ingress"]["p50_ms"], 2)
                    print(json.dumps({"routes": args.routes, "samples": args.samples, **out}, indent=1))
            finally:
                await ing.stop()
                await ing_client.close()
    await runner.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--routes", type=int, default=200)
    ap.add_argument("--samples", type=int, default=30)
    asyncio.run(main(ap.parse_args()))
