"""Routes as map entries (pure): the lookups HAProxy does on the maps give the core's answer, ids are
stable, and the runtime commands come in an order that never exposes a half-made route. The same
tables also run through HAProxy (test_precedence_haproxy.py, test_changes.py)."""

from __future__ import annotations

import pytest

from servicenet.ingress import maps
from servicenet.ingress.core import Inputs, compile_table
from servicenet.ingress.match import route_for
from servicenet.ingress.model import Table

from .objects import CLASS, ingress, path, rule, service
from .vectors import HOST_CASES, PATH_CASES


def _table(ings: list[dict], n_svcs: int = 4) -> Table:
    svcs = {f"default/s{i}": service(f"s{i}", [("http", 80)]) for i in range(n_svcs)}
    return compile_table(Inputs((CLASS,), tuple(ings), svcs, {}, {}))


def _lookup(m: maps.Maps, host: str, req_path: str, wildcard_labels: int = 1) -> str | None:
    """What the rendered HAProxy rules do with the maps: the host group, then the exact entry, else
    the longest prefix entry (``map_beg`` on a prefix tree)."""
    host = host.split(":", 1)[0].lower()
    g = m.hosts.get(host)
    labels = host.split(".")
    for k in range(1, wildcard_labels + 1):
        if g is None and len(labels) > k:
            g = m.hosts.get("*." + ".".join(labels[k:]))
    g = g or maps.NO_HOST
    key = g + req_path + "/"  # one key for both lookups
    rid = m.exact.get(key)
    if rid is None:
        hits = [k for k in m.prefix if key.startswith(k)]
        rid = m.prefix[max(hits, key=len)] if hits else None
    return rid


def _id_of(t: Table, r: object) -> str | None:
    if r is None:
        return None
    return maps.route_ids(t)[t.routes.index(r)]  # type: ignore[arg-type]


@pytest.mark.parametrize(("rules", "request_path", "want"), [c for c in PATH_CASES
                                                           if all(t != "ImplementationSpecific" for t, _ in c[0])])
def test_map_lookups_equal_the_core_on_the_path_vectors(rules: list[tuple[str, str]], request_path: str,
                                                        want: int | None) -> None:
    t = _table([ingress("p", [rule("p.test", *(path(p, f"s{j}", 80, k) for j, (k, p) in enumerate(rules)))])])
    assert maps.map_groups(t) == {"p.test"}
    m = maps.build(t)
    assert _lookup(m, "p.test", request_path) == _id_of(t, route_for(t, "p.test", request_path))
    got = _lookup(m, "p.test", request_path)
    assert (m.routes[got].split("_")[2] if got else None) == (f"s{want}" if want is not None else None)


@pytest.mark.parametrize(("hosts", "request_host", "want"), HOST_CASES)
def test_map_lookups_equal_the_core_on_the_host_vectors(hosts: list[str], request_host: str,
                                                        want: int | None) -> None:
    t = _table([ingress("h", [rule(h, path("/", f"s{j}")) for j, h in enumerate(hosts)])])
    m = maps.build(t)
    assert _lookup(m, request_host, "/") == _id_of(t, route_for(t, request_host, "/"))


def test_many_ingresses_one_host_longest_prefix_and_exact_first() -> None:
    ings = [ingress(f"i{k}", [rule("a.test", path(p, "s0", 80, kind))], created=f"2026-01-01T00:00:0{k}Z")
            for k, (kind, p) in enumerate([("Prefix", "/"), ("Prefix", "/a"), ("Prefix", "/a/b"), ("Exact", "/a"),
                                           ("Exact", "/a/b/c"), ("Prefix", "/a/b/c/")])]
    ings.append(ingress("nohost", [rule("", path("/x", "s1"))]))
    t = _table(ings)
    m = maps.build(t)
    for req in ("/", "/a", "/a/", "/ab", "/a/b", "/a/b/c", "/a/b/c/d", "/a/bc", "/x"):
        assert _lookup(m, "a.test", req) == _id_of(t, route_for(t, "a.test", req)), req
    assert _lookup(m, "other.test", "/x/y") == _id_of(t, route_for(t, "other.test", "/x/y")) is not None
    assert m.prefix["@/x/"] and m.prefix["a.test/a/b/c/"] and m.exact["a.test/a/b/c/"]


def test_routes_needing_rules_keep_their_group_out_of_the_maps() -> None:
    regex = {"nginx.ingress.kubernetes.io/use-regex": "true"}
    t = _table([ingress("plain", [rule("m.test", path("/", "s0"))]),
                ingress("re", [rule("r.test", path("/a+", "s1", 80, "ImplementationSpecific"))], annotations=regex),
                ingress("re2", [rule("r.test", path("/b", "s2", 80, "Exact"))])])
    assert maps.map_groups(t) == {"m.test"}
    ids = dict(zip([r.host + r.path for r in t.routes], maps.route_ids(t), strict=True))
    assert ids["m.test/"].startswith("m") and ids["r.test/a+"].startswith("r") and ids["r.test/b"].startswith("r")
    m = maps.build(t)
    assert list(m.prefix) == ["m.test/"] and not m.exact  # r.test's routes are rules
    assert set(m.hosts) == {"m.test", "r.test"}  # every host is a group


def test_ids_are_stable_and_changes_are_ordered() -> None:
    one = _table([ingress("a", [rule("a.test", path("/", "s0"))])])
    two = _table([ingress("a", [rule("a.test", path("/", "s0"))]),
                  ingress("b", [rule("b.test", path("/x", "s1", 80, "Exact"))],
                          annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "5m"})])
    assert maps.route_ids(one)[0] == maps.route_ids(two)[0]
    m1, m2 = maps.build(one), maps.build(two)
    paths = {n: f"/s/{n}.map" for n in maps.NAMES}
    add = maps.ops(m1, m2, paths)
    rid = maps.route_ids(two)[1]
    assert add == [f"add map /s/routes.map {rid} {m2.routes[rid]}", f"add map /s/body.map {rid} 5242880",
                   f"add map /s/exact.map b.test/x/ {rid}", "add map /s/hosts.map b.test b.test"]
    back = maps.ops(m2, m1, paths)
    assert back == ["del map /s/hosts.map b.test", "del map /s/exact.map b.test/x/",
                    f"del map /s/routes.map {rid}", f"del map /s/body.map {rid}"]
    assert maps.ops(m1, m1, paths) == []


def test_runtime_words_escape_semicolons() -> None:
    t = _table([ingress("a", [rule("a.test", path("/x;y", "s0"))])])
    cmds = maps.ops(maps.Maps(), maps.build(t), {n: n for n in maps.NAMES})
    assert "add map prefix a.test/x\\;y/ " + maps.route_ids(t)[0] in cmds
