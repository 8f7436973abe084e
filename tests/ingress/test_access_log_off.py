"""The ingress without its access log (``--no-access-log``): HAProxy gets no log target and no pipe,
requests are still routed with every reverse-proxy header (a client's own values replaced), and
X-Forwarded-Port is the listener's port on both listeners (a constant per listener, not a kernel
lookup); per-backend counters come from HAProxy's statistics."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import aiohttp
import pytest

from servicenet.ingress import cli
from servicenet.ingress.certs import self_signed

from .backends import serve
from .harness import free_port, ingress_stack, run, until
from .objects import ingress, path, rule, service, slice_, tls_secret

NET = "networking.k8s.io/v1"
HOST = "echo.test"


def test_flag_turns_the_log_off(tmp_path: Path) -> None:
    args = cli._parser().parse_args(["--state-dir", str(tmp_path), "--no-access-log"])
    cfg = cli.config(args, ("127.0.0.1", 0))
    assert cfg.access_log is False and cfg.access_log_file is None
    assert cli.config(cli._parser().parse_args(["--state-dir", str(tmp_path)]), ("127.0.0.1", 0)).access_log
    with pytest.raises(SystemExit):
        cli.config(cli._parser().parse_args(["--no-access-log", "--access-log", str(tmp_path / "a.log")]),
                   ("127.0.0.1", 0))
    up = argparse.Namespace(data_dir=str(tmp_path), ingress_no_access_log=True)
    built = cli.build_for_up(None, up, "loopback")  # type: ignore[arg-type]
    assert built.ingress.cfg.access_log is False and built.ingress.cfg.access_log_file is None


async def test_served_without_access_log(tmp_path: Path) -> None:
    port = free_port()
    echo = await serve("echo", "127.0.0.1", [port])
    try:
        async with ingress_stack(tmp_path, access_log=False) as s:
            c = s.api.client
            pem = self_signed(HOST, (HOST,))
            crt, key = pem.split(b"-----BEGIN PRIVATE KEY-----")
            await c.create("v1", "secrets", "default", tls_secret("echo-tls", crt, b"-----BEGIN PRIVATE KEY-----" + key))
            await c.create("v1", "services", "default", service("echo", [("http", port)]))
            await c.create("discovery.k8s.io/v1", "endpointslices", "default",
                           slice_("echo", ["127.0.0.1"], [("http", port)]))
            await c.create(NET, "ingresses", "default",
                           ingress("echo", [rule(HOST, path("/", "echo", port))], tls=[{"hosts": [HOST], "secretName": "echo-tls"}],
                                   annotations={"nginx.ingress.kubernetes.io/ssl-redirect": "false"}))
            assert s.ctl.haproxy is not None and s.ctl.haproxy.log_fd is None
            assert "log stdout" not in s.ctl.haproxy.cfg.read_text()
            spoof = ["-H", "X-Real-IP: 6.6.6.6", "-H", "X-Forwarded-Port: 1", "-H", "X-Forwarded-Proto: gopher",
                     "-H", "X-Forwarded-Host: evil"]
            for scheme, listener in (("http", s.http_port), ("https", s.https_port)):
                url = f"{scheme}://{HOST}:{listener}/x"

                async def answer(url: str = url, listener: int = listener) -> dict[str, str] | None:
                    rc, out = await run("curl", "-sk", "--resolve", f"{HOST}:{listener}:127.0.0.1", *spoof, url)
                    try:
                        return json.loads(out)["headers"]  # type: ignore[no-any-return]
                    except ValueError:
                        return None

                h = await until(answer, 20, what=f"{scheme} routed")
                assert h["x-forwarded-proto"] == scheme and h["x-forwarded-port"] == str(listener), h
                assert h["x-real-ip"] == "127.0.0.1" and h["x-forwarded-host"] == f"{HOST}:{listener}", h
            assert s.ctl.access.lines == 0
            # per-backend counters come from HAProxy's own statistics instead (2 requests, both 200)
            await s.ctl.read_backend_stats()
            async with aiohttp.ClientSession() as sess, sess.get(s.ctl.health.url + "/metrics") as r:
                text = await r.text()
            lines = [ln for ln in text.splitlines() if ln.startswith("servicenet_ingress_backend_responses_total")
                     and 'code_class="2xx"' in ln and "be_default_echo_" in ln]
            assert len(lines) == 1 and lines[0].endswith(" 2.0"), text
            assert "servicenet_ingress_requests_total{" not in text  # the per-route ones need the log
    finally:
        await echo.cleanup()
