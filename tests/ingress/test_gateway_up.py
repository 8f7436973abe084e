"""``servicenet up`` (loopback) starts the gateway controller once the Gateway API CRDs are installed:
objects applied with kubectl are served on the listener's port, and the controller's own identity
(RBAC) writes the Gateway's status."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

from servicenet.testing import kubectl

from .backends import serve
from .gw_harness import BUNDLE, MANIFEST
from .harness import free_port, run, until


async def test_gateway_through_servicenet_up(tmp_path: Path) -> None:
    backend, gw_port = free_port(), free_port()
    runner = await serve("app", "127.0.0.1", [backend])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "servicenet.cli", "up", "--network", "loopback", "--data-dir", str(tmp_path / "d"),
        "--api-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0", "--ingress-http-port", str(free_port()),
        "--ingress-https-port", str(free_port()), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    try:
        banner = ""
        while "Point kubectl at it" not in banner:
            line = await asyncio.wait_for(proc.stdout.readline(), 90)
            assert line, "servicenet up exited early"
            banner += line.decode()
        assert "once the Gateway API CRDs are installed" in banner, banner
        kc = tmp_path / "d" / "kubeconfig"
        await kubectl(kc, "apply", "--server-side", "-f", str(BUNDLE))
        await kubectl(kc, "wait", "--for", "condition=established", "--timeout=30s", "crd", "--all")
        await kubectl(kc, "apply", "-f", "-", input=MANIFEST.format(port=gw_port, backend=backend).encode())

        async def served() -> bool:
            rc, out = await run("curl", "-s", "-H", "Host: app.test", f"http://127.0.0.1:{gw_port}/app/x")
            return rc == 0 and '"name": "app"' in out
        await until(served, 60, 0.2, what="the HTTPRoute served once the CRDs appeared")

        async def programmed() -> bool:
            _, out, _ = await kubectl(kc, "get", "gateway", "web")
            return bool(re.search(r"^web\s+servicenet\s+127\.0\.0\.1\s+True\s", out, re.M))
        await until(programmed, 30, 0.2, what="Gateway status written by the ingress identity")
        _, out, _ = await kubectl(kc, "get", "httproute", "app", "-o",
                                  "jsonpath={.status.parents[0].conditions[?(@.type==\"Accepted\")].status}")
        assert out == "True", out
    finally:
        proc.send_signal(2)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await runner.cleanup()
    rc, left = await run("pgrep", "-f", str(tmp_path / "d" / "gateway"))
    assert left == "", left
