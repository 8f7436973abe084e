"""The walkthrough in loopback mode: outside "machines" are local addresses outside the cluster's
ranges (127.7.0.57/58), objects applied with kubectl, answers checked with curl and the test CA."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from .backends import serve
from .harness import free_port, ingress_stack, until
from .pki import CA
from .walkthrough import INGRESS_YAML, backends_yaml, check_walkthrough, declared_length_status, secret_yaml


async def test_walkthrough_loopback(tmp_path: Path) -> None:
    ui_port, api_port = free_port("127.7.0.57"), free_port("127.7.0.58")
    ui = await serve("ui", "127.7.0.57", [ui_port])
    api = await serve("api", "127.7.0.58", [api_port])
    ca = CA.new()
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    crt, key, _ = ca.leaf("bbs.test.com")
    try:
        async with ingress_stack(tmp_path) as s:
            k = s.api.kubectl
            await k("apply", "-f", "-", input=backends_yaml(("127.7.0.57", ui_port), ("127.7.0.58", api_port)).encode())
            await k("apply", "-f", "-", input=secret_yaml(crt, key).encode())
            await k("apply", "-f", "-", input=INGRESS_YAML.encode())

            async def published() -> str | None:
                _, out, _ = await k("get", "ingress", "bbs", "-o", "jsonpath={.status.loadBalancer.ingress}")
                return out or None

            status = await until(published, 20, what="Ingress status")
            assert '"ip":"127.0.0.1"' in status and f'"port":{s.https_port}' in status, status
            assert f'"port":{s.http_port}' in status, status
            await until(lambda: s.ctl.table.certs and s.ctl.structure, 20, what="certificate loaded")
            assert declared_length_status("127.0.0.1", s.http_port, 250 * 1024 * 1024) == 308  # redirect first
            await check_walkthrough([], tmp_path / "ca.pem", "127.0.0.1", s.https_port, s.http_port,
                                    upload_mb=(3, 250), tmp=tmp_path)
            # the access log saw them, and the metrics count them per route
            await until(lambda: s.ctl.access.lines >= 6, 5, what="the access-log lines (read every 100 ms)")
            text = (await _metrics(s.ctl.health.url))
            assert 'servicenet_ingress_requests_total{backend="be_default_bbs_api_8004' in text, text[:3000]
            assert 'route="default/bbs bbs.test.com/api"' in text
    finally:
        await ui.cleanup()
        await api.cleanup()


async def _metrics(url: str) -> str:
    async with aiohttp.ClientSession() as sess, sess.get(url + "/metrics") as r:
        return await r.text()
