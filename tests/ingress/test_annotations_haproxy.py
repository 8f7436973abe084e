"""ingress-nginx annotations through HAProxy: rewrite-target with use-regex, source allow-lists,
cookie affinity, canary by header and by weight, backend-protocol HTTPS, and passive outlier
detection taking a refusing endpoint out."""

from __future__ import annotations

import re
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from .backends import serve
from .harness import Stack, free_port, ingress_stack
from .objects import ingress, path, rule, service, slice_
from .pki import CA

NGINX = "nginx.ingress.kubernetes.io/"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[Stack, list[int]]]:
    ports = [free_port() for _ in range(3)]
    runner = await serve("s:", "127.0.0.1", ports)
    try:
        async with ingress_stack(tmp_path) as s:
            for i, p in enumerate(ports):
                await s.create(service(f"s{i}", [("http", 80)]))
                await s.create(slice_(f"s{i}", ["127.0.0.1"], [("http", p)]))
            yield s, ports
    finally:
        await runner.cleanup()


async def test_rewrite_allowlist_affinity(stack: tuple[Stack, list[int]]) -> None:
    s, ports = stack
    both = await s.create(service("both", [("http", 80)]))
    sl = await s.create(slice_("both", ["127.0.0.1"], [("http", ports[1])], name="both-a"))
    sl2 = await s.create(slice_("both", ["127.0.0.1"], [("http", ports[2])], name="both-b"))
    objs = [
        ingress("rw", [rule("rw.test", path("/something(/|$)(.*)", "s0", 80, "ImplementationSpecific"))],
                annotations={NGINX + "rewrite-target": "/$2", NGINX + "use-regex": "true"}),
        ingress("deny", [rule("deny.test", path("/", "s0"))], annotations={NGINX + "whitelist-source-range": "10.0.0.0/8"}),
        ingress("allow", [rule("allow.test", path("/", "s0"))],
                annotations={NGINX + "whitelist-source-range": "10.0.0.0/8,127.0.0.0/8"}),
        ingress("sticky", [rule("sticky.test", path("/", "both"))], annotations={NGINX + "affinity": "cookie"}),
    ]
    written = [both, sl, sl2] + [await s.create(o) for o in objs]
    await s.applied(*written)
    code, body = await s.get("rw.test", "/something/else/x?y=1")
    assert code == 200 and isinstance(body, dict) and body["path"] == "/else/x?y=1", body
    code, body = await s.get("rw.test", "/SOMETHING")
    assert code == 200 and isinstance(body, dict) and body["path"] == "/", body
    assert (await s.get("deny.test", "/"))[0] == 403
    assert (await s.get("allow.test", "/"))[0] == 200
    url = f"http://127.0.0.1:{s.http_port}/"
    async with aiohttp.ClientSession() as sess:
        seen_plain = set()
        for _ in range(6):
            async with sess.get(url, headers={"Host": "sticky.test"}) as r:
                seen_plain.add((await r.json())["name"])
                cookie = r.cookies.get("INGRESSCOOKIE")
        assert len(seen_plain) == 2 and cookie is not None
    async with aiohttp.ClientSession() as sess:
        names = set()
        for _ in range(10):
            async with sess.get(url, headers={"Host": "sticky.test", "Cookie": f"INGRESSCOOKIE={cookie.value}"}) as r:
                names.add((await r.json())["name"])
        assert len(names) == 1, names


async def test_canary_by_header_and_weight(stack: tuple[Stack, list[int]]) -> None:
    s, ports = stack
    main = await s.create(ingress("main", [rule("can.test", path("/", "s0"))]))
    can = await s.create(ingress("can", [rule("can.test", path("/", "s1"))], annotations={
        NGINX + "canary": "true", NGINX + "canary-by-header": "X-Canary", NGINX + "canary-weight": "30"}))
    await s.applied(main, can)
    url = f"http://127.0.0.1:{s.http_port}/"
    async with aiohttp.ClientSession() as sess:
        async def names(n: int, extra: dict[str, str]) -> Counter[str]:
            c: Counter[str] = Counter()
            for _ in range(n):
                async with sess.get(url, headers={"Host": "can.test", **extra}) as r:
                    c[(await r.json())["name"]] += 1
            return c

        assert await names(20, {"X-Canary": "always"}) == Counter({f"s:{ports[1]}": 20})
        assert await names(20, {"X-Canary": "never"}) == Counter({f"s:{ports[0]}": 20})
        c = await names(1000, {})
    share = c[f"s:{ports[1]}"] / 1000
    assert 0.25 <= share <= 0.35, c


async def test_backend_https_and_passive_outlier_detection(stack: tuple[Stack, list[int]], tmp_path: Path) -> None:
    s, ports = stack
    ca = CA.new()
    crt, key, _ = ca.leaf("127.0.0.1")
    (tmp_path / "b.crt").write_bytes(crt)
    (tmp_path / "b.key").write_bytes(key)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "b.crt", tmp_path / "b.key")
    tport = free_port()
    tls_runner = await serve("tls:", "127.0.0.1", [tport], ssl_context=ctx)
    try:
        objs = [service("tlsb", [("https", 443)]), slice_("tlsb", ["127.0.0.1"], [("https", tport)]),
                ingress("tls", [rule("tls.test", path("/", "tlsb", 443))],
                        annotations={NGINX + "backend-protocol": "HTTPS"}),
                # one live endpoint and one that refuses connections
                service("flaky", [("http", 80)]),
                slice_("flaky", ["127.0.0.1"], [("http", ports[0])], name="flaky-a"),
                slice_("flaky", ["127.0.0.1"], [("http", free_port())], name="flaky-b"),
                ingress("flaky", [rule("flaky.test", path("/", "flaky"))])]
        written = [await s.create(o) for o in objs]
        await s.applied(*written)
        code, body = await s.get("tls.test", "/x")
        assert code == 200 and isinstance(body, dict) and body["name"] == f"tls:{tport}", body
        codes = Counter([(await s.get("flaky.test", "/"))[0] for _ in range(30)])
        assert codes == Counter({200: 30}), codes  # failed connects are redispatched
        assert s.ctl.haproxy is not None
        state = await s.ctl.haproxy.command("show servers state")
        flaky = [ln.split() for ln in state.splitlines() if re.match(r"\d+ be_default_flaky_", ln)]
        down = [f for f in flaky if f[4] == "127.0.0.1" and f[5] == "0"]  # srv_op_state 0: DOWN
        assert len(down) == 1, state
    finally:
        await tls_runner.cleanup()
