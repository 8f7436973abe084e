"""Real-process pod create -> Ready latency through the API (netns mode when root, else loopback).

    .venv/bin/python bench/node_ready.py [--pods 40] [--network netns]

Creates pods bound to the node one at a time (image serve_hostname, no probes) and measures from
the create call to the watch event that shows ``Ready=True``.  Prints p50/p90/p99/max in ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from servicenet.node.agent import NodeAgent
from servicenet.testing import running_apiserver


async def run(n: int, network: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        async with running_apiserver(Path(tmp)) as api:
            agent = NodeAgent(api.client, node_name="bench-node", network=network,
                              pod_cidr="10.244.9.0/24" if network == "netns" else "127.64.9.0/24",
                              data_dir=os.path.join(tmp, "node"))
            await agent.start()
            watcher = api.new_client()
            ready_at: dict[str, float] = {}
            got = asyncio.Event()

            async def watch() -> None:
                async for ev in watcher.watch("v1", "pods", "default", resource_version="0"):
                    pod = ev["object"]
                    conds = (pod.get("status") or {}).get("conditions") or []
                    if any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                        ready_at.setdefault(pod["metadata"]["name"], time.perf_counter())
                        got.set()

            wtask = asyncio.create_task(watch())
            samples: list[float] = []
            try:
                for i in range(n):
                    name = f"b{i}"
                    t0 = time.perf_counter()
                    await api.client.create("v1", "pods", "default", {
                        "metadata": {"name": name},
                        "spec": {"nodeName": "bench-node", "terminationGracePeriodSeconds": 0,
                                 "containers": [{"name": "c", "image": "registry.k8s.io/serve_hostname"}]}})
                    async with asyncio.timeout(10):
                        while name not in ready_at:
                            got.clear()
                            await got.wait()
                    samples.append((ready_at[name] - t0) * 1000)
            finally:
                wtask.cancel()
                await watcher.close()
                await agent.stop()
    samples.sort()

    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, int(round(p * (len(samples) - 1))))]
    return {"n": len(samples), "p50_ms": pct(0.5), "p90_ms": pct(0.9), "p99_ms": pct(0.99),
            "max_ms": samples[-1], "mean_ms": statistics.fmean(samples)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pods", type=int, default=40)
    ap.add_argument("--network", default="netns" if os.geteuid() == 0 else "loopback")
    args = ap.parse_args()
    res = asyncio.run(run(min(args.pods, 200), args.network))
    print(f"network={args.network} " + " ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
                                                for k, v in res.items()))


if __name__ == "__main__":
    main()
