"""Changes without reloads (endpoints, certificates), bad input that never takes the data plane
down, and the data plane under load while routes and endpoints change (wrk + a websocket)."""

from __future__ import annotations

import asyncio
import os
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


async def test_route_changes_are_runtime_map_changes(two: tuple[Stack, list[int]]) -> None:
    """A new Ingress to a running backend, a changed path and a removed Ingress: map entries through
    the runtime API, no reload; a route that needs its own rule (an allow-list) reloads."""
    s, ports = two
    assert s.ctl.haproxy is not None
    reloads = await s.ctl.haproxy.master_reloads()
    names = {f"e:{p}" for p in ports}
    t0 = time.monotonic()
    await s.create(ingress("new", [rule("n.test", path("/a", "web", 80, "Exact"), path("/b", "web"))]))
    await until(lambda: _status(s, "n.test", "/a"), 10, 0.002, what="the new route answering")
    took = time.monotonic() - t0
    assert await s.name("n.test", "/a") in names and await s.name("n.test", "/b/c") in names
    assert await s.name("n.test", "/a/x") is None and await s.name("n.test", "/bc") is None
    assert await s.ctl.haproxy.master_reloads() == reloads, "a new route reloaded HAProxy"
    await s.put(ingress("new", [rule("n.test", path("/c", "web"))]))
    await until(lambda: _status(s, "n.test", "/b", 404), 10, 0.002, what="the old path gone")
    assert await s.name("n.test", "/c/d") in names
    await s.client.delete(NET, "ingresses", "default", "new")
    await until(lambda: _status(s, "n.test", "/c", 404), 10, 0.002, what="the deleted Ingress gone")
    assert await s.ctl.haproxy.master_reloads() == reloads, "a route change reloaded HAProxy"
    obj = await s.put(ingress("new", [rule("n.test", path("/d", "web"))],
                              annotations={"nginx.ingress.kubernetes.io/whitelist-source-range": "10.9.9.0/24"}))
    await s.applied(obj)
    assert (await s.get("n.test", "/d"))[0] == 403
    assert await s.ctl.haproxy.master_reloads() == reloads + 1
    lines = s.ctl.access.lines  # the new worker logs into the same pipe
    assert await s.name("w.test", "/") in names
    await until(lambda: s.ctl.access.lines > lines, 5, what="the new worker's access-log line")
    print(f"new route answering {1000 * took:.0f} ms after the API write, no reload")


async def _status(s: Stack, host: str, p: str, want: int = 200) -> bool:
    return (await s.get(host, p))[0] == want


async def _wrk(port: int, url_path: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "wrk", "-t1", "-c8", "-d300s", "-H", "Host: w.test", f"http://127.0.0.1:{port}{url_path}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)


async def _wrk_done(wrk: asyncio.subprocess.Process) -> tuple[int, str]:
    assert wrk.returncode is None, "wrk's 300 s ran out before the changes were done"
    wrk.send_signal(signal.SIGINT)  # wrk prints its summary on SIGINT
    out = (await wrk.communicate())[0].decode()
    done = int(m.group(1)) if (m := re.search(r"(\d+) requests in", out)) else 0
    assert "Socket errors" not in out and "Non-2xx" not in out, out
    return done, out


@pytest.mark.skipif(shutil.which("wrk") is None and not os.environ.get("CI"),
                    reason="wrk missing: scripts/install-deps.sh installs it")
async def test_route_changes_and_endpoint_flips_under_load(two: tuple[Stack, list[int]]) -> None:
    """wrk on a route that stays (/r0) and on the catch-all while 100 route changes (90 through the
    maps, 10 that toggle an allow-list and so reload) and 1,000 endpoint flips go on: no failed
    request, and a websocket opened before keeps working."""
    s, ports = two
    assert s.ctl.haproxy is not None
    async with aiohttp.ClientSession() as sess:
        ws = await sess.ws_connect(f"http://127.0.0.1:{s.http_port}/ws", headers={"Host": "w.test"})
        await ws.send_str("hello")
        first = (await ws.receive(timeout=5)).data
        assert first.endswith(":hello")
        await s.put(ingress("web", [rule("w.test", path("/", "web"), path("/r0", "web"))]))
        await s.put(ingress("x", [rule("x.test", path("/", "web"))]))
        await s.ctl.wait_applied(30)
        reloads = await s.ctl.haproxy.master_reloads()
        wrks = [await _wrk(s.http_port, "/"), await _wrk(s.http_port, "/r0")]
        structural = 0

        async def route_changes() -> None:
            nonlocal structural
            for i in range(100):
                if i % 10 == 9:  # another host's Ingress gains or loses an allow-list: a reload
                    allow = {"nginx.ingress.kubernetes.io/whitelist-source-range": "127.0.0.0/8"} if i % 20 == 9 else {}
                    await s.put(ingress("x", [rule("x.test", path("/", "web"))], annotations=allow))
                    structural += 1
                else:
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
        results = [await _wrk_done(w) for w in wrks]
        await ws.send_str("still-there")
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT and msg.data.endswith(":still-there"), msg
        await ws.close()
    assert all(done > 500 for done, _ in results), results
    n = await s.ctl.haproxy.master_reloads() - reloads
    # the allow-list toggles reload (several may fold into one sync); nothing else does
    assert 1 <= n <= structural, f"{n} reloads for {structural} structural changes"
    print(f"{sum(d for d, _ in results)} requests, 0 failed, during 100 route changes ({n} reloads) "
          f"+ 1000 endpoint flips in {changes_s:.1f} s")
