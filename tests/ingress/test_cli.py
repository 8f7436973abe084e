"""``servicenet ingress`` alone against an API server: prints its addresses, creates the class,
serves (404 for no route), answers /readyz, and leaves nothing behind on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from servicenet.testing import running_apiserver

from .harness import free_port, run


async def test_servicenet_ingress_command(tmp_path: Path) -> None:
    async with running_apiserver(tmp_path / "api") as api:
        hp, sp, hl = free_port(), free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "servicenet.cli", "ingress", "--kubeconfig", str(api.kubeconfig),
            "--state-dir", str(tmp_path / "ing"), "--http-port", str(hp), "--https-port", str(sp),
            "--health-listen", f"127.0.0.1:{hl}", "--create-class",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env)
        assert proc.stdout is not None
        try:
            banner = [(await asyncio.wait_for(proc.stdout.readline(), 60)).decode() for _ in range(3)]
            assert f"http   127.0.0.1:{hp}" in banner[0] and f"https  127.0.0.1:{sp}" in banner[1], banner
            cls = await api.client.get("networking.k8s.io/v1", "ingressclasses", None, "servicenet")
            assert cls["spec"]["controller"] == "servicenet.io/ingress-controller"
            rc, out = await run("curl", "-s", f"http://127.0.0.1:{hl}/readyz")
            assert out == "ok", out
            rc, out = await run("curl", "-s", "-w", " %{http_code}", f"http://127.0.0.1:{hp}/")
            assert out.endswith(" 404"), out
        finally:
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        rc, left = await run("pgrep", "-f", str(tmp_path / "ing"))
        assert left == "", left  # HAProxy stopped with the controller
