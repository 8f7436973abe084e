"""The walkthrough through ``servicenet up`` in loopback mode: the ingress runs in-process under its
own identity (RBAC), on the ports given on the command line, and serves the kubectl-applied objects."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from servicenet.testing import kubectl

from .backends import serve
from .harness import free_port, servicenet_up, until, up_banner
from .pki import CA
from .walkthrough import INGRESS_YAML, backends_yaml, check_walkthrough, secret_yaml


async def test_walkthrough_through_servicenet_up(tmp_path: Path) -> None:
    http, https = free_port(), free_port()
    ui_port, api_port = free_port("127.7.0.57"), free_port("127.7.0.58")
    ui = await serve("ui", "127.7.0.57", [ui_port])
    api = await serve("api", "127.7.0.58", [api_port])
    proc = await servicenet_up(tmp_path / "d", http, https)
    try:
        banner = await up_banner(proc)
        assert f"127.0.0.1:{https}" in banner, banner
        kc = tmp_path / "d" / "kubeconfig"
        ca = CA.new()
        (tmp_path / "ca.pem").write_bytes(ca.pem)
        crt, key, _ = ca.leaf("bbs.test.com")
        for doc in (backends_yaml(("127.7.0.57", ui_port), ("127.7.0.58", api_port)), secret_yaml(crt, key),
                    INGRESS_YAML):
            await kubectl(kc, "apply", "-f", "-", input=doc.encode())

        async def published() -> str | None:
            _, out, _ = await kubectl(kc, "get", "ingress", "bbs", "-o", "jsonpath={.status.loadBalancer.ingress}")
            return out or None

        status = await until(published, 30, what="Ingress status written by the controller's identity")
        assert f'"port":{https}' in status, status

        async def serving() -> bool:
            rc = await asyncio.create_subprocess_exec(
                "curl", "-s", "-o", "/dev/null", "--cacert", str(tmp_path / "ca.pem"), "--resolve",
                f"bbs.test.com:{https}:127.0.0.1", f"https://bbs.test.com:{https}/api/x")
            return await rc.wait() == 0

        await until(serving, 30, what="the certificate from the Secret served")
        await check_walkthrough([], tmp_path / "ca.pem", "127.0.0.1", https, http, upload_mb=(2, 250), tmp=tmp_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        await ui.cleanup()
        await api.cleanup()
