"""``servicenet ingress --gateway`` against an API server with upstream's Gateway API CRDs: a Gateway
and an HTTPRoute applied with kubectl are served on the listener's port, ``kubectl get gateway``
shows the address and PROGRAMMED True, and nothing is left behind on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from servicenet.testing import running_apiserver

from .backends import serve
from .gw_harness import BUNDLE, MANIFEST
from .harness import free_port, run, until


async def test_servicenet_ingress_with_gateway(tmp_path: Path) -> None:
    backend, gw_port, health = free_port(), free_port(), free_port()
    runner = await serve("app", "127.0.0.1", [backend])
    try:
        async with running_apiserver(tmp_path / "api") as api:
            await api.kubectl("apply", "--server-side", "-f", str(BUNDLE))
            await api.kubectl("wait", "--for", "condition=established", "--timeout=30s", "crd", "--all")
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "servicenet.cli", "ingress", "--kubeconfig", str(api.kubeconfig),
                "--state-dir", str(tmp_path / "ing"), "--http-port", str(free_port()), "--https-port",
                str(free_port()), "--health-listen", f"127.0.0.1:{health}", "--gateway",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env)
            assert proc.stdout is not None
            try:
                await asyncio.wait_for(proc.stdout.readline(), 60)
                await api.kubectl("apply", "-f", "-", input=MANIFEST.format(port=gw_port, backend=backend).encode())

                async def served() -> bool:
                    rc, out = await run("curl", "-s", "-H", "Host: app.test", f"http://127.0.0.1:{gw_port}/app/x")
                    return rc == 0 and '"name": "app"' in out
                await until(served, 30, 0.1, what="the HTTPRoute served on the listener's port")
                rc, out = await run("curl", "-s", "-w", " %{http_code}", "-H", "Host: app.test",
                                    f"http://127.0.0.1:{gw_port}/other")
                assert out.endswith(" 404"), out

                async def programmed() -> str:
                    _, out, _ = await api.kubectl("get", "gateway", "web")
                    return out if re.search(r"^web\s+servicenet\s+127\.0\.0\.1\s+True\s", out, re.M) else ""
                await until(programmed, 30, 0.2, what="kubectl get gateway: address and PROGRAMMED True")


                async def metrics() -> bool:  # the gateway's per-route metrics on the controller's /metrics
                    _, out = await run("curl", "-s", f"http://127.0.0.1:{health}/metrics")
                    return 'servicenet_gateway_requests_total{backend=' in out and 'code="404"' in out
                await until(metrics, 20, 0.2, what="servicenet_gateway_requests_total on /metrics")
            finally:
                proc.terminate()
                assert await asyncio.wait_for(proc.wait(), 30) == 0
            rc, left = await run("pgrep", "-f", str(tmp_path / "ing"))
            assert left == "", left  # both HAProxies stopped with the controller
    finally:
        await runner.cleanup()
