"""Gateway API HTTPRoutes compiled into the same routing table as Ingresses (pure).

Matching and precedence follow the HTTPRoute specification: within the most specific hostname
(exact, then the longest wildcard suffix; a wildcard covers any number of labels), an Exact path
beats the longest PathPrefix, then a method match, then the most header matches, then the most query
matches; remaining ties go to the oldest route, then ``namespace/name``, then rule and match order.
Backend references resolve to Services (cross-namespace only with a ReferenceGrant); a reference
that does not resolve answers 500 for its share of the weight.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of
from servicenet.ingress import annotations as annot
from servicenet.ingress.core import HOST, PATH, Inputs, _age, _Compiler, _key
from servicenet.ingress.model import EXACT, PREFIX, REGEX, Problem, Route, Table

GW_GROUP = "gateway.networking.k8s.io"
METHODS = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
VALUE = re.compile(r"^[\x20-\x26\x28-\x7e]{0,4096}$")  # printable ASCII without a quote
KIND_RANK = {EXACT: 0, PREFIX: 1, REGEX: 2}
PROTOCOL_OF_KIND = {"GRPCRoute": "h2c", "TLSRoute": "tcp"}  # the backend protocol a route kind forces
DURATION = re.compile(r"^(?:[0-9]{1,5}(?:h|m|s|ms)){1,4}$")
DURATION_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}


@dataclass(frozen=True)
class RouteInputs:
    routes: tuple[Obj, ...] = ()
    grants: tuple[Obj, ...] = ()  # ReferenceGrants
    services: Any = None
    slices: Any = None
    kind: str = "HTTPRoute"
    problems: list[Problem] = field(default_factory=list)
    # route -> its compiled pieces, reused while the route's version and hostnames are unchanged; the
    # caller gives a fresh dict whenever Services, EndpointSlices or ReferenceGrants change
    cache: dict[Any, Any] | None = None


def granted(grants: tuple[Obj, ...], from_ns: str, from_kind: str, to_ns: str, to_kind: str, to_name: str) -> bool:
    """Whether a ReferenceGrant in ``to_ns`` lets ``from_kind`` objects of ``from_ns`` refer to the target."""
    for g in grants:
        if meta_of(g).get("namespace") != to_ns:
            continue
        spec = g.get("spec") or {}
        ok_from = any(f.get("group") == GW_GROUP and f.get("kind") == from_kind and f.get("namespace") == from_ns
                      for f in spec.get("from") or [])
        ok_to = any((t.get("group") or "") == "" and t.get("kind") == to_kind and (not t.get("name") or
                                                                                   t.get("name") == to_name)
                    for t in spec.get("to") or [])
        if ok_from and ok_to:
            return True
    return False


class _RouteCompiler(_Compiler):
    def __init__(self, inp: RouteInputs) -> None:
        super().__init__(Inputs(services=inp.services or {}, slices=inp.slices or {}))
        self.rinp = inp
        self.kind = inp.kind
        self.out: list[tuple[tuple[Any, ...], Route]] = []

    def problem(self, obj: Obj, reason: str, message: str) -> None:
        md = meta_of(obj)
        self.problems.append(Problem(self.kind, md.get("namespace", ""), md.get("name", ""), reason, message))

    def backend(self, route: Obj, ref: Obj) -> str:
        ns = meta_of(route).get("namespace", "")
        to_ns = ref.get("namespace") or ns
        if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
            self.problem(route, "InvalidKind", f"backendRef {ref.get('kind')} {ref.get('name')} is not a Service")
            return ""
        if to_ns != ns and not granted(self.rinp.grants, ns, self.kind, to_ns, "Service", ref.get("name", "")):
            self.problem(route, "RefNotPermitted", f"backendRef {to_ns}/{ref.get('name')} needs a ReferenceGrant "
                         f"in {to_ns}")
            return ""
        fake = {"metadata": {"namespace": to_ns, "name": meta_of(route).get("name", "")}}
        before = len(self.problems)
        up = self.upstream(fake, {"service": {"name": ref.get("name", ""), "port": {"number": ref.get("port")}}},
                           annot.Options(protocol=PROTOCOL_OF_KIND.get(self.kind, "")))
        if len(self.problems) > before:  # the Ingress-shaped problem: re-home it on the route as BackendNotFound
            msg = self.problems.pop().message
            self.problem(route, "BackendNotFound", msg)
            return ""
        return up

    def route(self, obj: Obj, age: tuple[str, str]) -> None:
        spec = obj.get("spec") or {}
        hosts = [h.lower() for h in spec.get("hostnames") or []] or [""]
        for h in hosts:
            if h and not HOST.match(h):
                self.problem(obj, "InvalidHostname", f"hostname {h!r} is not valid")
                return
        for ri, rule in enumerate(spec.get("rules") or []):
            backends = tuple((self.backend(obj, ref), int(ref.get("weight", 1)))
                             for ref in rule.get("backendRefs") or [])
            if not backends:
                backends = (("", 1),)
            filters = self.filters(obj, rule.get("filters") or [])
            if filters is None:
                continue
            timeouts = rule.get("timeouts") or {}
            tmo = timeouts.get("backendRequest") or timeouts.get("request") or ""
            if tmo and not DURATION.match(tmo):
                self.problem(obj, "UnsupportedValue", f"timeout {tmo!r} is not a Gateway API duration")
                continue
            if tmo:
                filters["timeout_ms"] = duration_ms(tmo)
            for mi, m in enumerate(rule.get("matches") or [{}]):
                r = self.match(obj, m, backends)
                if r is None:
                    continue
                r = Route(**{**r.__dict__, **filters})
                if (r.redirect_prefix or filters.get("rewrite_path") and filters["rewrite_path"][0] ==
                        "ReplacePrefixMatch") and r.kind != PREFIX:
                    self.problem(obj, "UnsupportedValue", "ReplacePrefixMatch needs a PathPrefix match")
                    continue
                for h in hosts:
                    key = (KIND_RANK[r.kind], -len(r.path.rstrip("/") if r.kind == PREFIX else r.path),
                           0 if r.method else 1, -len(r.headers), -len(r.query), age, ri, mi)
                    self.out.append((key, Route(**{**r.__dict__, "host": h})))

    def filters(self, obj: Obj, fs: list[Obj]) -> dict[str, Any] | None:
        """Route fields for a rule's filters; None (and a problem) when one is not supported."""
        out: dict[str, Any] = {}

        def headers(mod: Obj) -> tuple[tuple[str, str, str], ...] | None:
            ops = []
            for op in ("set", "add"):
                for h in mod.get(op) or []:
                    if not annot.TOKEN.match(h.get("name", "")) or not VALUE.match(h.get("value", "")):
                        return None
                    ops.append((op, h["name"], h["value"]))
            for name in mod.get("remove") or []:
                if not annot.TOKEN.match(name):
                    return None
                ops.append(("remove", name, ""))
            return tuple(ops)

        for f in fs:
            t = f.get("type")
            if t in ("RequestHeaderModifier", "ResponseHeaderModifier"):
                key = "requestHeaderModifier" if t == "RequestHeaderModifier" else "responseHeaderModifier"
                ops = headers(f.get(key) or {})
                if ops is None:
                    self.problem(obj, "UnsupportedValue", f"{t}: a header name or value is not valid (CR/LF, quotes)")
                    return None
                out["req_headers" if t == "RequestHeaderModifier" else "resp_headers"] = ops
            elif t == "RequestRedirect":
                rr = f.get("requestRedirect") or {}
                path = rr.get("path") or {}
                ptype = path.get("type")
                full = path.get("replaceFullPath", "") if ptype == "ReplaceFullPath" else ""
                prefix = path.get("replacePrefixMatch", "") if ptype == "ReplacePrefixMatch" else ""
                host = (rr.get("hostname") or "").lower()
                if (ptype and ptype not in ("ReplaceFullPath", "ReplacePrefixMatch")) or (
                        ptype and not PATH.match(full or prefix)) or (host and not HOST.match(host)) or (
                        rr.get("scheme") or "http") not in ("http", "https"):
                    self.problem(obj, "UnsupportedValue", "RequestRedirect: scheme, hostname or path is not valid")
                    return None
                out["redirect"] = (rr.get("scheme") or "", host, int(rr.get("port") or 0), full,
                                   int(rr.get("statusCode") or 302))
                out["redirect_prefix"] = prefix
            elif t == "RequestMirror":
                rm = f.get("requestMirror") or {}
                up = self.backend(obj, rm.get("backendRef") or {})
                u = self.upstreams.get(up) if up else None
                frac = rm.get("fraction") or {}
                pct = int(rm["percent"]) if rm.get("percent") is not None else (
                    100 * int(frac.get("numerator", 100)) // max(1, int(frac.get("denominator") or 100))
                    if frac else 100)
                if u is not None and u.endpoints:
                    out["mirror"] = (*out.get("mirror", ()), (*u.endpoints[0], pct))
            elif t == "URLRewrite":
                uw = f.get("urlRewrite") or {}
                host = (uw.get("hostname") or "").lower()
                path = uw.get("path") or {}
                ptype = path.get("type")
                val = path.get("replaceFullPath") if ptype == "ReplaceFullPath" else path.get("replacePrefixMatch")
                if (host and not HOST.match(host)) or (ptype and (ptype not in ("ReplaceFullPath", "ReplacePrefixMatch")
                                                                  or not val or not PATH.match(val))):
                    self.problem(obj, "UnsupportedValue", "URLRewrite: hostname or path is not valid")
                    return None
                out["rewrite_host"] = host
                if ptype:
                    out["rewrite_path"] = (ptype, val)
            else:
                self.problem(obj, "UnsupportedValue", f"filter {t!r} is not supported")
                return None
        return out

    def match(self, obj: Obj, m: Obj, backends: tuple[tuple[str, int], ...]) -> Route | None:
        p = m.get("path") or {}
        ptype = p.get("type") or "PathPrefix"
        value = p.get("value") or "/"
        kind = {"Exact": EXACT, "PathPrefix": PREFIX, "RegularExpression": REGEX}.get(ptype)
        if kind is None or not value.startswith("/") or (kind != REGEX and not PATH.match(value)) or "'" in value:
            self.problem(obj, "UnsupportedValue", f"path {ptype} {value!r} is not supported")
            return None
        if kind == REGEX:
            try:
                re.compile(value)
            except re.error as exc:
                self.problem(obj, "UnsupportedValue", f"path regex {value!r}: {exc}")
                return None
        method = m.get("method") or ""
        if method and method not in METHODS:
            self.problem(obj, "UnsupportedValue", f"method {method!r}")
            return None
        hdrs, qs = [], []
        for src, out, lower in ((m.get("headers"), hdrs, True), (m.get("queryParams"), qs, False)):
            for h in src or []:
                name, typ, val = h.get("name", ""), h.get("type") or "Exact", h.get("value", "")
                if not annot.TOKEN.match(name) or not VALUE.match(val) or typ not in ("Exact", "RegularExpression"):
                    self.problem(obj, "UnsupportedValue", f"match {name!r}={val!r} ({typ}) is not supported")
                    return None
                out.append((name.lower() if lower else name, typ, val))
        return Route("", value, kind, backends[0][0], _key(obj), ssl_redirect=False, body_limit=None,
                     method=method, headers=tuple(sorted(hdrs)), query=tuple(sorted(qs)),
                     backends=backends if len(backends) > 1 or not backends[0][0] or backends[0][1] <= 0 else ())


def host_rank(h: str) -> tuple[int, int]:
    """Hostname precedence: non-wildcard first, longer first; the catch-all last."""
    return (2, 0) if not h else ((1, -len(h)) if h.startswith("*.") else (0, -len(h)))


def duration_ms(d: str) -> int:
    """A Gateway API duration (``1h``, ``10s``, ``1m30s``, ``500ms``) in milliseconds."""
    return sum(int(n) * MS[u] for n, u in DURATION_PART.findall(d))


def grpc_as_http(obj: Obj) -> Obj:
    """A GRPCRoute as the HTTPRoute it routes like: a gRPC call is a POST to ``/<service>/<method>``.

    Exact service and method: an Exact path; a service alone: the PathPrefix ``/<service>``; otherwise
    a regular expression over both parts. Header matches and filters carry over."""
    spec = obj.get("spec") or {}
    rules = []
    for rule in spec.get("rules") or []:
        matches = []
        for m in rule.get("matches") or [{}]:
            gm = m.get("method") or {}
            svc, meth, typ = gm.get("service") or "", gm.get("method") or "", gm.get("type") or "Exact"
            if not svc and not meth:
                path = {"type": "PathPrefix", "value": "/"}
            elif typ == "Exact" and svc and meth:
                path = {"type": "Exact", "value": f"/{svc}/{meth}"}
            elif typ == "Exact" and svc:
                path = {"type": "PathPrefix", "value": f"/{svc}"}
            else:
                esc = (lambda v: re.escape(v)) if typ == "Exact" else (lambda v: v)
                path = {"type": "RegularExpression",
                        "value": f"/{esc(svc) if svc else '[^/]+'}/{esc(meth) if meth else '[^/]+'}$"}
            matches.append({"path": path, "headers": m.get("headers") or []})
        rules.append({**rule, "matches": matches})
    return {**obj, "spec": {**spec, "rules": rules}}


def _compile_one(inp: RouteInputs, obj: Obj) -> tuple[list[tuple[tuple[Any, ...], Route]], dict[str, Any],
                                                        tuple[Problem, ...]]:
    """One route's (precedence key, Route) pairs, the backends they use, and its problems."""
    c = _RouteCompiler(inp)
    c.kind = obj.get("kind") or inp.kind
    c.route(grpc_as_http(obj) if c.kind == "GRPCRoute" else obj, _age(obj))
    return c.out, c.upstreams, tuple(c.problems)


def _cached_one(inp: RouteInputs, obj: Obj) -> tuple[list[tuple[tuple[Any, ...], Route]], dict[str, Any],
                                                       tuple[Problem, ...]]:
    md = meta_of(obj)
    rv = md.get("resourceVersion")
    if inp.cache is None or not rv:
        return _compile_one(inp, obj)
    key = (obj.get("kind") or inp.kind, md.get("namespace"), md.get("name"), rv, md.get("creationTimestamp"),
           tuple((obj.get("spec") or {}).get("hostnames") or ()))
    hit = inp.cache.get(key)
    if hit is None:
        if len(inp.cache) > 50_000:
            inp.cache.clear()
        hit = inp.cache[key] = _compile_one(inp, obj)
    return hit  # type: ignore[no-any-return]


def compile_routes(inp: RouteInputs) -> Table:
    out: list[tuple[tuple[Any, ...], Route]] = []
    upstreams: dict[str, Any] = {}
    problems: list[Problem] = []
    for obj in sorted(inp.routes, key=_age):
        pairs, ups, probs = _cached_one(inp, obj)
        out += pairs
        upstreams.update(ups)
        problems += probs
    by_host: dict[str, list[tuple[tuple[Any, ...], Route]]] = {}
    for kr in out:
        by_host.setdefault(kr[1].host, []).append(kr)
    routes: list[Route] = []
    for h in sorted(by_host, key=host_rank):
        routes.extend(r for _, r in sorted(by_host[h], key=lambda kr: kr[0]))
    return Table(tuple(routes), tuple(sorted(upstreams.values(), key=lambda u: u.name)), (), "",
                 tuple(_key(o) for o in inp.routes), wildcard_labels=16, problems=tuple(problems))
