"""Changes without reloads (endpoints, certificates), bad input that never takes the data plane
down, and the data plane under load while routes and endpoints change (wrk + a websocket)."""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from .backends import serve
from .harness import Stack, free_port, ingress_stack, until
from .objects import ingress, path, rule, service, slice_, tls_secret
from .pki import CA

NET = "networking.k8s.io/v1"


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[Stack, list[int]]]:
    """A stack with Service ``web`` (two endpoints on two echo ports) behind Ingress ``web`` on w.test."""
    ports = [free_port(), free_port()]
    runner = await serve("e:", "127.0.0.1", ports)
    try:
        async with ingress_stack(tmp_path) as s:
            await s.create(service("web", [("http", 80)]))
            await s.create(slice_("web", ["127.0.0.1", "127.0.0.2"], [("http", ports[0])]))
            # 127.0.0.2:port is not listening: give each endpoint its own slice and port instead
            await s.client.delete("discovery.k8s.io/v1", "endpointslices", "default", "web-manual")
            await s.create(slice_("web", ["127.0.0.1"], [("http", ports[0])], name="web-a"))
            b = await s.create(slice_("web", ["127.0.0.1"], [("http", ports[1])], name="web-b"))
            ing = await s.create(ingress("web", [rule("w.test", path("/", "web"))]))
            await s.applied(b, ing)
            yield s, ports
    finally:
        await runner.cleanup()


async def _answers(sess: aiohttp.ClientSession, s: Stack, n: int) -> list[tuple[float, str]]:
    out = []
    for _ in range(n):
        async with sess.get(f"http://127.0.0.1:{s.http_port}/", headers={"Host": "w.test"}) as r:
            out.append((time.monotonic(), (await r.json())["name"]))
    return out


async def test_endpoint_not_ready_leaves_rotation_within_100ms_without_reload(two: tuple[Stack, list[int]]) -> None:
    s, ports = two
    assert s.ctl.haproxy is not None
    reloads = await s.ctl.haproxy.master_reloads()
    b_name = f"e:{ports[1]}"
    async with aiohttp.ClientSession() as sess:
        assert {n for _, n in await _answers(sess, s, 10)} == {f"e:{ports[0]}", b_name}
        slb = await s.client.get("discovery.k8s.io/v1", "endpointslices", "default", "web-b")
        slb["endpoints"][0]["conditions"] = {"ready": False, "serving": False}
        t0 = time.monotonic()
        await s.client.update("discovery.k8s.io/v1", "endpointslices", "default", "web-b", slb)
        seen: list[tuple[float, str]] = []
        while time.monotonic() - t0 < 0.5:
            seen += await _answers(sess, s, 1)
        after = await _answers(sess, s, 50)
    last_b = max((t for t, n in seen if n == b_name), default=t0)
    assert last_b - t0 < 0.100, f"endpoint still served {1000 * (last_b - t0):.0f} ms after the write"
    assert all(n != b_name for _, n in after)
    assert await s.ctl.haproxy.master_reloads() == reloads, "an endpoint change reloaded HAProxy"


async def _served_serial(port: int, ca: Path) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="w.test")
    der = w.get_extra_info("ssl_object").getpeercert(binary_form=True)
    w.close()
    return x509.load_der_x509_certificate(der).serial_number


async def test_certificate_rotation_within_1s_without_reload(two: tuple[Stack, list[int]], tmp_path: Path) -> None:
    s, _ = two
    assert s.ctl.haproxy is not None
    ca = CA.new()
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    crt, key, serial1 = ca.leaf("w.test")
    sec = await s.create(tls_secret("w-tls", crt, key))
    ing = await s.put(ingress("web", [rule("w.test", path("/", "web"))], tls=[{"hosts": ["w.test"],
                                                                                 "secretName": "w-tls"}]))
    await s.applied(sec, ing)
    assert await _served_serial(s.https_port, tmp_path / "ca.pem") == serial1
    reloads = await s.ctl.haproxy.master_reloads()
    crt2, key2, serial2 = ca.leaf("w.test")
    body = tls_secret("w-tls", crt2, key2)
    body["metadata"]["resourceVersion"] = sec["metadata"]["resourceVersion"]
    t0 = time.monotonic()
    await s.client.update("v1", "secrets", "default", "w-tls", body)
    while await _served_serial(s.https_port, tmp_path / "ca.pem") != serial2:
        assert time.monotonic() - t0 < 1.0, "new handshakes still get the old certificate after 1 s"
    assert await s.ctl.haproxy.master_reloads() == reloads, "a certificate rotation reloaded HAProxy"


async def test_bad_input_is_reported_and_never_breaks_other_routes(two: tuple[Stack, list[int]]) -> None:
    s, ports = two
    assert s.ctl.haproxy is not None
    regex = {"nginx.ingress.kubernetes.io/use-regex": "true"}
    bad = [
        ingress("bad-regex", [rule("r.test", path("/a(", "web", 80, "ImplementationSpecific"))], annotations=regex),
        ingress("no-secret", [rule("t.test", path("/", "web"))], tls=[{"hosts": ["t.test"], "secretName": "nope"}]),
        ingress("crlf", [rule("c.test", path("/", "web"))],
                annotations={"nginx.ingress.kubernetes.io/canary-by-header-value": "x\r\nInjected: 1"}),
        ingress("zz-conflict", [rule("w.test", path("/", "web"))]),  # same second: the name breaks the tie
        ingress("bad-cert", [rule("b.test", path("/", "web"))], tls=[{"hosts": ["b.test"], "secretName": "junk"}]),
        # Python's re accepts \u, HAProxy's PCRE2 does not: caught by haproxy -c, isolated to this Ingress
        ingress("pcre", [rule("p.test", path("/x\\u0041", "web", 80, "ImplementationSpecific"))], annotations=regex),
    ]
    junk = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "junk", "namespace": "default"},
            "data": {"tls.crt": "bm90IGEgY2VydA==", "tls.key": "bm90IGEga2V5"}}
    written = [await s.create(junk)] + [await s.create(o) for o in bad]
    await s.applied(*written)
    want = {"bad-regex": "InvalidRegex", "no-secret": "SecretNotFound", "crlf": "InvalidAnnotation",
            "zz-conflict": "PathConflict", "bad-cert": "InvalidCertificate", "pcre": "RejectedByDataPlane"}

    async def events() -> bool:
        evs = (await s.client.list("v1", "events", "default"))["items"]
        got = {(e["involvedObject"]["name"], e["reason"]) for e in evs}
        return all((n, r) in got for n, r in want.items())

    try:
        await until(events, 10, what="an Event per rejected configuration")
    except AssertionError:
        evs = (await s.client.list("v1", "events", "default"))["items"]
        raise AssertionError([(e["involvedObject"]["name"], e["reason"]) for e in evs]) from None
    assert "default/pcre" in s.ctl._quarantine and "default/pcre" not in s.ctl.table.ingresses
    assert await s.name("w.test", "/") in {f"e:{p}" for p in ports}
    # the host whose Secret is missing still serves, with the default certificate
    rc, out = await s.curl("-k", "--resolve", f"t.test:{s.https_port}:127.0.0.1", "-w", "\n%{http_code}",
                           f"https://t.test:{s.https_port}/")
    assert rc == 0 and out.endswith("\n200") and '"name": "e:' in out, out
    rc, out = await s.curl("-k", "-v", "--resolve", f"t.test:{s.https_port}:127.0.0.1", "-o", "/dev/null",
                           f"https://t.test:{s.https_port}/")
    assert "servicenet-ingress-default" in out, out
    # a configuration HAProxy refuses is never installed: the running one keeps serving
    pid = await s.ctl.haproxy.worker_pid()
    err = await s.ctl.haproxy.reload("global\n    this-is-not-a-keyword\n")
    assert err and "this-is-not-a-keyword" in err
    assert await s.ctl.haproxy.worker_pid() == pid
    assert await s.name("w.test", "/") in {f"e:{p}" for p in ports}


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk missing: scripts/install-deps.sh installs it")
async def test_route_changes_and_endpoint_flips_under_load(two: tuple[Stack, list[int]]) -> None:
    s, ports = two
    assert s.ctl.haproxy is not None
    async with aiohttp.ClientSession() as sess:
        ws = await sess.ws_connect(f"http://127.0.0.1:{s.http_port}/ws", headers={"Host": "w.test"})
        await ws.send_str("hello")
        first = (await ws.receive(timeout=5)).data
        assert first.endswith(":hello")
        reloads = await s.ctl.haproxy.master_reloads()
        wrk = await asyncio.create_subprocess_exec(
            "wrk", "-t1", "-c16", "-d300s", "-H", "Host: w.test", f"http://127.0.0.1:{s.http_port}/",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)

        async def route_changes() -> None:
            for i in range(100):
                paths = [path("/", "web")] + [path(f"/r{j}", "web") for j in range(i % 7 + 1)]
                await s.put(ingress("web", [rule("w.test", *paths)]))
                await asyncio.sleep(0.05)

        async def endpoint_flips() -> None:
            for i in range(1000):
                sl = await s.client.get("discovery.k8s.io/v1", "endpointslices", "default", "web-b")
                sl["endpoints"][0]["conditions"] = {"ready": i % 2 == 1}
                await s.client.update("discovery.k8s.io/v1", "endpointslices", "default", "web-b", sl)

        t0 = time.monotonic()
        await asyncio.gather(route_changes(), endpoint_flips())
        changes_s = time.monotonic() - t0
        assert wrk.returncode is None, "wrk's 300 s ran out before the changes were done"
        wrk.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
        out = (await wrk.communicate())[0].decode()
        await ws.send_str("still-there")
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT and msg.data.endswith(":still-there"), msg
        await ws.close()
    done = int(re.search(r"(\d+) requests in", out).group(1)) if "requests in" in out else 0
    assert "Socket errors" not in out and "Non-2xx" not in out, out
    assert done > 1000, out
    assert await s.ctl.haproxy.master_reloads() > reloads  # the route changes did reload (seamlessly)
    print(f"{done} requests, 0 failed, during 100 route changes + 1000 endpoint flips in {changes_s:.1f} s")
