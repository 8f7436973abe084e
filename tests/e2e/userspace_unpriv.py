"""The loopback stack with the userspace proxy, run as an unprivileged user (spawned by
test_proxy_userspace via setpriv, with the system python3 and the venv's site-packages on
PYTHONPATH). API server + controllers + node agent (loopback) + proxy (userspace), then real curl.

Usage: ``python3 userspace_unpriv.py <writable dir>``. Prints one JSON line with what it observed;
the test makes the assertions.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(os.path.dirname(HERE)), os.path.dirname(HERE)]

from e2e.cluster import ready, running_cluster, until  # noqa: E402
from servicenet.proxy.server import ProxyConfig, ProxyServer  # noqa: E402

SVC_PORT = 8080  # unprivileged: no port 80


def curl_loop(url: str, n: int) -> Counter[str]:
    script = (f"i=0; while [ $i -lt {n} ]; do i=$((i+1)); "
              f"curl -s --max-time 2 {url} || echo \"fail$?\"; echo; done")
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120).stdout
    return Counter(ln.strip() for ln in out.splitlines() if ln.strip())


async def acurl(url: str, n: int) -> Counter[str]:
    return await asyncio.to_thread(curl_loop, url, n)


async def main(tmp: Path) -> dict[str, Any]:
    res: dict[str, Any] = {"uid": os.geteuid(), "gid": os.getegid(), "groups": os.getgroups()}
    async with running_cluster(tmp, "loopback") as c:
        pclient = c.api.new_client()
        proxy = ProxyServer(ProxyConfig(mode="userspace", node_name=c.node, min_sync_period=0.0), client=pclient)
        await proxy.start()
        try:
            await c.client.create("apps/v1", "deployments", "default", {
                "metadata": {"name": "hostnames"},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "hostnames"}},
                         "template": {"metadata": {"labels": {"app": "hostnames"}}, "spec": {"containers": [{
                             "name": "hostnames", "image": "registry.k8s.io/serve_hostname",
                             "ports": [{"containerPort": 9376}]}]}}}})
            svc = await c.client.create("v1", "services", "default", {
                "metadata": {"name": "hostnames"},
                "spec": {"selector": {"app": "hostnames"},
                         "ports": [{"name": "http", "port": SVC_PORT, "targetPort": 9376}]}})
            vip = svc["spec"]["clusterIP"]

            async def three() -> dict[str, str] | None:
                ps = (await c.client.list("v1", "pods", "default", label_selector="app=hostnames"))["items"]
                ok = {p["metadata"]["name"]: p["status"]["podIP"] for p in ps if ready(p) and p["status"].get("podIP")}
                return ok if len(ok) == 3 else None

            pods = await until(three, 40, what="3 ready pods")
            res["pods"] = pods
            res["vip"] = vip

            async def programmed(url: str, want: set[str]) -> bool:
                return set(await acurl(url, 12)) == want

            await until(lambda: programmed(f"http://{vip}:{SVC_PORT}/", set(pods)), 20, interval=0.1,
                        what="VIP answers from every pod")
            res["spread"] = dict(await acurl(f"http://{vip}:{SVC_PORT}/", 300))

            # failover: the slice also lists two addresses nobody listens on
            base = pods[next(iter(pods))].rsplit(".", 1)[0]
            dead = [f"{base}.250", f"{base}.251"]
            fo = await c.client.create("v1", "services", "default", {
                "metadata": {"name": "failover"}, "spec": {"ports": [{"name": "http", "port": SVC_PORT + 1}]}})
            await c.client.create("discovery.k8s.io/v1", "endpointslices", "default", {
                "metadata": {"name": "failover-1", "labels": {"kubernetes.io/service-name": "failover"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 9376, "protocol": "TCP"}],
                "endpoints": [{"addresses": [ip], "nodeName": c.node, "conditions": {"ready": True}}
                              for ip in [*dead, *pods.values()]]})
            url = f"http://{fo['spec']['clusterIP']}:{SVC_PORT + 1}/"
            await until(lambda: programmed(url, set(pods)), 20, interval=0.1, what="failover service programmed")
            res["dead"] = dead
            res["failover"] = dict(await acurl(url, 150))
            res["proxy_listeners"] = len(proxy.userspace.listeners)
        finally:
            await proxy.stop()
            await pclient.close()
    return res


if __name__ == "__main__":
    out = asyncio.run(main(Path(sys.argv[1])))
    print(json.dumps(out), flush=True)
