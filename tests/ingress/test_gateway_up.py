"""``servicenet up`` (loopback) starts the gateway controller once the Gateway API CRDs are installed:
objects applied with kubectl are served on the listener's port, and the controller's own identity
(RBAC) writes the Gateway's status."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from servicenet.testing import kubectl

from .backends import serve
from .gw_harness import BUNDLE, MANIFEST
from .harness import free_port, run, servicenet_up, until, up_banner


async def test_gateway_through_servicenet_up(tmp_path: Path) -> None:
    backend, gw_port = free_port(), free_port()
    runner = await serve("app", "127.0.0.1", [backend])
    proc = await servicenet_up(tmp_path / "d", free_port(), free_port())
    try:
        banner = await up_banner(proc)
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
