"""Acceptance (Gateway API): a Gateway with HTTP and HTTPS listeners and several HTTPRoutes, served by
the gateway controller's HAProxy on loopback, applied through the API server with upstream's CRDs.

Each filter through HAProxy, weights over 2,000 requests, a cross-namespace backendRef refused
without a ReferenceGrant and accepted with one, 404/500/503/421 answers, and every status condition.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import prometheus_client
import pytest
import pytest_asyncio
from aiohttp import web

from . import gwobjects as g
from .backends import serve
from .gw_harness import GwStack, gateway_stack
from .harness import free_port, run, until
from .objects import service, slice_, tls_secret
from .pki import CA

Obj = dict[str, Any]
GW = "gateway.networking.k8s.io/v1"
# one API server and gateway controller for the module (each test in namespaces of its own, on ports
# of its own): starting them is most of a test's time
pytestmark = pytest.mark.asyncio(loop_scope="module")
rt_gateway, rt_route = partial(g.gateway, ns="rt"), partial(g.httproute, ns="rt")
bad_gateway, bad_route = partial(g.gateway, ns="bad"), partial(g.httproute, ns="bad")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gs(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GwStack]:
    async with gateway_stack(tmp_path_factory.mktemp("gateway")) as stack:
        await stack.put(g.gateway_class())
        yield stack


def _ns(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _redirect(**rr: Any) -> Obj:
    return {"type": "RequestRedirect", "requestRedirect": rr}


async def _slow_server(port: int) -> web.AppRunner:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(3)
        return web.Response(text="late")
    app = web.Application()
    app.router.add_get("/{tail:.*}", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def _parent_conds(status: Obj, section: str | None = None) -> dict[str, tuple[str, str]]:
    for p in status.get("parents") or []:
        if section is None or p["parentRef"].get("sectionName") == section:
            assert p["controllerName"] == "servicenet.io/gateway-controller", p
            assert all(c["observedGeneration"] == 1 and c["lastTransitionTime"] for c in p["conditions"]), p
            return g.conds(p)
    return {}


async def _backends(gs: GwStack, ports: dict[str, int]) -> None:
    await gs.put(_ns("other"))
    for name, port in ports.items():
        ns = "other" if name == "c" else "default"
        await gs.put(service(name, [("http", 80)], ns=ns))
        await gs.put(slice_(name, ["127.0.0.1"], [("http", port)], ns=ns))
    await gs.put(service("empty", [("http", 80)]))
    await gs.put(slice_("empty", ["127.0.0.1"], [("http", 1)], ready=False))


async def test_gateway_http_and_https_listeners_end_to_end(gs: GwStack, tmp_path: Path) -> None:
    names = ("a", "b", "c")
    ports = {n: free_port() for n in (*names, "m")}
    runners = [await serve(f"s:{n}", "127.0.0.1", [ports[n]]) for n in names]
    mirror_log: list[tuple[str, dict[str, str], bytes]] = []
    runners.append(await _recording_server(ports["m"], mirror_log))
    slow_port = free_port()
    runners.append(await _slow_server(slow_port))
    ports["slow"] = slow_port
    http_port, https_port = free_port(), free_port()
    ca = CA.new()
    crt, key, _ = ca.leaf("secure.test")
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    try:
        await _backends(gs, ports)
        await gs.put(tls_secret("secure-cert", crt, key))
        await gs.put(g.gateway_class())
        await gs.put(g.gateway("gw", g.listener("http", http_port),
                             g.listener("https", https_port, "HTTPS", "secure.test", certs=[{"name": "secure-cert"}])))
        gwp = [g.parent("gw")]
        routes = [
            g.httproute("filters", gwp,
                      g.hrule(g.bref("a"), matches=[g.match(("PathPrefix", "/hdr"))], filters=[
                          {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                              "set": [{"name": "X-Set", "value": "one two"}],
                              "add": [{"name": "X-Add", "value": "added"}], "remove": ["X-Drop"]}},
                          {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                              "set": [{"name": "X-Resp", "value": "set"}],
                              "add": [{"name": "X-Resp-Add", "value": "1"}]}}]),
                      g.hrule(matches=[g.match(("PathPrefix", "/to-https"))], filters=[
                          _redirect(scheme="https", port=https_port, statusCode=301)]),
                      g.hrule(matches=[g.match(("Exact", "/moved"))], filters=[
                          _redirect(hostname="other.test", path={"type": "ReplaceFullPath",
                                                                  "replaceFullPath": "/elsewhere"})]),
                      g.hrule(matches=[g.match(("PathPrefix", "/old"))], filters=[
                          _redirect(path={"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"},
                                    statusCode=308)]),
                      g.hrule(g.bref("a"), matches=[g.match(("PathPrefix", "/v1"))], filters=[
                          {"type": "URLRewrite", "urlRewrite": {"hostname": "inner.test", "path": {
                              "type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}}]),
                      g.hrule(g.bref("a"), matches=[g.match(("PathPrefix", "/full"))], filters=[
                          {"type": "URLRewrite", "urlRewrite": {"path": {
                              "type": "ReplaceFullPath", "replaceFullPath": "/fixed"}}}]),
                      g.hrule(g.bref("a"), matches=[g.match(("PathPrefix", "/mirror"))], filters=[
                          {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m", "port": 80}}}]),
                      g.hrule(g.bref("slow"), matches=[g.match(("PathPrefix", "/slow"))], timeouts={"request": "500ms"}),
                      g.hrule(g.bref("a"), matches=[g.match(("PathPrefix", "/m"))]),
                      g.hrule(g.bref("b"), matches=[g.match(("PathPrefix", "/m"), method="POST")]),
                      g.hrule(g.bref("b"), matches=[g.match(("PathPrefix", "/m"), headers={"x-env": "canary"})]),
                      g.hrule(g.bref("m"), matches=[g.match(("PathPrefix", "/m"), query={"v": "2"})]),
                      g.hrule(g.bref("b"), matches=[g.match(("RegularExpression", "/re/[0-9]+$"))]),
                      g.hrule(g.bref("m"), matches=[{"path": {"type": "RegularExpression", "value": "/re/[0-9]+$"},
                                                 "headers": [{"name": "x-v", "type": "RegularExpression",
                                                              "value": "^v[0-9]$"}]}]),
                      g.hrule(g.bref("a"), matches=[{"path": {"type": "PathPrefix", "value": "/q"},
                                                 "queryParams": [{"name": "id", "type": "RegularExpression",
                                                                  "value": "^[a-f]+$"}]}]),
                      g.hrule(g.bref("a", weight=0), matches=[g.match(("PathPrefix", "/zero"))]),
                      hostnames=["f.test"]),
            g.httproute("weights", gwp, g.hrule(g.bref("a", weight=80), g.bref("b", weight=20)), hostnames=["w.test"]),
            g.httproute("unresolved", gwp, g.hrule(g.bref("a", weight=50), g.bref("missing", weight=50)),
                      g.hrule(g.bref("missing"), matches=[g.match(("PathPrefix", "/all-missing"))]), hostnames=["u.test"]),
            g.httproute("noeps", gwp, g.hrule(g.bref("empty")), hostnames=["n.test"]),
            g.httproute("xns", gwp, g.hrule(g.bref("c", ns="other")), hostnames=["x.test"]),
            g.httproute("badkind", gwp, g.hrule(g.bref("thing", kind="Thing")), hostnames=["k.test"]),
            g.httproute("secure", [g.parent("gw", "https")], g.hrule(g.bref("b")), hostnames=["secure.test"]),
            g.httproute("upgrade", [g.parent("gw", "http")], g.hrule(filters=[_redirect(scheme="https", port=https_port)]),
                      hostnames=["secure.test"]),
            g.httproute("nohost", [g.parent("gw", "https")], g.hrule(g.bref("a")), hostnames=["nomatch.test"]),
            g.httproute("nosection", [g.parent("gw", "nope")], g.hrule(g.bref("a")), hostnames=["ns.test"]),
            g.httproute("foreign", [g.parent("gw", ns="default")], g.hrule(g.bref("a")), hostnames=["o.test"], ns="other"),
            g.httproute("badregex", gwp, g.hrule(g.bref("a"), matches=[g.match(("RegularExpression", "/(unclosed"))]),
                      hostnames=["re.test"]),
        ]
        for r in routes:
            await gs.put(r)
        base = f"http://127.0.0.1:{http_port}"

        # -- statuses -------------------------------------------------------------------------
        gcs = await gs.status("GatewayClass", "sn", None, lambda s: g.conds(s).get("Accepted", ("",))[0] == "True")
        assert g.conds(gcs) == {"Accepted": ("True", "Accepted")}
        assert gcs["conditions"][0]["observedGeneration"] == 1
        gst = await gs.status("Gateway", "gw", want=lambda s: g.conds(s).get("Programmed", ("",))[0] == "True"
                              and s["listeners"][0]["attachedRoutes"] == 7)
        assert g.conds(gst) == {"Accepted": ("True", "Accepted"), "Programmed": ("True", "Programmed")}
        assert gst["addresses"] == [{"type": "IPAddress", "value": "127.0.0.1"}]
        lis = {li["name"]: li for li in gst["listeners"]}
        # http: the six routes naming the whole Gateway (their hostnames do not intersect
        # secure.test) and "upgrade"; https: "secure" only ("nohost" matches no hostname)
        assert (lis["http"]["attachedRoutes"], lis["https"]["attachedRoutes"]) == (7, 1), lis
        for li in lis.values():
            assert g.conds(li) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs"),
                                 "Programmed": ("True", "Programmed"), "Conflicted": ("False", "NoConflicts")}, li
            assert li["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
                                            {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"}]
            assert all(c["observedGeneration"] == 1 for c in li["conditions"])

        expect = {
            "filters": ("Accepted", "ResolvedRefs"), "weights": ("Accepted", "ResolvedRefs"),
            "unresolved": ("Accepted", "BackendNotFound"), "noeps": ("Accepted", "ResolvedRefs"),
            "xns": ("Accepted", "RefNotPermitted"), "badkind": ("Accepted", "InvalidKind"),
            "secure": ("Accepted", "ResolvedRefs"), "upgrade": ("Accepted", "ResolvedRefs"),
            "nohost": ("NoMatchingListenerHostname", "ResolvedRefs"),
            "nosection": ("NoMatchingParent", "ResolvedRefs"),
            "badregex": ("UnsupportedValue", "ResolvedRefs"),
        }
        for name, (acc, res) in expect.items():
            s = await gs.status("HTTPRoute", name, want=lambda s: s.get("parents"))
            c = _parent_conds(s)
            assert c["Accepted"] == ("True" if acc == "Accepted" else "False", acc), (name, c)
            assert c["ResolvedRefs"] == ("True" if res == "ResolvedRefs" else "False", res), (name, s)
        s = await gs.status("HTTPRoute", "foreign", "other", want=lambda s: s.get("parents"))
        assert _parent_conds(s)["Accepted"] == ("False", "NotAllowedByListeners")

        async def event() -> bool:
            evs = (await gs.client.list("v1", "events", "default"))["items"]
            return any(e["involvedObject"]["name"] == "badregex" and e["reason"] == "UnsupportedValue"
                       and e["type"] == "Warning" for e in evs)
        await until(event, 20, 0.1, what="a Warning Event on the rejected route")

        # -- filters through HAProxy --------------------------------------------------------------
        # a new connection per request: after a reload, a kept-alive connection finishes its next
        # request on the old worker (with the old configuration)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as sess:
            async def get(host: str, path: str, method: str = "GET", **kw: Any) -> tuple[int, Any, Any]:
                async with sess.request(method, base + path, headers={"Host": host, **kw.pop("headers", {})},
                                        allow_redirects=False, **kw) as r:
                    text = await r.text()
                    try:
                        return r.status, json.loads(text), r.headers
                    except ValueError:
                        return r.status, text, r.headers

            code, body, hdrs = await get("f.test", "/hdr/x", headers={"X-Drop": "1", "X-Add": "first"})
            assert code == 200 and body["name"] == "s:a", body
            h = body["headers"]
            assert h["x-set"] == "one two" and "x-drop" not in h and h["x-add"].endswith("added"), h
            assert hdrs["X-Resp"] == "set" and hdrs["X-Resp-Add"] == "1", hdrs
            code, _, hdrs = await get("f.test", "/to-https/p?q=1")
            assert code == 301 and hdrs["Location"] == f"https://f.test:{https_port}/to-https/p?q=1", hdrs
            code, _, hdrs = await get("f.test", "/moved")
            assert code == 302 and hdrs["Location"] == f"http://other.test:{http_port}/elsewhere", hdrs
            code, _, hdrs = await get("f.test", "/old/deep/path?x=y")
            assert code == 308 and hdrs["Location"] == f"http://f.test:{http_port}/new/deep/path?x=y", hdrs
            code, body, _ = await get("f.test", "/v1/items?x=1")
            assert body["path"] == "/v2/items?x=1" and body["headers"]["host"] == "inner.test", body
            code, body, _ = await get("f.test", "/full/any/thing")
            assert body["path"] == "/fixed", body
            t0 = time.monotonic()
            code, _, _ = await get("f.test", "/slow")
            assert code == 504 and time.monotonic() - t0 < 2.5, code
            # method, header and query matches with the spec's precedence
            assert (await get("f.test", "/m/1"))[1]["name"] == "s:a"
            assert (await get("f.test", "/m/1", "POST", headers={"x-env": "canary"}))[1]["name"] == "s:b"
            assert (await get("f.test", "/m/1", headers={"x-env": "canary"}, params={"v": "2"}))[1]["name"] == "s:b"
            assert (await get("f.test", "/m/1", params={"v": "2"}))[1]["name"] == "s:m"

            # RegularExpression path, header and query matches; all weights zero: 500
            assert (await get("f.test", "/re/123"))[1]["name"] == "s:b"
            assert (await get("f.test", "/re/123", headers={"x-v": "v2"}))[1]["name"] == "s:m"
            assert (await get("f.test", "/re/123", headers={"x-v": "v22"}))[1]["name"] == "s:b"
            assert (await get("f.test", "/re/12a"))[0] == 404
            assert (await get("f.test", "/q", params={"id": "beef"}))[1]["name"] == "s:a"
            assert (await get("f.test", "/q", params={"id": "xyz"}))[0] == 404
            assert (await get("f.test", "/zero"))[0] == 500

            # RequestMirror: the mirror backend sees a copy, body included; the client gets the
            # primary's answer
            code, body, _ = await get("f.test", "/mirror/one", headers={"X-Probe": "mirrored"})
            assert code == 200 and body["name"] == "s:a"
            await until(lambda: any(p == "/mirror/one" and h.get("x-probe") == "mirrored"
                                    for p, h, _ in mirror_log), 10, what="the mirrored request")
            payload = b"posted body " * 1000
            code, body, _ = await get("f.test", "/mirror/two", "POST", data=payload)
            assert code == 200 and body["name"] == "s:a" and body["body_bytes"] == len(payload), body
            await until(lambda: any(p == "/mirror/two" and b == payload for p, _, b in mirror_log), 10,
                        what="the mirrored request body")

            # 404 / 500 / 503 and weights
            assert (await get("nothing.test", "/"))[0] == 404
            assert (await get("u.test", "/all-missing"))[0] == 500
            assert (await get("n.test", "/"))[0] == 503
            assert (await get("k.test", "/"))[0] == 500
            assert (await get("x.test", "/"))[0] == 500  # RefNotPermitted

            # kept-alive connections, 16 at a time: nothing reloads meanwhile (route changes do not)
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as ka:
                async def pick(host: str) -> Any:
                    async with ka.get(base + "/", headers={"Host": host}) as r:
                        return (await r.json())["name"] if r.status == 200 else r.status
                for host, want in (("w.test", {"s:a": 0.8, "s:b": 0.2}), ("u.test", {"s:a": 0.5, 500: 0.5})):
                    seen: Counter[Any] = Counter(await asyncio.gather(*(pick(host) for _ in range(2000))))
                    assert set(seen) == set(want), seen
                    for k, share in want.items():
                        assert abs(seen[k] / 2000 - share) <= 0.05, (host, k, seen)

            # the cross-namespace reference, accepted once a ReferenceGrant allows it
            await gs.put(g.grant("other", "default"))
            s = await gs.status("HTTPRoute", "xns", want=lambda s: _parent_conds(s)["ResolvedRefs"][0] == "True")
            assert _parent_conds(s)["ResolvedRefs"] == ("True", "ResolvedRefs")
            code, body, _ = await get("x.test", "/")
            assert code == 200 and body["name"] == "s:c", (code, body, gs.ctl.last_error)

        # -- HTTPS: SNI, the listener's certificate, 421, and the HTTP->HTTPS redirect -------------
        resolve = f"secure.test:{https_port}:127.0.0.1"
        rc, out = await run("curl", "-sS", "--cacert", str(tmp_path / "ca.pem"), "--resolve", resolve,
                            "-w", "\n%{http_code}", f"https://secure.test:{https_port}/hello")
        assert rc == 0, out
        body, _, code = out.rpartition("\n")
        assert code == "200" and json.loads(body)["name"] == "s:b", out
        assert json.loads(body)["headers"]["x-forwarded-proto"] == "https"
        assert json.loads(body)["headers"]["x-forwarded-port"] == str(https_port)
        rc, out = await run("curl", "-sS", "--cacert", str(tmp_path / "ca.pem"), "--resolve", resolve,
                            "-H", "Host: f.test", "-o", "/dev/null", "-w", "%{http_code}",
                            f"https://secure.test:{https_port}/hdr")
        assert rc == 0 and out == "421", out
        rc, out = await run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                            "-H", "Host: secure.test", f"http://127.0.0.1:{http_port}/a?b=c")
        assert out == f"302 https://secure.test:{https_port}/a?b=c", out
    finally:
        for r in runners:
            await r.cleanup()


async def _recording_server(port: int, log: list[tuple[str, dict[str, str], bytes]]) -> web.AppRunner:
    async def rec(request: web.Request) -> web.Response:
        log.append((request.path_qs, {k.lower(): v for k, v in request.headers.items()}, await request.read()))
        return web.json_response({"name": "s:m"})
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_gateway_endpoints_and_certificates_change_without_reload(gs: GwStack, tmp_path: Path) -> None:
    """Endpoint moves go through HAProxy's runtime API and a rotated certificate Secret through
    ``set ssl cert``: traffic follows, and the master's reload counter does not move."""
    pa, pb = free_port(), free_port()
    runners = [await serve("s:a", "127.0.0.1", [pa]), await serve("s:b", "127.0.0.1", [pb])]
    http_port, https_port = free_port(), free_port()
    ca = CA.new()
    crt, key, serial1 = ca.leaf("secure.test")
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    try:
        await gs.put(_ns("rt"))
        await gs.put(service("a", [("http", 80)], ns="rt"))
        await gs.put(slice_("a", ["127.0.0.1"], [("http", pa)], ns="rt"))
        await gs.put(tls_secret("secure-cert", crt, key, ns="rt"))
        await gs.put(rt_gateway("gw", g.listener("http", http_port),
                             g.listener("https", https_port, "HTTPS", "secure.test", certs=[{"name": "secure-cert"}])))
        await gs.put(rt_route("r", [g.parent("gw")], g.hrule(g.bref("a"))))
        await gs.status("Gateway", "gw", "rt", want=lambda s: g.conds(s).get("Programmed", ("",))[0] == "True")

        async def name() -> str:
            rc, out = await run("curl", "-sS", f"http://127.0.0.1:{http_port}/")
            assert rc == 0, out
            return str(json.loads(out)["name"])

        async def serial() -> int:
            rc, out = await run("sh", "-c", f"openssl s_client -connect 127.0.0.1:{https_port} -servername "
                                "secure.test </dev/null 2>/dev/null | openssl x509 -noout -serial")
            return int(out.strip().split("=", 1)[1], 16)

        assert await name() == "s:a" and await serial() == serial1
        assert gs.ctl.haproxy is not None
        before = await gs.ctl.haproxy.master_reloads()
        await gs.put(slice_("a", ["127.0.0.1"], [("http", pb)], ns="rt"))
        assert await name() == "s:b"
        crt2, key2, serial2 = ca.leaf("secure.test")
        await gs.put(tls_secret("secure-cert", crt2, key2, ns="rt"))
        await until(lambda: _eq(serial(), serial2), 5, 0.05, what="the rotated certificate")
        assert await gs.ctl.haproxy.master_reloads() == before
        await _route_changes_without_reload(gs, http_port, pa)
        # a spec change bumps metadata.generation; every condition follows it
        extra = free_port()
        await gs.put(rt_gateway("gw", g.listener("http", http_port), g.listener("extra", extra),
                             g.listener("https", https_port, "HTTPS", "secure.test", certs=[{"name": "secure-cert"}])))
        gst = await gs.status("Gateway", "gw", "rt", want=lambda s: len(s.get("listeners") or []) == 3)
        assert {c["observedGeneration"] for c in gst["conditions"]} == {2}, gst
        assert {c["observedGeneration"] for li in gst["listeners"] for c in li["conditions"]} == {2}, gst
        s = await gs.status("HTTPRoute", "r", "rt", want=lambda s: s.get("parents"))
        assert {c["observedGeneration"] for c in s["parents"][0]["conditions"]} == {1}, s
        rc, out = await run("curl", "-sS", f"http://127.0.0.1:{extra}/")
        assert rc == 0 and json.loads(out)["name"] == "s:b", out
        # the route leaves our Gateway: its parent entry goes, and so does the traffic
        await gs.put(rt_route("r", [g.parent("elsewhere")], g.hrule(g.bref("a"))))
        await gs.status("HTTPRoute", "r", "rt", want=lambda s: s.get("parents") == [])
        rc, out = await run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{http_port}/")
        assert out == "404", out
    finally:
        for r in runners:
            await r.cleanup()


async def _route_changes_without_reload(gs: GwStack, port: int, b_port: int) -> None:
    """HTTPRoutes added, pointed at other backends, weighted, filtered and removed: each change is
    map entries through the runtime API. Prints API write -> traffic p50/p99 over 40 new routes.
    (Service a answers "s:b" by now; Service b, new here, answers "s:a".)"""
    await gs.put(service("b", [("http", 80)], ns="rt"))  # a second backend (a new backend is structural)
    await gs.put(slice_("b", ["127.0.0.1"], [("http", b_port)], ns="rt"))
    await gs.put(rt_route("nb", [g.parent("gw", "http")], g.hrule(g.bref("b")), hostnames=["nb.test"]))
    reloads = await gs.ctl.reloads()
    runtime = gs.ctl.metrics.syncs.labels("runtime")._value.get()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as sess:
        async def get(host: str, path: str = "/") -> tuple[int, str, Any]:
            async with sess.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, allow_redirects=False) as r:
                text = await r.text()
                return r.status, (json.loads(text)["name"] if r.status == 200 else text), r.headers

        async def follows(host: str, want: Any, path: str = "/") -> float:
            t0 = time.monotonic()

            async def ok() -> bool:
                code, name, _ = await get(host, path)
                return (name if code == 200 else code) == want
            await until(ok, 5, 0.001, what=f"{host}{path} -> {want}")
            return time.monotonic() - t0

        lat = []
        for i in range(40):  # new routes (the write returns, then traffic follows)
            t0 = time.monotonic()
            obj = rt_route(f"n{i}", [g.parent("gw", "http")], g.hrule(g.bref("a")), hostnames=[f"n{i}.test"])
            obj["metadata"] = {"name": f"n{i}", "namespace": "rt"}
            await gs.client.create(GW, "httproutes", "rt", obj)
            await follows(f"n{i}.test", "s:b")
            lat.append(time.monotonic() - t0)
        lat.sort()
        print(f"\ngateway route add -> traffic: p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
              f"p99 {lat[-1] * 1000:.1f} ms over {len(lat)} (reloads {await gs.ctl.reloads() - reloads})")
        await gs.put(rt_route("n0", [g.parent("gw", "http")], g.hrule(g.bref("a", weight=0), g.bref("b", weight=1)),
                               hostnames=["n0.test"]))  # weights
        assert {(await get("n0.test"))[1] for _ in range(10)} == {"s:a"}
        await gs.put(rt_route("n0", [g.parent("gw", "http")], g.hrule(g.bref("a"), g.bref("b")), hostnames=["n0.test"]))
        assert {(await get("n0.test"))[1] for _ in range(40)} == {"s:a", "s:b"}
        await gs.put(rt_route("n1", [g.parent("gw", "http")], g.hrule(filters=[
            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "X-New", "value": "1"}]}},
            {"type": "RequestRedirect", "requestRedirect": {"statusCode": 301, "hostname": "moved.test"}}]),
            hostnames=["n1.test"]))
        code, _, hdrs = await get("n1.test", "/p?q=1")
        assert code == 301 and hdrs["Location"] == f"http://moved.test:{port}/p?q=1", (code, hdrs)
        await gs.put(rt_route("n1", [g.parent("gw", "http")], g.hrule(g.bref("a"), matches=[g.match(("Exact", "/only"))]),
                               hostnames=["n1.test"]))
        assert (await get("n1.test", "/only"))[0] == 200 and (await get("n1.test", "/p"))[0] == 404
        await gs.put(rt_route("n2", [g.parent("gw", "http")], g.hrule(g.bref("b")), hostnames=["n2.test"]))
        assert (await get("n2.test"))[1] == "s:a"
        await gs.client.delete(GW, "httproutes", "rt", "n2")
        await follows("n2.test", "s:b")  # route "r" (any host) again
    assert await gs.ctl.reloads() == reloads, "a route change reloaded HAProxy"
    # the access log (a ring streamed to the controller) counted per route and backend
    want = f'code="200",route="rt/n0 :{port} n0.test/"'

    def counted() -> bool:
        return want in prometheus_client.generate_latest(gs.ctl.registry).decode()
    await until(counted, 10, 0.05, what="servicenet_gateway_requests_total for route n0")
    text = prometheus_client.generate_latest(gs.ctl.registry).decode()
    assert "servicenet_gateway_request_duration_seconds_bucket{" in text and "servicenet_gateway_syncs_total" in text
    assert gs.ctl.metrics.syncs.labels("runtime")._value.get() >= runtime + 40  # one sync a new route at least


async def _eq(coro: Any, want: Any) -> bool:
    return bool(await coro == want)


async def test_a_route_haproxy_refuses_is_left_out(gs: GwStack) -> None:
    """A regular expression Python accepts but HAProxy's PCRE2 refuses (``\\N{name}``): that route is
    not accepted (UnsupportedValue, HAProxy's reason in the message) and the others keep working;
    fixing the route brings it in."""
    pa = free_port()
    runners = [await serve("s:a", "127.0.0.1", [pa])]
    http_port = free_port()
    try:
        await gs.put(_ns("bad"))
        await gs.put(service("a", [("http", 80)], ns="bad"))
        await gs.put(slice_("a", ["127.0.0.1"], [("http", pa)], ns="bad"))
        await gs.put(bad_gateway("gw", g.listener("http", http_port)))
        await gs.put(bad_route("good", [g.parent("gw")], g.hrule(g.bref("a")), hostnames=["good.test"]))
        bad = bad_route("bad", [g.parent("gw")], g.hrule(g.bref("a"), matches=[
            g.match(("RegularExpression", "/\\N{EM DASH}"))]), hostnames=["bad.test"])
        await gs.put(bad)
        s = await gs.status("HTTPRoute", "bad", "bad", want=lambda s: s.get("parents"))
        acc = next(c for c in s["parents"][0]["conditions"] if c["type"] == "Accepted")
        assert (acc["status"], acc["reason"]) == ("False", "UnsupportedValue"), acc
        assert "HAProxy" in acc["message"], acc
        gst = await gs.status("Gateway", "gw", "bad", want=lambda s: g.conds(s).get("Programmed", ("",))[0] == "True")
        assert g.conds(gst)["Programmed"] == ("True", "Programmed")

        async def code(host: str) -> str:
            _, out = await run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {host}",
                               f"http://127.0.0.1:{http_port}/")
            return out
        assert await code("good.test") == "200"
        assert await code("bad.test") == "404"
        bad["spec"]["rules"][0]["matches"] = [g.match(("RegularExpression", "/[a-z]*"))]
        await gs.put(bad)
        await gs.status("HTTPRoute", "bad", "bad", want=lambda s: g.conds(s["parents"][0])["Accepted"][0] == "True")
        assert await code("bad.test") == "200"
    finally:
        for r in runners:
            await r.cleanup()
