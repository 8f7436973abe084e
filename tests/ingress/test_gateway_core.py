"""HTTPRoute matching precedence (path, method, header, query, hostname), weights, unresolvable
references and ReferenceGrant — the pure core, and the same cases through HAProxy."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from servicenet.ingress.gateway_core import RouteInputs, compile_routes
from servicenet.ingress.match import route_for

from .backends import serve
from .gwobjects import match
from .harness import free_port
from .objects import service, slice_
from .table_haproxy import table_haproxy

Obj = dict[str, Any]


def ref(name: str, weight: int = 1, ns: str | None = None) -> Obj:
    r: Obj = {"name": name, "port": 80, "weight": weight}
    if ns:
        r["namespace"] = ns
    return r


def rule(*refs: Obj, path: tuple[str, str] = ("PathPrefix", "/"), method: str = "",
         headers: dict[str, str] | None = None, query: dict[str, str] | None = None) -> Obj:
    return {"matches": [match(path, method, headers, query)], "backendRefs": list(refs)}


def httproute(name: str, hostnames: list[str], *rules: Obj, created: str = "2026-01-01T00:00:00Z",
              ns: str = "default") -> Obj:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {"hostnames": hostnames, "rules": list(rules)}}


ROUTES = [
    httproute("main", ["example.com"],
              rule(ref("s0"), path=("Exact", "/foo")),
              rule(ref("s1"), path=("PathPrefix", "/foo")),
              rule(ref("s2"), path=("PathPrefix", "/foo"), method="POST"),
              rule(ref("s3"), path=("PathPrefix", "/foo"), headers={"x-a": "1"}),
              rule(ref("s4"), path=("PathPrefix", "/foo"), headers={"x-a": "1", "x-b": "2"}),
              rule(ref("s5"), path=("PathPrefix", "/foo"), query={"q": "1"}),
              rule(ref("s6"), path=("PathPrefix", "/foo/bar")),
              rule(ref("s0"), path=("PathPrefix", "/dup"))),
    httproute("wild", ["*.example.com"], rule(ref("s7")), created="2026-02-01T00:00:00Z"),
    httproute("any", [], rule(ref("s8")), created="2026-02-01T00:00:00Z"),
    httproute("newer", ["example.com"], rule(ref("s9"), path=("PathPrefix", "/dup")), created="2026-03-01T00:00:00Z"),
]

# (method, host, path, headers, query, expected service index or None for 404)
CASES: list[tuple[str, str, str, dict[str, str], dict[str, str], int | None]] = [
    ("GET", "example.com", "/foo", {}, {}, 0),  # Exact beats every prefix
    ("GET", "example.com", "/foo/x", {}, {}, 1),
    ("GET", "example.com", "/foox", {}, {}, None),  # element-wise prefix; example.com has no "/" rule
    ("POST", "example.com", "/foo/x", {}, {}, 2),
    ("POST", "example.com", "/foo/x", {"x-a": "1", "x-b": "2"}, {}, 2),  # method beats headers
    ("GET", "example.com", "/foo/x", {"x-a": "1"}, {}, 3),
    ("GET", "example.com", "/foo/x", {"x-a": "1", "x-b": "2"}, {}, 4),  # more headers win
    ("GET", "example.com", "/foo/x", {"x-a": "2"}, {}, 1),
    ("GET", "example.com", "/foo/x", {}, {"q": "1"}, 5),
    ("GET", "example.com", "/foo/x", {"x-a": "1"}, {"q": "1"}, 3),  # headers beat query
    ("POST", "example.com", "/foo/bar/z", {}, {}, 6),  # longest prefix beats method
    ("GET", "a.example.com", "/anything", {}, {}, 7),
    ("GET", "a.b.example.com", "/", {}, {}, 7),  # Gateway wildcards cover any number of labels
    ("GET", "other.org", "/x", {}, {}, 8),
    ("GET", "example.com", "/dup/1", {}, {}, 0),  # same match in two routes: the older route wins
]


def tables(ports: list[int]) -> tuple[Any, dict[str, int]]:
    svcs = {f"default/s{i}": service(f"s{i}", [("http", 80)]) for i in range(10)}
    slices = {f"default/s{i}": [slice_(f"s{i}", ["127.0.0.1"], [("http", ports[i])])] for i in range(10)}
    t = compile_routes(RouteInputs(tuple(ROUTES), services=svcs, slices=slices))
    return t, {f"s:{p}": i for i, p in enumerate(ports)}


def _svc_index(t: Any, r: Any) -> int | None:
    if r is None:
        return None
    return int(t.upstream(r.upstream).service.split("/")[1].split(":")[0][1:])


@pytest.mark.parametrize(("method", "host", "path", "headers", "query", "want"), CASES)
def test_httproute_precedence_core(method: str, host: str, path: str, headers: dict[str, str],
                                   query: dict[str, str], want: int | None) -> None:
    t, _ = tables(list(range(10000, 10010)))
    assert not t.problems
    assert _svc_index(t, route_for(t, host, path, method, headers, query)) == want


async def test_httproute_precedence_through_haproxy(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(10)]
    runner = await serve("s:", "127.0.0.1", ports)
    t, by_name = tables(ports)
    try:
        async with table_haproxy(tmp_path, t) as port, aiohttp.ClientSession() as sess:
            for method, host, path, headers, query, want in CASES:
                async with sess.request(method, f"http://127.0.0.1:{port}{path}", params=query,
                                        headers={"Host": host, **headers}) as r:
                    got = by_name[(await r.json())["name"]] if r.status == 200 else None
                    assert (r.status == 404) == (want is None)
                core = _svc_index(t, route_for(t, host, path, method, headers, query))
                assert got == want == core, (method, host, path, headers, query, got)
    finally:
        await runner.cleanup()


async def test_weights_unresolved_refs_and_reference_grants(tmp_path: Path) -> None:
    ports = [free_port() for _ in range(2)]
    runner = await serve("s:", "127.0.0.1", ports)
    svcs = {"default/a": service("a", [("http", 80)]), "other/b": service("b", [("http", 80)], ns="other")}
    slices = {"default/a": [slice_("a", ["127.0.0.1"], [("http", ports[0])])],
              "other/b": [slice_("b", ["127.0.0.1"], [("http", ports[1])], ns="other")]}
    routes = (httproute("w", ["w.test"], rule(ref("a", 70), ref("b", 20, ns="other"), ref("missing", 10))),)
    t = compile_routes(RouteInputs(routes, services=svcs, slices=slices))
    assert sorted(p.reason for p in t.problems) == ["BackendNotFound", "RefNotPermitted"]
    grant = {"metadata": {"namespace": "other", "name": "g"},
             "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "default"}],
                      "to": [{"group": "", "kind": "Service"}]}}
    t2 = compile_routes(RouteInputs(routes, (grant,), services=svcs, slices=slices))
    assert [p.reason for p in t2.problems] == ["BackendNotFound"]
    try:
        for table, want in ((t, {"s:a": 0.7, 500: 0.3}), (t2, {"s:a": 0.7, "s:b": 0.2, 500: 0.1})):
            async with table_haproxy(tmp_path / str(len(want)), table) as port, aiohttp.ClientSession() as sess:
                seen: Counter[Any] = Counter()
                for _ in range(2000):
                    async with sess.get(f"http://127.0.0.1:{port}/", headers={"Host": "w.test"}) as r:
                        if r.status == 200:
                            name = (await r.json())["name"]
                            seen["s:a" if name == f"s:{ports[0]}" else "s:b"] += 1
                        else:
                            seen[r.status] += 1
            assert set(seen) == set(want), seen
            for k, share in want.items():
                assert abs(seen[k] / 2000 - share) <= 0.05, (k, seen)
    finally:
        await runner.cleanup()


def _filtered(*filters: Obj, path: tuple[str, str] = ("PathPrefix", "/")) -> Obj:
    r = rule(ref("a"), path=path)
    r["filters"] = list(filters)
    return r


async def test_filters_through_haproxy(tmp_path: Path) -> None:
    port_a = free_port()
    runner = await serve("a", "127.0.0.1", [port_a])
    svcs = {"default/a": service("a", [("http", 80)])}
    slices = {"default/a": [slice_("a", ["127.0.0.1"], [("http", port_a)])]}
    routes = (httproute("f", ["f.test"],
                        _filtered({"type": "RequestHeaderModifier", "requestHeaderModifier": {
                            "set": [{"name": "X-Set", "value": "one two"}], "add": [{"name": "X-Add", "value": "2"}],
                            "remove": ["X-Drop"]}},
                            {"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                                "set": [{"name": "X-Resp", "value": "yes"}]}}, path=("PathPrefix", "/hdr")),
                        _filtered({"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}},
                                  path=("PathPrefix", "/secure")),
                        _filtered({"type": "URLRewrite", "urlRewrite": {"hostname": "inner.test", "path": {
                            "type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}}, path=("PathPrefix", "/v1")),
                        _filtered({"type": "URLRewrite", "urlRewrite": {"path": {
                            "type": "ReplaceFullPath", "replaceFullPath": "/fixed"}}}, path=("PathPrefix", "/full"))),
              httproute("bad", ["b.test"], _filtered({"type": "RequestHeaderModifier", "requestHeaderModifier": {
                  "set": [{"name": "X-Evil", "value": "a\r\nInjected: 1"}]}})))
    t = compile_routes(RouteInputs(routes, services=svcs, slices=slices))
    assert [(p.name, p.reason) for p in t.problems] == [("bad", "UnsupportedValue")]
    try:
        async with table_haproxy(tmp_path, t) as port, aiohttp.ClientSession() as sess:
            base = f"http://127.0.0.1:{port}"
            async with sess.get(base + "/hdr/x", headers={"Host": "f.test", "X-Drop": "1", "X-Add": "1"}) as r:
                body = await r.json()
                assert r.headers["X-Resp"] == "yes"
            h = body["headers"]
            assert h["x-set"] == "one two" and "x-drop" not in h and h["x-add"].endswith("2"), h  # appended line
            async with sess.get(base + "/secure/p?q=1", headers={"Host": "f.test"}, allow_redirects=False) as r:
                assert r.status == 301 and r.headers["Location"] == "https://f.test/secure/p?q=1", r.headers
            async with sess.get(base + "/v1/items?x=1", headers={"Host": "f.test"}) as r:
                body = await r.json()
            assert body["path"] == "/v2/items?x=1" and body["headers"]["host"] == "inner.test", body
            async with sess.get(base + "/full/any/thing", headers={"Host": "f.test"}) as r:
                assert (await r.json())["path"] == "/fixed"
    finally:
        await runner.cleanup()
