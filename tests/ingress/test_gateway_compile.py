"""The Gateway API compile core, table-driven with cases from the specification's own examples:
hostname intersection, listener isolation and 421, route attachment reasons, listener and Gateway
conditions. The listener cases run again through a real HAProxy with the same expected answers."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from servicenet.ingress import render as rd
from servicenet.ingress import render_gateway as rg
from servicenet.ingress.certs import self_signed
from servicenet.ingress.gateway_compile import GatewayInputs, Plan, compile_gateways, hostname_intersection
from servicenet.ingress.gateway_match import answer, passthrough_for
from servicenet.ingress.haproxy import HAProxy
from servicenet.ingress.model import Route, Table

from .backends import serve
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
    route,
)
from .harness import free_port, run
from .objects import service, slice_, tls_secret

Obj = dict[str, Any]

# (listener hostname, route hostname, intersection) -- the Listener.hostname / HTTPRoute.hostnames texts
INTERSECTIONS = [
    ("", "foo.example.com", "foo.example.com"),
    ("foo.example.com", "", "foo.example.com"),
    ("foo.example.com", "foo.example.com", "foo.example.com"),
    ("foo.example.com", "bar.example.com", None),
    ("*.example.com", "foo.example.com", "foo.example.com"),
    ("*.example.com", "foo.bar.example.com", "foo.bar.example.com"),  # a wildcard covers any number of labels
    ("*.example.com", "example.com", None),
    ("foo.example.com", "*.example.com", "foo.example.com"),
    ("*.example.com", "*.bar.example.com", "*.bar.example.com"),
    ("*.bar.example.com", "*.example.com", "*.bar.example.com"),
    ("*.example.com", "*.example.org", None),
]


@pytest.mark.parametrize(("listener_host", "route_host", "want"), INTERSECTIONS)
def test_hostname_intersection(listener_host: str, route_host: str, want: str | None) -> None:
    assert hostname_intersection(listener_host, route_host) == want


def _pem(host: str) -> Obj:
    pem = self_signed(host, (host,))
    i = pem.index(b"-----BEGIN PRIVATE KEY")
    return tls_secret(f"cert-{host.replace('*', 'star')}", pem[:i], pem[i:])


def _inputs(gws: list[Obj], routes: list[Obj], grants: tuple[Obj, ...] = (), secrets: list[Obj] | None = None,
            ports: dict[str, int] | None = None, namespaces: dict[str, Obj] | None = None,
            classes: tuple[Obj, ...] = (gateway_class(),)) -> GatewayInputs:
    ports = ports or {n: 10000 + i for i, n in enumerate("abcdef")}
    svcs = {f"default/{n}": service(n, [("http", 80)]) for n in ports}
    slices = {f"default/{n}": [slice_(n, ["127.0.0.1"], [("http", p)])] for n, p in ports.items()}
    secs = {f"{(s['metadata'].get('namespace') or 'default')}/{s['metadata']['name']}": s for s in secrets or []}
    return GatewayInputs(classes, tuple(gws), tuple(routes), grants, namespaces or {}, svcs, slices, secs)


# -- listener isolation and 421 (GatewayHTTPListenerIsolation, the HTTPS listener examples) -------------
HTTP, HTTPS = 18080, 18443
ISOLATION_GW = gateway(
    "gw",
    listener("empty", HTTP), listener("wild", HTTP, hostname="*.example.com"),
    listener("wild-foo", HTTP, hostname="*.foo.example.com"), listener("abc", HTTP, hostname="abc.foo.example.com"),
    listener("s-a", HTTPS, "HTTPS", "a.test", certs=[{"name": "cert-a.test"}]),
    listener("s-wild", HTTPS, "HTTPS", "*.b.test", certs=[{"name": "cert-star.b.test"}]),
    ns="default")
ISOLATION_ROUTES = [
    httproute("r-empty", [parent("gw", "empty")], hrule(bref("a"))),
    httproute("r-wild", [parent("gw", "wild")], hrule(bref("b"))),
    httproute("r-wild-foo", [parent("gw", "wild-foo")], hrule(bref("c"))),
    httproute("r-abc", [parent("gw", "abc")], hrule(bref("d"))),
    httproute("r-a", [parent("gw", "s-a")], hrule(bref("e"))),
    httproute("r-b", [parent("gw", "s-wild")], hrule(bref("f"), matches=[match(("PathPrefix", "/only"))])),
]
# (port, Host, SNI or None, path, expected backend letter or status)
ISOLATION_CASES: list[tuple[int, str, str | None, str, str | int]] = [
    (HTTP, "bar.com", None, "/", "a"),
    (HTTP, "bar.example.com", None, "/", "b"),
    (HTTP, "x.y.example.com", None, "/", "b"),
    (HTTP, "bar.foo.example.com", None, "/", "c"),
    (HTTP, "abc.foo.example.com", None, "/", "d"),
    (HTTP, "example.com", None, "/", "a"),  # "*.example.com" does not match its own suffix
    (HTTPS, "a.test", "a.test", "/", "e"),
    (HTTPS, "a.test:18443", "a.test", "/x", "e"),
    (HTTPS, "x.b.test", "x.b.test", "/only/1", "f"),
    (HTTPS, "x.b.test", "x.b.test", "/other", 404),
    (HTTPS, "y.b.test", "x.b.test", "/only", "f"),  # another name, the same listener: allowed
    (HTTPS, "x.b.test", "a.test", "/only", 421),  # Host picks another listener than SNI did
    (HTTPS, "a.test", "x.b.test", "/", 421),
    (HTTPS, "c.test", "a.test", "/", 421),  # Host matches no listener of the connection's port
]


def _isolation_plan(ports: dict[str, int]) -> Plan:
    return compile_gateways(_inputs([ISOLATION_GW], ISOLATION_ROUTES, secrets=[_pem("a.test"), _pem("*.b.test")],
                                    ports=ports))


def _letter(plan: Plan, r: Route | int | None) -> str | int | None:
    if not isinstance(r, Route):
        return r
    u = next(u for u in plan.upstreams if u.name == r.upstream)
    return u.service.split("/")[1].split(":")[0]


@pytest.mark.parametrize(("port", "host", "sni", "path", "want"), ISOLATION_CASES)
def test_listener_isolation_core(port: int, host: str, sni: str | None, path: str, want: str | int) -> None:
    plan = _isolation_plan({n: 10000 + i for i, n in enumerate("abcdef")})
    assert not plan.problems
    assert _letter(plan, answer(plan, port, host, path, sni=sni)) == want


@contextlib.asynccontextmanager
async def plan_haproxy(tmp: Path, plan: Plan) -> AsyncIterator[None]:
    d = tmp / "hap"
    hp = HAProxy(d)
    hp.prepare()
    (d / "certs" / "default.pem").write_bytes(self_signed())
    files = rg.GwFiles(str(d))
    hp.write_files({f"crt-list-{p}.txt": t for p, t in rg.crt_lists(plan, files).items()})
    hp.write_files({f"certs/{c.name}": c.pem for c in plan.certs})
    hp.write_files({"gateway.lua": rg.LUA} | rg.map_files(plan, files))
    await hp.start(rg.render(plan, rd.plan_slots(Table(upstreams=plan.upstreams)), files))
    try:
        yield
    finally:
        await hp.stop()


async def test_listener_isolation_through_haproxy(tmp_path: Path) -> None:
    ports = {n: free_port() for n in "abcdef"}
    runners = [await serve(n, "127.0.0.1", [p]) for n, p in ports.items()]
    http, https = free_port(), free_port()
    gw = json.loads(json.dumps(ISOLATION_GW).replace(str(HTTP), str(http)).replace(str(HTTPS), str(https)))
    plan = compile_gateways(_inputs([gw], ISOLATION_ROUTES, secrets=[_pem("a.test"), _pem("*.b.test")], ports=ports))
    try:
        async with plan_haproxy(tmp_path, plan):
            for port, host, sni, path, want in ISOLATION_CASES:
                real = http if port == HTTP else https
                name = sni or host.split(":")[0]
                if sni is None:
                    args = ["-H", f"Host: {host}", f"http://127.0.0.1:{real}{path}"]
                else:
                    args = ["-k", "--resolve", f"{name}:{real}:127.0.0.1", "-H", f"Host: {host}",
                            f"https://{name}:{real}{path}"]
                rc, out = await run("curl", "-sS", "-w", "\n%{http_code}", *args)
                assert rc == 0, out
                body, _, code = out.rpartition("\n")
                got: str | int = json.loads(body)["name"] if code == "200" else int(code)
                core = _letter(plan, answer(plan, real, host, path, sni=sni))
                assert got == want == core, (port, host, sni, path, got, core)
            # each HTTPS listener serves its own certificate by SNI
            for name, want_cn in (("a.test", "a.test"), ("x.b.test", "*.b.test")):
                out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{https}", "-servername", name],
                                     input=b"", capture_output=True, timeout=20).stdout.decode()
                assert f"CN = {want_cn}" in out or f"CN={want_cn}" in out, out[:500]
    finally:
        for r in runners:
            await r.cleanup()


# -- route attachment reasons ------------------------------------------------------------------------------
ATTACH_GW = gateway("gw", listener("same", 80), listener("all", 81, from_="All"),
                    listener("sel", 82, from_="Selector", selector={"matchLabels": {"team": "x"}}),
                    listener("host", 83, hostname="only.test", from_="All"),
                    listener("grpc-only", 84, kinds=["GRPCRoute"], from_="All"))
# (route namespace, parentRef sectionName, route hostnames, Accepted status, reason)
ATTACH_CASES = [
    ("default", "same", [], "True", "Accepted"),
    ("other", "same", [], "False", "NotAllowedByListeners"),  # allowedRoutes from Same (the default)
    ("other", "all", [], "True", "Accepted"),
    ("labelled", "sel", [], "True", "Accepted"),
    ("other", "sel", [], "False", "NotAllowedByListeners"),
    ("default", "host", ["only.test"], "True", "Accepted"),
    ("default", "host", ["*.test"], "True", "Accepted"),
    ("default", "host", ["else.test"], "False", "NoMatchingListenerHostname"),
    ("default", "grpc-only", [], "False", "NotAllowedByListeners"),  # kind not allowed
    ("default", "missing", [], "False", "NoMatchingParent"),
]


@pytest.mark.parametrize(("ns", "section", "hosts", "status", "reason"), ATTACH_CASES)
def test_route_attachment_reasons(ns: str, section: str, hosts: list[str], status: str, reason: str) -> None:
    r = route("HTTPRoute", "r", [parent("gw", section, ns="default")], [hrule(bref("a"))], hosts, ns=ns)
    nss = {"labelled": {"metadata": {"name": "labelled", "labels": {"team": "x"}}}}
    plan = compile_gateways(_inputs([ATTACH_GW], [r], namespaces=nss))
    p = plan.statuses[("httproutes", ns, "r")]["parents"][0]
    assert p["controllerName"] == "servicenet.io/gateway-controller"
    assert p["parentRef"]["sectionName"] == section
    assert conds(p)["Accepted"] == (status, reason)
    lis = {li["name"]: li["attachedRoutes"] for li in plan.statuses[("gateways", "default", "gw")]["listeners"]}
    assert sum(lis.values()) == (1 if status == "True" else 0)


def test_backend_reasons_and_reference_grants() -> None:
    routes = [httproute("missing", [parent("gw")], hrule(bref("nope"))),
              httproute("kind", [parent("gw")], hrule(bref("x", kind="Thing"))),
              httproute("xns", [parent("gw")], hrule(bref("a", ns="other")))]
    inp = _inputs([gateway("gw", listener("http", 80))], routes)
    svcs = {**inp.services, "other/a": service("a", [("http", 80)], ns="other")}
    got = {}
    for grants in ((), (grant("other", "default"),), (grant("other", "default", from_kind="GRPCRoute"),)):
        plan = compile_gateways(GatewayInputs(inp.classes, inp.gateways, inp.routes, grants, {}, svcs, inp.slices))
        got[len(grants) and grants[0]["spec"]["from"][0]["kind"]] = {
            k[2]: conds(s["parents"][0])["ResolvedRefs"] for k, s in plan.statuses.items() if k[0] == "httproutes"}
    assert got[0] == {"missing": ("False", "BackendNotFound"), "kind": ("False", "InvalidKind"),
                      "xns": ("False", "RefNotPermitted")}
    assert got["HTTPRoute"]["xns"] == ("True", "ResolvedRefs")
    assert got["GRPCRoute"]["xns"] == ("False", "RefNotPermitted")  # a grant for another kind does not count


# -- listener and Gateway conditions ------------------------------------------------------------------------
def _listener_conds(plan: Plan, gw: str = "gw") -> dict[str, dict[str, tuple[str, str]]]:
    return {li["name"]: conds(li) for li in plan.statuses[("gateways", "default", gw)]["listeners"]}


def test_listener_conditions() -> None:
    gw = gateway("gw",
                 listener("ok", 80),
                 listener("dup1", 81, hostname="d.test"), listener("dup2", 81, hostname="d.test"),
                 listener("p-http", 82), listener("p-https", 82, "HTTPS", certs=[{"name": "cert-a.test"}]),
                 listener("udp", 83, "UDP"),
                 listener("nosecret", 84, "HTTPS", certs=[{"name": "missing"}]),
                 listener("xns", 85, "HTTPS", certs=[{"name": "cert-a.test", "namespace": "other"}]),
                 listener("badkind", 86, kinds=["TLSRoute"]),
                 listener("tls-term", 87, "TLS", mode="Terminate", certs=[{"name": "cert-a.test"}]))
    other_secret = _pem("a.test")
    other_secret["metadata"]["namespace"] = "other"
    plan = compile_gateways(_inputs([gw], [], secrets=[_pem("a.test"), other_secret]))
    lc = _listener_conds(plan)
    assert lc["ok"] == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs"),
                        "Programmed": ("True", "Programmed"), "Conflicted": ("False", "NoConflicts")}
    for n in ("dup1", "dup2"):
        assert lc[n]["Conflicted"] == ("True", "HostnameConflict") and lc[n]["Accepted"][0] == "False"
        assert lc[n]["Programmed"] == ("False", "Invalid")
    for n in ("p-http", "p-https"):
        assert lc[n]["Conflicted"] == ("True", "ProtocolConflict")
    assert lc["udp"]["Accepted"] == ("False", "UnsupportedProtocol")
    assert lc["nosecret"]["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    assert lc["nosecret"]["Programmed"] == ("False", "Invalid")
    assert lc["xns"]["ResolvedRefs"] == ("False", "RefNotPermitted")
    assert lc["badkind"]["ResolvedRefs"] == ("False", "InvalidRouteKinds")
    assert lc["tls-term"]["Accepted"] == ("False", "UnsupportedProtocol")
    gst = plan.statuses[("gateways", "default", "gw")]
    assert conds(gst) == {"Accepted": ("True", "ListenersNotValid"), "Programmed": ("True", "Programmed")}
    badkind = next(li for li in gst["listeners"] if li["name"] == "badkind")
    assert badkind["supportedKinds"] == []
    # the cross-namespace certificate with a ReferenceGrant from Gateways
    g = grant("other", "default", from_kind="Gateway", to_kind="Secret")
    plan = compile_gateways(_inputs([gw], [], grants=(g,), secrets=[_pem("a.test"), other_secret]))
    assert _listener_conds(plan)["xns"]["ResolvedRefs"] == ("True", "ResolvedRefs")


def test_port_taken_by_the_ingress_data_plane() -> None:
    gw = gateway("gw", listener("taken", 8080), listener("free", 9090))
    inp = _inputs([gw], [httproute("r", [parent("gw")], hrule(bref("a")))])
    plan = compile_gateways(GatewayInputs(inp.classes, inp.gateways, inp.routes, (), {}, inp.services, inp.slices,
                                          reserved_ports=(8080, 8443)))
    lc = _listener_conds(plan)
    assert lc["taken"]["Accepted"] == ("False", "PortUnavailable")
    assert lc["taken"]["Programmed"] == ("False", "Invalid")
    assert lc["free"]["Accepted"] == ("True", "Accepted")
    assert [fe.port for fe in plan.frontends] == [9090]


def test_overlapping_tls_hostnames() -> None:
    cert = [{"name": "cert-a.test"}]
    gw = gateway("gw", listener("wild", 443, "HTTPS", "*.example.com", certs=cert),
                 listener("foo", 443, "HTTPS", "foo.example.com", certs=cert),
                 listener("org", 443, "HTTPS", "foo.example.org", certs=cert))
    lc = _listener_conds(compile_gateways(_inputs([gw], [], secrets=[_pem("a.test")])))
    assert lc["wild"]["OverlappingTLSConfig"] == ("True", "OverlappingHostnames")
    assert lc["foo"]["OverlappingTLSConfig"] == ("True", "OverlappingHostnames")
    assert "OverlappingTLSConfig" not in lc["org"]  # negative polarity: never set False
    assert all(c["Accepted"] == ("True", "Accepted") for c in lc.values())


def test_gateway_and_class_conditions() -> None:
    mine, theirs = gateway_class("sn"), gateway_class("other", controller="example.com/other")
    gws = [gateway("bad", listener("udp", 80, "UDP")), gateway("foreign", listener("http", 81), cls="other"),
           gateway("addr", listener("http", 82))]
    gws[2]["spec"]["addresses"] = [{"type": "Hostname", "value": "x.test"}]
    plan = compile_gateways(_inputs(gws, [], classes=(mine, theirs)))
    assert conds(plan.statuses[("gatewayclasses", "", "sn")]) == {"Accepted": ("True", "Accepted")}
    assert ("gatewayclasses", "", "other") not in plan.statuses  # another controller's class
    assert ("gateways", "default", "foreign") not in plan.statuses
    assert conds(plan.statuses[("gateways", "default", "bad")]) == {
        "Accepted": ("False", "ListenersNotValid"), "Programmed": ("False", "Invalid")}
    assert conds(plan.statuses[("gateways", "default", "addr")])["Accepted"] == ("False", "UnsupportedAddress")
    with_params = {**gateway_class("p"), "spec": {"controllerName": "servicenet.io/gateway-controller",
                                                  "parametersRef": {"group": "", "kind": "ConfigMap", "name": "x"}}}
    unaccepted = compile_gateways(_inputs([gateway("gp", listener("http", 83), cls="p")], [], classes=(with_params,)))
    assert conds(unaccepted.statuses[("gatewayclasses", "", "p")]) == {"Accepted": ("False", "InvalidParameters")}
    assert ("gateways", "default", "gp") not in unaccepted.statuses and not unaccepted.frontends
    refused = compile_gateways(GatewayInputs((mine,), (gateway("g", listener("http", 80)),), programmed=False))
    assert conds(refused.statuses[("gateways", "default", "g")])["Programmed"] == ("False", "Pending")
    for c in plan.statuses[("gateways", "default", "bad")]["conditions"]:
        assert c["observedGeneration"] == 1


def test_tls_passthrough_by_sni_core() -> None:
    gw = gateway("gw", listener("tls", 443, "TLS", mode="Passthrough"))
    routes = [route("TLSRoute", "exact", [parent("gw")], [{"backendRefs": [bref("a")]}], ["a.test"]),
              route("TLSRoute", "wild", [parent("gw")], [{"backendRefs": [bref("b")]}], ["*.test"])]
    plan = compile_gateways(_inputs([gw], routes))
    assert passthrough_for(plan, 443, "a.test") == "default/exact"
    assert passthrough_for(plan, 443, "b.x.test") == "default/wild"
    assert passthrough_for(plan, 443, "a.org") is None


def test_https_and_tls_passthrough_share_a_port() -> None:
    """Upstream's GatewayHTTPSAndTLSPassthroughSamePort: an HTTPS listener for *.example.com and a TLS
    passthrough listener for abc.example.com on one port are both accepted, the SNI picks the most
    specific; equal hostnames still conflict, and HTTP never shares a port with TLS."""
    cert = [{"name": "cert-a.test"}]
    gw = gateway("gw", listener("term", 8884, "HTTPS", "*.example.com", certs=cert),
                 listener("pass", 8884, "TLS", "abc.example.com", mode="Passthrough"),
                 listener("same-h", 8885, "HTTPS", "x.test", certs=cert),
                 listener("same-t", 8885, "TLS", "x.test", mode="Passthrough"),
                 listener("plain", 8886), listener("tls", 8886, "TLS", "y.test", mode="Passthrough"))
    routes = [httproute("h", [parent("gw", "term")], hrule(bref("a"))),
              route("TLSRoute", "t", [parent("gw", "pass")], [{"backendRefs": [bref("b")]}], ["abc.example.com"])]
    plan = compile_gateways(_inputs([gw], routes, secrets=[_pem("a.test")]))
    lc = _listener_conds(plan)
    for n in ("term", "pass"):
        assert lc[n] == {"Accepted": ("True", "Accepted"), "ResolvedRefs": ("True", "ResolvedRefs"),
                         "Programmed": ("True", "Programmed"), "Conflicted": ("False", "NoConflicts")}, (n, lc[n])
    assert lc["same-h"]["Conflicted"] == lc["same-t"]["Conflicted"] == ("True", "HostnameConflict")
    assert lc["plain"]["Conflicted"] == lc["tls"]["Conflicted"] == ("True", "ProtocolConflict")
    assert [li["attachedRoutes"] for li in plan.statuses[("gateways", "default", "gw")]["listeners"]][:2] == [1, 1]
    assert passthrough_for(plan, 8884, "abc.example.com") == "default/t"
    assert passthrough_for(plan, 8884, "other.example.com") is None  # the HTTPS listener's
    assert _letter(plan, answer(plan, 8884, "other.example.com", "/", sni="other.example.com")) == "a"
    assert answer(plan, 8884, "abc.example.com", "/", sni="abc.example.com") is None  # passed through
