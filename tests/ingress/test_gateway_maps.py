"""Gateway routes as map entries (pure): which changes leave the HAProxy configuration text alone
(and so go through the runtime API), the spec encoding, and the order of the runtime commands."""

from __future__ import annotations

from typing import Any

from servicenet.ingress import gateway_maps as gm
from servicenet.ingress import render as rd
from servicenet.ingress import render_gateway as rg
from servicenet.ingress.gateway_compile import compile_gateways
from servicenet.ingress.model import Table

from .gwobjects import bref, gateway, hrule, httproute, listener, match, parent
from .test_gateway_compile import _inputs

Obj = dict[str, Any]
GW = gateway("gw", listener("http", 8080), listener("other", 8081))
FILES = rg.GwFiles("/state")


def _structure(routes: list[Obj]) -> str:
    plan = compile_gateways(_inputs([GW], routes))
    assert not plan.problems, plan.problems
    return rg.render(plan, rd.plan_slots(Table(upstreams=plan.upstreams)), FILES, with_servers=False)


BASE = [httproute("a", [parent("gw")], hrule(bref("a"), matches=[match(("PathPrefix", "/a"))]), hostnames=["x.test"]),
        httproute("m", [parent("gw")], hrule(bref("a"), matches=[match(("PathPrefix", "/m"), method="POST")]),
                  hostnames=["m.test"]),
        httproute("unused", [parent("gw")], hrule(bref("b"), bref("c")), hostnames=["keep.test"])]
REDIRECT = {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
HEADERS = {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "X-A", "value": "1 2"}]}}

# route sets with the same backends as BASE: the configuration text must not change
SAME_TEXT = {
    "a route added": BASE + [httproute("n", [parent("gw")], hrule(bref("b")), hostnames=["new.test"])],
    "a wildcard route added": BASE + [httproute("w", [parent("gw")], hrule(bref("b")), hostnames=["*.w.test"])],
    "a route removed": BASE[1:],
    "a backend changed": [httproute("a", [parent("gw")], hrule(bref("b"), matches=[match(("PathPrefix", "/a"))]),
                                    hostnames=["x.test"])] + BASE[1:],
    "weights": [httproute("a", [parent("gw")], hrule(bref("a", weight=3), bref("c", weight=1), matches=[
        match(("PathPrefix", "/a"))]), hostnames=["x.test"])] + BASE[1:],
    "filters": [httproute("a", [parent("gw")], hrule(bref("a"), filters=[REDIRECT, HEADERS], matches=[
        match(("Exact", "/a"))], timeouts={"request": "2s"}), hostnames=["x.test"])] + BASE[1:],
    "filters on a rule group's route": BASE[:1] + [httproute("m", [parent("gw")], hrule(bref("b"), filters=[
        HEADERS], matches=[match(("PathPrefix", "/m"), method="POST")]), hostnames=["m.test"])] + BASE[2:],
}
# changes that do need a reload
NEW_TEXT = {
    "a new method match": BASE[:1] + [httproute("m", [parent("gw")], hrule(bref("a"), matches=[
        match(("PathPrefix", "/m"), method="PUT")]), hostnames=["m.test"])] + BASE[2:],
    "a new backend": BASE + [httproute("n", [parent("gw")], hrule(bref("d")), hostnames=["n.test"])],
}


def test_route_changes_keep_the_configuration_text() -> None:
    base = _structure(BASE)
    for what, routes in SAME_TEXT.items():
        assert _structure(routes) == base, what
    for what, routes in NEW_TEXT.items():
        assert _structure(routes) != base, what


def test_spec_encoding_and_map_entries() -> None:
    routes = [httproute("f", [parent("gw", "http")], hrule(bref("a", weight=3), bref("missing", weight=1), filters=[
        HEADERS], matches=[match(("PathPrefix", "/v1/"))], timeouts={"request": "1m30s"}), hostnames=["f.test"])]
    plan = compile_gateways(_inputs([GW], routes))
    m = rg.http_maps(plan)
    assert set(m) == {gm.stem(p, n) for p in (8080, 8081) for n in gm.NAMES}
    rid = m["gw8080-prefix"]["f.test/v1/"]
    assert m["gw8080-hosts"] == {"f.test": "f.test"}
    assert m["gw8080-routes"][rid] == gm.UNRESOLVED  # weighted: the Lua action picks
    a = next(u.name for u in plan.upstreams if u.service.startswith("default/a:"))
    assert m["gw8080-spec"][rid] == f"&w={a}%3A3&w=be_gw_500%3A1&hs=X-A%3A1%202&t=90000"
    assert not m["gw8081-routes"]  # the route names the http listener only


def test_runtime_ops_order() -> None:
    old = {"gw1-hosts": {"a": "a"}, "gw1-exact": {"a/x": "m1"}, "gw1-prefix": {}, "gw1-routes": {"m1": "be1"},
           "gw1-spec": {}}
    new = {"gw1-hosts": {"b": "b"}, "gw1-exact": {"b/x": "m2"}, "gw1-prefix": {}, "gw1-routes": {"m2": "be1"},
           "gw1-spec": {"m2": "&t=5"}}
    paths = {s: f"/d/{s}.map" for s in new}
    assert gm.ops(old, new, paths) == [
        "del map /d/gw1-hosts.map a", "del map /d/gw1-exact.map a/x",  # unreachable first
        "add map /d/gw1-routes.map m2 be1", "add map /d/gw1-spec.map m2 &t=5",  # then what routes need
        "add map /d/gw1-exact.map b/x m2", "add map /d/gw1-hosts.map b b",  # reachable last
        "del map /d/gw1-routes.map m1"]
