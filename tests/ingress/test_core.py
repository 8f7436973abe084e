"""The pure core: class selection, the documented path/host vectors, precedence across Ingresses,
backends from EndpointSlices, TLS Secrets and annotations — no I/O."""

from __future__ import annotations

import pytest

from servicenet.ingress import annotations as annot
from servicenet.ingress.core import Inputs, compile_table
from servicenet.ingress.match import backend_for, route_for
from servicenet.ingress.model import REGEX, Table

from .objects import CLASS, backend, ingress, path, rule, service, slice_, tls_secret
from .pki import CA
from .vectors import HOST_CASES, PATH_CASES


def table(ings: list[dict], *, svcs: list[dict] | None = None, slices: list[dict] | None = None,
          secrets: list[dict] | None = None, classes: list[dict] | None = None) -> Table:
    def key(o: dict) -> str:
        return f"{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"

    by_svc: dict[str, list[dict]] = {}
    for s in slices or []:
        by_svc.setdefault(f"{s['metadata']['namespace']}/{s['metadata']['labels']['kubernetes.io/service-name']}",
                          []).append(s)
    return compile_table(Inputs(tuple(classes if classes is not None else [CLASS]), tuple(ings),
                                {key(s): s for s in svcs or []}, by_svc, {key(s): s for s in secrets or []}))


def svc_names(n: int) -> list[dict]:
    return [service(f"s{i}", [("http", 80)]) for i in range(n)]


@pytest.mark.parametrize(("rules", "request_path", "want"), PATH_CASES)
def test_documented_path_vectors(rules: list[tuple[str, str]], request_path: str, want: int | None) -> None:
    ing = ingress("x", [rule("h.test", *(path(p, f"s{i}", 80, t) for i, (t, p) in enumerate(rules)))])
    t = table([ing], svcs=svc_names(len(rules)))
    got = backend_for(t, "h.test", request_path)
    assert (t.upstream(got).service if got else None) == (f"default/s{want}:80" if want is not None else None)


@pytest.mark.parametrize(("hosts", "req_host", "want"), HOST_CASES)
def test_documented_host_vectors(hosts: list[str], req_host: str, want: int | None) -> None:
    ing = ingress("x", [rule(h, path("/", f"s{i}")) for i, h in enumerate(hosts)])
    t = table([ing], svcs=svc_names(len(hosts)))
    got = backend_for(t, req_host, "/")
    assert (t.upstream(got).service if got else None) == (f"default/s{want}:80" if want is not None else None)


def test_precedence_spans_ingresses_and_the_older_one_wins_a_conflict() -> None:
    old = ingress("old", [rule("h.test", path("/a", "s0"))], created="2026-01-01T00:00:00Z")
    new = ingress("new", [rule("h.test", path("/a", "s1"), path("/a/b", "s2"), path("/a", "s3", 80, "Exact"))],
                  created="2026-02-01T00:00:00Z")
    t = table([new, old], svcs=svc_names(4))
    assert t.upstream(backend_for(t, "h.test", "/a/x")).service == "default/s0:80"
    assert t.upstream(backend_for(t, "h.test", "/a/b/c")).service == "default/s2:80"
    assert t.upstream(backend_for(t, "h.test", "/a")).service == "default/s3:80"
    assert [(p.name, p.reason) for p in t.problems] == [("new", "PathConflict")]


def test_class_selection() -> None:
    other = {"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}
    nodefault = {"metadata": {"name": "servicenet"}, "spec": {"controller": "servicenet.io/ingress-controller"}}
    ings = [ingress("mine", [rule("a.test", path("/", "s0"))], cls="servicenet"),
            ingress("theirs", [rule("b.test", path("/", "s0"))], cls="nginx"),
            ingress("classless", [rule("c.test", path("/", "s0"))]),
            {**ingress("legacy", [rule("d.test", path("/", "s0"))]),
             "metadata": {"name": "legacy", "namespace": "default",
                          "annotations": {"kubernetes.io/ingress.class": "servicenet"}}}]
    t = table(ings, svcs=svc_names(1), classes=[CLASS, other])
    assert set(t.ingresses) == {"default/mine", "default/classless", "default/legacy"}
    t = table(ings, svcs=svc_names(1), classes=[nodefault, other])
    assert set(t.ingresses) == {"default/mine", "default/legacy"}
    t = table(ings, svcs=svc_names(1), classes=[other])
    assert t.ingresses == ()


def test_default_backend_ports_by_name_and_resource_backends() -> None:
    svc = service("web", [("http", 80), ("admin", 9000)])
    ing = ingress("x", [rule("h.test", path("/admin", "web", "admin"), path("/", "web", 80)),
                        rule("r.test", {"path": "/", "pathType": "Prefix",
                                        "backend": {"resource": {"kind": "StorageBucket", "name": "b"}}})],
                  default_backend=backend("web", 80))
    sl = slice_("web", ["10.0.0.1", "10.0.0.2"], [("http", 8080), ("admin", 9090)])
    t = table([ing], svcs=[svc], slices=[sl])
    admin = t.upstream(backend_for(t, "h.test", "/admin/x"))
    assert admin.endpoints == (("10.0.0.1", 9090), ("10.0.0.2", 9090))
    assert t.upstream(backend_for(t, "other.test", "/")).endpoints == (("10.0.0.1", 8080), ("10.0.0.2", 8080))
    assert "resource" in t.upstream(backend_for(t, "r.test", "/")).error


def test_endpoints_ready_then_serving_terminating_and_missing_service() -> None:
    svc = service("web", [("", 80)])
    ready = slice_("web", ["10.0.0.1"], [("", 8080)], name="a")
    term = slice_("web", ["10.0.0.2"], [("", 8080)], name="b", ready=False, serving=True, terminating=True)
    notready = slice_("web", ["10.0.0.3"], [("", 8080)], name="c", ready=False)
    ing = ingress("x", [rule("h.test", path("/", "web")), rule("m.test", path("/", "missing"))])
    t = table([ing], svcs=[svc], slices=[ready, term, notready])
    assert t.upstream(backend_for(t, "h.test", "/")).endpoints == (("10.0.0.1", 8080),)
    t = table([ing], svcs=[svc], slices=[term, notready])
    assert t.upstream(backend_for(t, "h.test", "/")).endpoints == (("10.0.0.2", 8080),)
    assert t.upstream(backend_for(t, "m.test", "/")).error == "service not found"
    assert ("x", "ServiceNotFound") in [(p.name, p.reason) for p in t.problems]


def test_tls_by_secret_missing_and_bad_secrets() -> None:
    ca = CA.new()
    crt, key, _ = ca.leaf("bbs.test.com")
    _, other_key, _ = ca.leaf("x.test")
    good = tls_secret("bbs-tls", crt, key)
    mismatched = tls_secret("bad-tls", crt, other_key)
    ing = ingress("x", [rule("bbs.test.com", path("/", "s0")), rule("b.test", path("/", "s0"))],
                  tls=[{"hosts": ["bbs.test.com"], "secretName": "bbs-tls"},
                       {"hosts": ["b.test"], "secretName": "bad-tls"},
                       {"hosts": ["c.test"], "secretName": "nope"}])
    t = table([ing], svcs=svc_names(1), secrets=[good, mismatched])
    assert [(c.name, c.hosts) for c in t.certs] == [("default_bbs-tls.pem", ("bbs.test.com",))]
    assert t.certs[0].pem.startswith(crt)
    reasons = sorted(p.reason for p in t.problems)
    assert reasons == ["InvalidCertificate", "SecretNotFound"]
    assert route_for(t, "bbs.test.com", "/").tls and route_for(t, "b.test", "/").tls


def test_annotations_under_both_prefixes_and_bad_values() -> None:
    o = annot.parse({"nginx.ingress.kubernetes.io/proxy-body-size": "200m",
                     "nginx.ingress.kubernetes.io/proxy-read-timeout": "300",
                     "servicenet.io/proxy-send-timeout": "600",
                     "nginx.ingress.kubernetes.io/ssl-redirect": "false",
                     "nginx.ingress.kubernetes.io/backend-protocol": "GRPC",
                     "nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8, 127.0.0.1",
                     "nginx.ingress.kubernetes.io/affinity": "cookie"})
    assert (o.body_limit, o.timeout_server, o.ssl_redirect, o.protocol, o.allow, o.affinity_cookie) == (
        200 * 1024 * 1024, 600, False, "grpc", ("10.0.0.0/8", "127.0.0.1/32"), "INGRESSCOOKIE")
    assert annot.parse({"servicenet.io/ssl-redirect": "true",
                        "nginx.ingress.kubernetes.io/ssl-redirect": "false"}).ssl_redirect is True
    bad = annot.parse({"nginx.ingress.kubernetes.io/canary-by-header-value": "a\r\nX-Evil: 1",
                       "nginx.ingress.kubernetes.io/proxy-body-size": "lots",
                       "nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/33",
                       "nginx.ingress.kubernetes.io/rewrite-target": "/x\" ; evil"})
    assert len(bad.errors) == 4 and bad.body_limit == annot.DEFAULT_BODY_LIMIT and bad.canary_header_value == ""
    assert annot.parse({"nginx.ingress.kubernetes.io/proxy-body-size": "0"}).body_limit is None


def test_bad_regex_and_bad_paths_are_rejected_alone() -> None:
    ann = {"nginx.ingress.kubernetes.io/use-regex": "true"}
    bad = ingress("bad", [rule("h.test", path("/a(", "s0", 80, "ImplementationSpecific"),
                               path("/ok/[0-9]+", "s1", 80, "ImplementationSpecific"))], annotations=ann)
    worse = ingress("worse", [rule("h.test", path('/x" deny', "s0"), path("/fine", "s0"))])
    t = table([bad, worse], svcs=svc_names(2))
    assert sorted((p.name, p.reason) for p in t.problems) == [("bad", "InvalidRegex"), ("worse", "InvalidPath")]
    r = route_for(t, "h.test", "/OK/123")
    assert r is not None and r.kind == REGEX and t.upstream(r.upstream).service == "default/s1:80"
    assert t.upstream(backend_for(t, "h.test", "/fine")).service == "default/s0:80"


def test_canary_by_header_and_weight() -> None:
    main = ingress("main", [rule("h.test", path("/", "s0"))])
    can = ingress("can", [rule("h.test", path("/", "s1"))], created="2026-03-01T00:00:00Z",
                  annotations={"nginx.ingress.kubernetes.io/canary": "true",
                               "nginx.ingress.kubernetes.io/canary-by-header": "X-Canary",
                               "nginx.ingress.kubernetes.io/canary-weight": "20"})
    t = table([main, can], svcs=svc_names(2))
    assert len(t.routes) == 1 and t.routes[0].canaries[0].weight == 20
    assert t.upstream(backend_for(t, "h.test", "/", {"x-canary": "always"})).service == "default/s1:80"
    assert t.upstream(backend_for(t, "h.test", "/", {"x-canary": "never"})).service == "default/s0:80"
    assert t.upstream(backend_for(t, "h.test", "/")).service == "default/s0:80"
