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
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from .backends import serve
from .gw_harness import GwStack, gateway_stack
from .gwobjects import (
    bref,
    conds,
    gateway,
    gateway_class,
    grant,
    hrule,
    httproute,
    listener,
    match,
    parent,
)
from .harness import free_port, run, until
from .objects import service, slice_, tls_secret
from .pki import CA

Obj = dict[str, Any]


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
            return conds(p)
    return {}


async def _backends(gs: GwStack, ports: dict[str, int]) -> None:
    await gs.put(_ns("other"))
    for name, port in ports.items():
        ns = "other" if name == "c" else "default"
        await gs.put(service(name, [("http", 80)], ns=ns))
        await gs.put(slice_(name, ["127.0.0.1"], [("http", port)], ns=ns))
    await gs.put(service("empty", [("http", 80)]))
    await gs.put(slice_("empty", ["127.0.0.1"], [("http", 1)], ready=False))


async def test_gateway_http_and_https_listeners_end_to_end(tmp_path: Path) -> None:
    names = ("a", "b", "c")
    ports = {n: free_port() for n in (*names, "m")}
    runners = [await serve(f"s:{n}", "127.0.0.1", [ports[n]]) for n in names]
    mirror_log: list[tuple[str, dict[str, str]]] = []
    runners.append(await _recording_server(ports["m"], mirror_log))
    slow_port = free_port()
    runners.append(await _slow_server(slow_port))
    ports["slow"] = slow_port
    http_port, https_port = free_port(), free_port()
    ca = CA.new()
    crt, key, _ = ca.leaf("secure.test")
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    try:
        async with gateway_stack(tmp_path) as gs:
            await _backends(gs, ports)
            await gs.put(tls_secret("secure-cert", crt, key))
            await gs.put(gateway_class())
            await gs.put(gateway("gw", listener("http", http_port),
                                 listener("https", https_port, "HTTPS", "secure.test", certs=[{"name": "secure-cert"}])))
            gwp = [parent("gw")]
            routes = [
                httproute("filters", gwp,
                          hrule(bref("a"), matches=[match(("PathPrefix", "/hdr"))], filters=[
                              {"type": "RequestHeaderModifier", "requestHeaderModifier": {
                                  "set": [{"name": "X-Set", "value": "one two"}],
                                  "add": [{"name": "X-Add", "value": "added"}], "remove": ["X-Drop"]}},
                              {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                                  "set": [{"name": "X-Resp", "value": "set"}],
                                  "add": [{"name": "X-Resp-Add", "value": "1"}]}}]),
                          hrule(matches=[match(("PathPrefix", "/to-https"))], filters=[
                              _redirect(scheme="https", port=https_port, statusCode=301)]),
                          hrule(matches=[match(("Exact", "/moved"))], filters=[
                              _redirect(hostname="other.test", path={"type": "ReplaceFullPath",
                                                                      "replaceFullPath": "/elsewhere"})]),
                          hrule(matches=[match(("PathPrefix", "/old"))], filters=[
                              _redirect(path={"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"},
                                        statusCode=308)]),
                          hrule(bref("a"), matches=[match(("PathPrefix", "/v1"))], filters=[
                              {"type": "URLRewrite", "urlRewrite": {"hostname": "inner.test", "path": {
                                  "type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}}]),
                          hrule(bref("a"), matches=[match(("PathPrefix", "/full"))], filters=[
                              {"type": "URLRewrite", "urlRewrite": {"path": {
                                  "type": "ReplaceFullPath", "replaceFullPath": "/fixed"}}}]),
                          hrule(bref("a"), matches=[match(("PathPrefix", "/mirror"))], filters=[
                              {"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m", "port": 80}}}]),
                          hrule(bref("slow"), matches=[match(("PathPrefix", "/slow"))], timeouts={"request": "500ms"}),
                          hrule(bref("a"), matches=[match(("PathPrefix", "/m"))]),
                          hrule(bref("b"), matches=[match(("PathPrefix", "/m"), method="POST")]),
                          hrule(bref("b"), matches=[match(("PathPrefix", "/m"), headers={"x-env": "canary"})]),
                          hrule(bref("m"), matches=[match(("PathPrefix", "/m"), query={"v": "2"})]),
                          hrule(bref("b"), matches=[match(("RegularExpression", "/re/[0-9]+$"))]),
                          hrule(bref("m"), matches=[{"path": {"type": "RegularExpression", "value": "/re/[0-9]+$"},
                                                     "headers": [{"name": "x-v", "type": "RegularExpression",
                                                                  "value": "^v[0-9]$"}]}]),
                          hrule(bref("a"), matches=[{"path": {"type": "PathPrefix", "value": "/q"},
                                                     "queryParams": [{"name": "id", "type": "RegularExpression",
                                                                      "value": "^[a-f]+$"}]}]),
                          hrule(bref("a", weight=0), matches=[match(("PathPrefix", "/zero"))]),
                          hostnames=["f.test"]),
                httproute("weights", gwp, hrule(bref("a", weight=80), bref("b", weight=20)), hostnames=["w.test"]),
                httproute("unresolved", gwp, hrule(bref("a", weight=50), bref("missing", weight=50)),
                          hrule(bref("missing"), matches=[match(("PathPrefix", "/all-missing"))]), hostnames=["u.test"]),
                httproute("noeps", gwp, hrule(bref("empty")), hostnames=["n.test"]),
                httproute("xns", gwp, hrule(bref("c", ns="other")), hostnames=["x.test"]),
                httproute("badkind", gwp, hrule(bref("thing", kind="Thing")), hostnames=["k.test"]),
                httproute("secure", [parent("gw", "https")], hrule(bref("b")), hostnames=["secure.test"]),
                httproute("upgrade", [parent("gw", "http")], hrule(filters=[_redirect(scheme="https", port=https_port)]),
                          hostnames=["secure.test"]),
                httproute("nohost", [parent("gw", "https")], hrule(bref("a")), hostnames=["nomatch.test"]),
                httproute("nosection", [parent("gw", "nope")], hrule(bref("a")), hostnames=["ns.test"]),
                httproute("foreign", [parent("gw", ns="default")], hrule(bref("a")), hostnames=["o.test"], ns="other"),
                httproute("badregex", gwp, hrule(bref("a"), matches=[match(("RegularExpression", "/(unclosed"))]),
                          hostnames=["re.test"]),
            ]
            for r in routes:
                await gs.put(r)
            base = f"http://127.0.0.1:{http_port}"

            # -- statuses -------------------------------------------------------------------------
            gcs = await gs.status("GatewayClass", "sn", None, lambda s: conds(s).get("Accepted", ("",))[0] == "True")
            assert conds(gcs) == {"Accepted": ("True", "Accepted")}
            assert gcs["conditions"][0]["observedGeneration"] == 1
            gst = await gs.status("Gateway", "gw", want=lambda s: conds(s).get("Programmed", ("",))[0] == "True"
                                  and s["listeners"][0]["attachedRoutes"] == 7)
            assert conds(gst) == {"Accepted": ("True", "Accepted"), "Programmed": ("True", "Programmed")}
            assert gst["addresses"] == [{"type": "IPAddress", "value": "127.0.0.1"}]
            lis = {li["name"]: li for li in gst["listeners"]}
            # http: the six routes naming the whole Gateway (their hostnames do not intersect
            # secure.test) and "upgrade"; https: "secure" only ("nohost" matches no hostname)
            assert (lis["http"]["attachedRoutes"], lis["https"]["attachedRoutes"]) == (7, 1), lis
            for li in lis.values():
                assert conds(li) == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs"),
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

                # RequestMirror: the mirror backend sees a copy; the client gets the primary's answer
                code, body, _ = await get("f.test", "/mirror/one", headers={"X-Probe": "mirrored"})
                assert code == 200 and body["name"] == "s:a"
                await until(lambda: any(p == "/mirror/one" and h.get("x-probe") == "mirrored"
                                        for p, h in mirror_log), 10, what="the mirrored request")

                # 404 / 500 / 503 and weights
                assert (await get("nothing.test", "/"))[0] == 404
                assert (await get("u.test", "/all-missing"))[0] == 500
                assert (await get("n.test", "/"))[0] == 503
                assert (await get("k.test", "/"))[0] == 500
                assert (await get("x.test", "/"))[0] == 500  # RefNotPermitted

                for host, want in (("w.test", {"s:a": 0.8, "s:b": 0.2}), ("u.test", {"s:a": 0.5, 500: 0.5})):
                    seen: Counter[Any] = Counter()
                    for _ in range(2000):
                        code, body, _ = await get(host, "/")
                        seen[body["name"] if code == 200 else code] += 1
                    assert set(seen) == set(want), seen
                    for k, share in want.items():
                        assert abs(seen[k] / 2000 - share) <= 0.05, (host, k, seen)

                # the cross-namespace reference, accepted once a ReferenceGrant allows it
                await gs.put(grant("other", "default"))
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


async def _recording_server(port: int, log: list[tuple[str, dict[str, str]]]) -> web.AppRunner:
    async def rec(request: web.Request) -> web.Response:
        log.append((request.path_qs, {k.lower(): v for k, v in request.headers.items()}))
        return web.json_response({"name": "s:m"})
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


async def test_gateway_endpoints_and_certificates_change_without_reload(tmp_path: Path) -> None:
    """Endpoint moves go through HAProxy's runtime API and a rotated certificate Secret through
    ``set ssl cert``: traffic follows, and the master's reload counter does not move."""
    pa, pb = free_port(), free_port()
    runners = [await serve("s:a", "127.0.0.1", [pa]), await serve("s:b", "127.0.0.1", [pb])]
    http_port, https_port = free_port(), free_port()
    ca = CA.new()
    crt, key, serial1 = ca.leaf("secure.test")
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    try:
        async with gateway_stack(tmp_path) as gs:
            await gs.put(service("a", [("http", 80)]))
            await gs.put(slice_("a", ["127.0.0.1"], [("http", pa)]))
            await gs.put(tls_secret("secure-cert", crt, key))
            await gs.put(gateway_class())
            await gs.put(gateway("gw", listener("http", http_port),
                                 listener("https", https_port, "HTTPS", "secure.test", certs=[{"name": "secure-cert"}])))
            await gs.put(httproute("r", [parent("gw")], hrule(bref("a"))))
            await gs.status("Gateway", "gw", want=lambda s: conds(s).get("Programmed", ("",))[0] == "True")

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
            await gs.put(slice_("a", ["127.0.0.1"], [("http", pb)]))
            assert await name() == "s:b"
            crt2, key2, serial2 = ca.leaf("secure.test")
            await gs.put(tls_secret("secure-cert", crt2, key2))
            await until(lambda: _eq(serial(), serial2), 5, 0.05, what="the rotated certificate")
            assert await gs.ctl.haproxy.master_reloads() == before
            # a spec change bumps metadata.generation; every condition follows it
            extra = free_port()
            await gs.put(gateway("gw", listener("http", http_port), listener("extra", extra),
                                 listener("https", https_port, "HTTPS", "secure.test", certs=[{"name": "secure-cert"}])))
            gst = await gs.status("Gateway", "gw", want=lambda s: len(s.get("listeners") or []) == 3)
            assert {c["observedGeneration"] for c in gst["conditions"]} == {2}, gst
            assert {c["observedGeneration"] for li in gst["listeners"] for c in li["conditions"]} == {2}, gst
            s = await gs.status("HTTPRoute", "r", want=lambda s: s.get("parents"))
            assert {c["observedGeneration"] for c in s["parents"][0]["conditions"]} == {1}, s
            rc, out = await run("curl", "-sS", f"http://127.0.0.1:{extra}/")
            assert rc == 0 and json.loads(out)["name"] == "s:b", out
            # the route leaves our Gateway: its parent entry goes, and so does the traffic
            await gs.put(httproute("r", [parent("elsewhere")], hrule(bref("a"))))
            await gs.status("HTTPRoute", "r", want=lambda s: s.get("parents") == [])
            rc, out = await run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{http_port}/")
            assert out == "404", out
    finally:
        for r in runners:
            await r.cleanup()


async def _eq(coro: Any, want: Any) -> bool:
    return bool(await coro == want)


async def test_a_route_haproxy_refuses_is_left_out(tmp_path: Path) -> None:
    """A regular expression Python accepts but HAProxy's PCRE2 refuses (``\\N{name}``): that route is
    not accepted (UnsupportedValue, HAProxy's reason in the message) and the others keep working;
    fixing the route brings it in."""
    pa = free_port()
    runners = [await serve("s:a", "127.0.0.1", [pa])]
    http_port = free_port()
    try:
        async with gateway_stack(tmp_path) as gs:
            await gs.put(service("a", [("http", 80)]))
            await gs.put(slice_("a", ["127.0.0.1"], [("http", pa)]))
            await gs.put(gateway_class())
            await gs.put(gateway("gw", listener("http", http_port)))
            await gs.put(httproute("good", [parent("gw")], hrule(bref("a")), hostnames=["good.test"]))
            bad = httproute("bad", [parent("gw")], hrule(bref("a"), matches=[
                match(("RegularExpression", "/\\N{EM DASH}"))]), hostnames=["bad.test"])
            await gs.put(bad)
            s = await gs.status("HTTPRoute", "bad", want=lambda s: s.get("parents"))
            acc = next(c for c in s["parents"][0]["conditions"] if c["type"] == "Accepted")
            assert (acc["status"], acc["reason"]) == ("False", "UnsupportedValue"), acc
            assert "HAProxy" in acc["message"], acc
            gst = await gs.status("Gateway", "gw", want=lambda s: conds(s).get("Programmed", ("",))[0] == "True")
            assert conds(gst)["Programmed"] == ("True", "Programmed")

            async def code(host: str) -> str:
                _, out = await run("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"Host: {host}",
                                   f"http://127.0.0.1:{http_port}/")
                return out
            assert await code("good.test") == "200"
            assert await code("bad.test") == "404"
            bad["spec"]["rules"][0]["matches"] = [match(("RegularExpression", "/[a-z]*"))]
            await gs.put(bad)
            await gs.status("HTTPRoute", "bad", want=lambda s: conds(s["parents"][0])["Accepted"][0] == "True")
            assert await code("bad.test") == "200"
    finally:
        for r in runners:
            await r.cleanup()
