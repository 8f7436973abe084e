"""Compile Ingresses, IngressClasses, Services, EndpointSlices and Secrets into a routing table (pure).

All precedence lives here: which Ingresses this controller serves, host groups (exact host, then a
one-label wildcard, then rules without a host), and within a host the longest path first with Exact
before Prefix on a tie, older Ingresses winning conflicts. No I/O: objects in, a :class:`Table` out.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from servicenet.api import wellknown as wk
from servicenet.api.views import EndpointView
from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of
from servicenet.ingress import annotations as annot
from servicenet.ingress.certs import CertError, secret_pem
from servicenet.ingress.model import (
    CONTROLLER_NAME,
    DEFAULT_CLASS_ANNOTATION,
    EXACT,
    LEGACY_CLASS_ANNOTATION,
    PREFIX,
    REGEX,
    Canary,
    Cert,
    Problem,
    Route,
    Table,
    Upstream,
)

HOST = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
PATH = re.compile(r"^/[A-Za-z0-9/._~%!$&()*+,;=:@-]*$")  # no quotes: paths go into quoted config words
REGEX_PATH = re.compile(r"^/[\x21-\x7e]*$")  # visible ASCII; compiled below
SERVICE_NAME_LABEL = wk.SERVICE_NAME_LABEL


@dataclass(frozen=True)
class Inputs:
    classes: tuple[Obj, ...] = ()
    ingresses: tuple[Obj, ...] = ()
    services: dict[str, Obj] | None = None  # "ns/name" -> Service
    slices: dict[str, list[Obj]] | None = None  # "ns/service" -> EndpointSlices
    secrets: dict[str, Obj] | None = None  # "ns/name" -> Secret
    controller: str = CONTROLLER_NAME
    # memo owned by the caller: endpoints by EndpointSlice versions, options by annotations (a memo
    # only: the answer is the same without it, and every key holds everything the value depends on)
    cache: dict[Any, Any] | None = None


def _key(o: Obj) -> str:
    md = meta_of(o)
    return f"{md.get('namespace', '')}/{md.get('name', '')}"


def served_classes(classes: Iterable[Obj], controller: str = CONTROLLER_NAME) -> tuple[set[str], str]:
    """(our class names, our default class name or "")."""
    ours, default = set(), ""
    for c in classes:
        if (c.get("spec") or {}).get("controller") != controller:
            continue
        name = meta_of(c).get("name", "")
        ours.add(name)
        ann = meta_of(c).get("annotations") or {}
        if str(ann.get(DEFAULT_CLASS_ANNOTATION, "")).lower() == "true" and (not default or name < default):
            default = name
    return ours, default


def class_of(ing: Obj) -> str:
    spec = ing.get("spec") or {}
    return spec.get("ingressClassName") or (meta_of(ing).get("annotations") or {}).get(
        LEGACY_CLASS_ANNOTATION, "")


def is_ours(ing: Obj, ours: set[str], default: str) -> bool:
    cls = class_of(ing)
    return cls in ours if cls else bool(default)


def prefix_match(rule: str, path: str) -> bool:
    """Kubernetes Prefix: element-wise, a trailing '/' in the rule ignored."""
    r = rule.rstrip("/")
    return r == "" or path == r or path.startswith(r + "/")


def host_matches(rule_host: str, host: str) -> bool:
    if not rule_host:
        return True
    if rule_host.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == rule_host[2:]
    return rule_host == host


def _order(r: Route) -> tuple[int, int]:
    length = len(r.path.rstrip("/")) if r.kind == PREFIX else len(r.path)
    return (-length, 0 if r.kind == EXACT else 1)


def _sig(o: Any) -> Any:
    """What a dependency looked like: absent, its resourceVersion, or each slice's; None: unknown."""
    if o is None:
        return "-"
    if isinstance(o, list):
        sigs = tuple((meta_of(x).get("name"), meta_of(x).get("resourceVersion"))
                     for x in o)
        return None if any(v is None for _, v in sigs) else sigs
    return meta_of(o).get("resourceVersion")


@dataclass
class _Fragment:
    """What one Ingress contributes, before conflicts with other Ingresses are resolved: a memo by
    the Ingress's resourceVersion, valid while the objects it read (``deps``) keep their versions."""

    items: list[tuple[str, Any, list[Problem]]]  # ("default", upstream, its problems) | ("route", key, ...)
    problems: list[Problem]  # the problems no item owns
    routes: dict[tuple[str, str, str], Route]
    upstreams: dict[str, Upstream]
    certs: dict[str, tuple[bytes, set[str], bool]]
    canary: annot.Options | None
    deps: tuple[tuple[str, str, Any, Any], ...]  # (kind, key, signature, the object(s) read)
    memo: bool


class _Compiler:
    def __init__(self, inp: Inputs) -> None:
        self.inp = inp
        self.services = inp.services or {}
        self.slices = inp.slices or {}
        self.secrets = inp.secrets or {}
        self.cache = inp.cache if inp.cache is not None else {}
        self.problems: list[Problem] = []
        self.upstreams: dict[str, Upstream] = {}
        self.routes: dict[tuple[str, str, str], Route] = {}
        self.route_owner: dict[tuple[str, str, str], str] = {}
        self.certs: dict[str, tuple[bytes, set[str], bool]] = {}
        self.default_upstream = ""
        self.default_owner = ""
        self.items: list[tuple[str, Any, int, int]] = []
        self.deps: dict[tuple[str, str], tuple[Any, Any]] | None = None  # recording: what a fragment read

    def _get(self, kind: str, key: str) -> Any:
        o = {"service": self.services, "slices": self.slices, "secret": self.secrets}[kind].get(key)
        if self.deps is not None and (kind, key) not in self.deps:
            self.deps[(kind, key)] = (_sig(o), tuple(o) if isinstance(o, list) else o)
        return o

    def _unchanged(self, kind: str, key: str, sig: Any, ref: Any) -> bool:
        """Whether a dependency still reads the same: the very same objects (informer caches replace
        an object on every change), or failing that the same versions."""
        o = self._get(kind, key)
        if isinstance(o, list) and isinstance(ref, tuple):
            if len(o) == len(ref) and all(a is b for a, b in zip(o, ref, strict=True)):
                return True
        elif o is ref:
            return True
        return _sig(o) == sig

    def problem(self, ing: Obj, reason: str, message: str) -> None:
        md = meta_of(ing)
        self.problems.append(Problem("Ingress", md.get("namespace", ""), md.get("name", ""), reason, message))

    # -- backends -------------------------------------------------------------------------------------
    def upstream(self, ing: Obj, backend: Obj, opts: annot.Options) -> str:
        ns = meta_of(ing).get("namespace", "")
        if backend.get("resource"):
            res = backend["resource"]
            return self._unresolved(ns, f"resource:{res.get('kind')}/{res.get('name')}", opts,
                                    "resource backends have no data-plane meaning here (503)")
        svc_ref = backend.get("service") or {}
        name = svc_ref.get("name", "")
        port = svc_ref.get("port") or {}
        port_label = str(port.get("number") or port.get("name") or "")
        svc = self._get("service", f"{ns}/{name}")
        if svc is None:
            self.problem(ing, "ServiceNotFound", f"service {ns}/{name} not found")
            return self._unresolved(ns, f"{name}:{port_label}", opts, "service not found")
        sport = None
        for p in (svc.get("spec") or {}).get("ports") or []:
            if ("number" in port and p.get("port") == port.get("number")) or (
                    "name" in port and p.get("name") == port.get("name")):
                sport = p
        if sport is None:
            self.problem(ing, "PortNotFound", f"service {ns}/{name} has no port {port_label}")
            return self._unresolved(ns, f"{name}:{port_label}", opts, "port not found")
        protocol = opts.protocol or _app_protocol(sport.get("appProtocol") or "")
        eps = self.endpoints(ns, name, sport)
        ident = f"{ns}/{name}:{port_label}"
        extra = (protocol, opts.affinity_cookie, opts.timeout_server, opts.timeout_connect)
        bname = _backend_name(ident, extra)
        self.upstreams[bname] = Upstream(bname, ident, protocol, eps, opts.affinity_cookie, opts.timeout_server,
                                         opts.timeout_connect)
        return bname

    def _unresolved(self, ns: str, what: str, opts: annot.Options, why: str) -> str:
        bname = _backend_name(f"{ns}/{what}", ("unresolved",))
        self.upstreams[bname] = Upstream(bname, f"{ns}/{what}", error=why)
        return bname

    def endpoints(self, ns: str, svc: str, sport: Obj) -> tuple[tuple[str, int], ...]:
        slices = self._get("slices", f"{ns}/{svc}") or ()
        n_ports = len((self._get("service", f"{ns}/{svc}") or {}).get("spec", {}).get("ports") or [])
        versions = tuple(meta_of(sl).get("resourceVersion") for sl in slices)
        if not versions or None in versions:
            return self._endpoints(ns, svc, sport, slices, n_ports)
        key = ("ep", ns, svc, sport.get("name") or "", n_ports,
               tuple(meta_of(sl).get("name") for sl in slices), versions)
        out = self.cache.get(key)
        if out is None:
            if len(self.cache) > 100_000:
                self.cache.clear()
            out = self.cache[key] = self._endpoints(ns, svc, sport, slices, n_ports)
        return out  # type: ignore[no-any-return]

    def _endpoints(self, ns: str, svc: str, sport: Obj, slices: Any, n_ports: int
                   ) -> tuple[tuple[str, int], ...]:
        want = sport.get("name") or ""
        ready: list[tuple[str, int]] = []
        serving: list[tuple[str, int]] = []
        for sl in slices:
            if sl.get("addressType", "IPv4") not in ("IPv4", "IPv6"):
                continue
            ports = sl.get("ports") or []
            match = [p for p in ports if (p.get("name") or "") == want and (p.get("protocol") or "TCP") == "TCP"]
            if not match and len(ports) == 1 and n_ports == 1:
                match = ports
            if not match or match[0].get("port") is None:
                continue
            port = int(match[0]["port"])
            for ep in sl.get("endpoints") or []:
                v = EndpointView.parse(ep)  # upstream's defaults: ready when unset, serving = ready
                for addr in v.addresses[:1]:
                    if v.ready and not v.terminating:
                        ready.append((addr, port))
                    elif v.serving:
                        serving.append((addr, port))
        return tuple(sorted(set(ready or serving)))

    # -- TLS ------------------------------------------------------------------------------------------
    def tls(self, ing: Obj) -> tuple[set[str], bool]:
        """Hosts of the Ingress covered by TLS; and whether a TLS entry lists no hosts (covers all)."""
        ns = meta_of(ing).get("namespace", "")
        hosts: set[str] = set()
        all_hosts = False
        for t in (ing.get("spec") or {}).get("tls") or []:
            th = [h.lower() for h in t.get("hosts") or []]
            bad = [h for h in th if not HOST.match(h)]
            if bad:
                self.problem(ing, "InvalidHost", f"tls host {bad[0]!r} is not a DNS name")
                th = [h for h in th if h not in bad]
            hosts.update(th)
            all_hosts = all_hosts or not th
            sname = t.get("secretName")
            if not sname:
                continue
            sec = self._get("secret", f"{ns}/{sname}")
            if sec is None:
                self.problem(ing, "SecretNotFound", f"TLS secret {ns}/{sname} not found: the default "
                             "certificate is served for its hosts")
                continue
            try:
                pem = secret_pem(sec)
            except CertError as exc:
                self.problem(ing, "InvalidCertificate", f"TLS secret {ns}/{sname}: {exc}")
                continue
            fname = f"{ns}_{sname}.pem"
            cur = self.certs.get(fname)
            sni = set(th) | (cur[1] if cur else set())
            self.certs[fname] = (pem, sni, (not th) or (cur[2] if cur else False))
        return hosts, all_hosts

    # -- rules ----------------------------------------------------------------------------------------
    def ingress(self, ing: Obj, canaries: list[tuple[Obj, annot.Options]]) -> None:
        ann = meta_of(ing).get("annotations")
        key = ("ann", tuple(sorted(ann.items()))) if ann and all(type(v) is str for v in ann.values()) else None
        opts = self.cache.get(key) if key else None
        if opts is None:
            opts = annot.parse(ann)
            if key:
                self.cache[key] = opts
        for err in opts.errors:
            self.problem(ing, "InvalidAnnotation", err)
        if opts.canary:
            canaries.append((ing, opts))
            return
        tls_hosts, tls_all = self.tls(ing)
        spec = ing.get("spec") or {}
        src = _key(ing)
        if spec.get("defaultBackend"):
            if not self.default_upstream:
                p0 = len(self.problems)
                self.default_upstream = self.upstream(ing, spec["defaultBackend"], opts)
                self.default_owner = src
                self.items.append(("default", self.default_upstream, p0, len(self.problems)))
            else:
                self.problem(ing, "DefaultBackendConflict",
                             f"defaultBackend ignored: {self.default_owner} (older) already sets one")
        regex_hosts = opts.use_regex or bool(opts.rewrite)
        for rule in spec.get("rules") or []:
            host = (rule.get("host") or "").lower()
            if host and not HOST.match(host):
                self.problem(ing, "InvalidHost", f"host {host!r} is not a DNS name (or *.one-label wildcard)")
                continue
            for hp in (rule.get("http") or {}).get("paths") or []:
                self.path(ing, opts, src, host, hp, regex_hosts,
                          tls_all or any(host_matches(h, host) if h.startswith("*.") else h == host
                                         for h in tls_hosts) if host else tls_all)

    def path(self, ing: Obj, opts: annot.Options, src: str, host: str, hp: Obj, regex: bool, tls: bool) -> None:
        path = hp.get("path") or "/"
        ptype = hp.get("pathType") or "ImplementationSpecific"
        if ptype not in ("Exact", "Prefix", "ImplementationSpecific"):
            self.problem(ing, "InvalidPath", f"pathType {ptype!r} is not Exact, Prefix or ImplementationSpecific")
            return
        kind = EXACT if ptype == "Exact" else PREFIX
        if regex and ptype == "ImplementationSpecific":
            kind = REGEX
            if not REGEX_PATH.match(path) or '"' in path or "'" in path:
                self.problem(ing, "InvalidPath", f"regex path {path!r} has characters that are not allowed")
                return
            try:
                re.compile(path)
            except re.error as exc:
                self.problem(ing, "InvalidRegex", f"path {path!r} does not compile: {exc}")
                return
        elif not PATH.match(path):
            self.problem(ing, "InvalidPath", f"path {path!r} must start with / and hold only URL characters")
            return
        key = (host, kind, path.rstrip("/") or "/" if kind == PREFIX else path)
        if key in self.routes:
            self.problem(ing, "PathConflict", f"{host or '*'}{path} ({ptype}) is already served by "
                         f"{self.route_owner[key]} (older); this rule is ignored")
            return
        backend = hp.get("backend") or {}
        p0 = len(self.problems)
        up = self.upstream(ing, backend, opts)
        self.routes[key] = Route(host, path, kind, up, src, tls, opts.ssl_redirect, opts.force_ssl_redirect,
                                 opts.body_limit, opts.rewrite, opts.allow, (), kind == REGEX)
        self.route_owner[key] = src
        self.items.append(("route", key, p0, len(self.problems)))

    # -- one Ingress at a time, memoized ----------------------------------------------------------------
    def add_ingress(self, ing: Obj, canaries: list[tuple[Obj, annot.Options]]) -> None:
        """``ingress(ing)`` through the memo: its fragment, computed or reused, merged in age order."""
        name, rv = _key(ing), meta_of(ing).get("resourceVersion")
        hit = self.cache.get(("frag", name)) if rv else None
        frag = hit[1] if hit is not None and hit[0] == rv else None
        if frag is not None and not all(self._unchanged(*d) for d in frag.deps):
            frag = None
        if frag is None:
            frag = self._fragment(ing)
            if rv and frag.memo:
                self.cache[("frag", name)] = (rv, frag)
        self._merge(ing, frag, canaries)

    def _fragment(self, ing: Obj) -> _Fragment:
        sub = _Compiler(self.inp)
        sub.cache = self.cache
        sub.deps = {}
        cans: list[tuple[Obj, annot.Options]] = []
        sub.ingress(ing, cans)
        deps = tuple((kind, key, sig, ref) for (kind, key), (sig, ref) in sub.deps.items())
        owned = {i for it in sub.items for i in range(it[2], it[3])}
        items = [(what, ref, sub.problems[p0:p1]) for what, ref, p0, p1 in sub.items]
        alone = [p for i, p in enumerate(sub.problems) if i not in owned]
        return _Fragment(items, alone, sub.routes, sub.upstreams, sub.certs,
                         cans[0][1] if cans else None, deps, all(d[2] is not None for d in deps))

    def _merge(self, ing: Obj, frag: _Fragment, canaries: list[tuple[Obj, annot.Options]]) -> None:
        if frag.problems:
            self.problems += frag.problems
        if frag.canary is not None:
            canaries.append((ing, frag.canary))
            return
        src = _key(ing)
        for what, ref, probs in frag.items:
            if what == "default":
                if self.default_upstream:
                    self.problem(ing, "DefaultBackendConflict",
                                 f"defaultBackend ignored: {self.default_owner} (older) already sets one")
                    continue
                self.default_upstream, self.default_owner, up = ref, src, ref
            else:
                r = frag.routes[ref]
                if ref in self.routes:
                    self.problem(ing, "PathConflict", f"{r.host or '*'}{r.path} ({_ptype(r)}) is already served "
                                 f"by {self.route_owner[ref]} (older); this rule is ignored")
                    continue
                self.routes[ref], self.route_owner[ref], up = r, src, r.upstream
            if up in frag.upstreams:
                self.upstreams[up] = frag.upstreams[up]
            if probs:
                self.problems += probs
        for fname, (pem, sni, any_host) in frag.certs.items():
            cur = self.certs.get(fname)
            self.certs[fname] = (pem, sni | (cur[1] if cur else set()), any_host or (cur[2] if cur else False))

    def canary(self, ing: Obj, opts: annot.Options) -> None:
        src = _key(ing)
        for rule in (ing.get("spec") or {}).get("rules") or []:
            host = (rule.get("host") or "").lower()
            for hp in (rule.get("http") or {}).get("paths") or []:
                path = hp.get("path") or "/"
                main = [k for k in self.routes if k[0] == host and self.routes[k].path == path]
                if not main:
                    self.problem(ing, "CanaryWithoutMain", f"canary {host or '*'}{path}: no main Ingress "
                                 "serves this host and path")
                    continue
                k = main[0]
                r = self.routes[k]
                if r.canaries:
                    self.problem(ing, "CanaryConflict", f"{host or '*'}{path} already has a canary")
                    continue
                up = self.upstream(ing, hp.get("backend") or {}, opts)
                c = Canary(up, opts.canary_weight, opts.canary_weight_total, opts.canary_header,
                           opts.canary_header_value, opts.canary_cookie, src)
                self.routes[k] = Route(**{**r.__dict__, "canaries": (c,)})


def _ptype(r: Route) -> str:
    """The pathType a route came from (a regex path is an ImplementationSpecific one)."""
    return "ImplementationSpecific" if r.kind == REGEX else r.kind


def refresh_endpoints(table: Table, services: Any, slices: Any, changed: set[str]) -> Table:
    """``table`` with the endpoints of the backends of the Services in ``changed`` ("ns/name")
    recomputed from ``slices`` — the fast path when only EndpointSlices changed."""
    c = _Compiler(Inputs(services=services, slices=slices))
    ups = []
    for u in table.upstreams:
        ns_name, _, port = u.service.rpartition(":")
        if u.error or ns_name not in changed:
            ups.append(u)
            continue
        ns, _, name = ns_name.partition("/")
        svc = services.get(ns_name)
        sport = next((p for p in ((svc or {}).get("spec") or {}).get("ports") or []
                      if str(p.get("port")) == port or p.get("name") == port), None)
        eps = c.endpoints(ns, name, sport) if sport is not None else ()
        ups.append(replace(u, endpoints=eps))
    return replace(table, upstreams=tuple(ups))


def _app_protocol(ap: str) -> str:
    ap = ap.lower()
    if ap in ("kubernetes.io/h2c", "h2c"):
        return "h2c"
    if ap in ("https", "kubernetes.io/tls", "tls", "kubernetes.io/wss"):
        return "https"
    if ap == "grpc":
        return "grpc"
    return "http"


@functools.lru_cache(maxsize=65536)
def _backend_name(ident: str, extra: tuple[Any, ...]) -> str:
    base = re.sub(r"[^A-Za-z0-9]+", "_", ident)[:60]
    h = hashlib.sha256(repr((ident, extra)).encode()).hexdigest()[:6]
    return f"be_{base}_{h}"


def _age(o: Obj) -> tuple[str, str]:
    md = meta_of(o)
    return (md.get("creationTimestamp") or "9999", _key(o))


def compile_table(inp: Inputs) -> Table:
    ours, default = served_classes(inp.classes, inp.controller)
    served = sorted((i for i in inp.ingresses if is_ours(i, ours, default) and not meta_of(i).get(
        "deletionTimestamp")), key=_age)
    c = _Compiler(inp)
    canaries: list[tuple[Obj, annot.Options]] = []
    for ing in served:
        c.add_ingress(ing, canaries)
    for ing, opts in canaries:
        c.canary(ing, opts)
    by_host: dict[str, list[Route]] = {}
    for k, r in c.routes.items():
        by_host.setdefault(k[0], []).append(r)
    routes: list[Route] = []
    for h in sorted(by_host, key=lambda h: (h == "", h.startswith("*."), h)):
        routes.extend(sorted(by_host[h], key=_order))
    certs = tuple(Cert(name, pem, () if any_host else tuple(sorted(sni)))
                  for name, (pem, sni, any_host) in sorted(c.certs.items()))
    return Table(tuple(routes), tuple(sorted(c.upstreams.values(), key=lambda u: u.name)), certs,
                 c.default_upstream, tuple(_key(i) for i in served), problems=tuple(c.problems))
