"""The routing table: frozen values the core produces and the renderer consumes."""

from __future__ import annotations

from dataclasses import dataclass, field

CONTROLLER_NAME = "servicenet.io/ingress-controller"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"

EXACT, PREFIX, REGEX = "Exact", "Prefix", "Regex"


@dataclass(frozen=True)
class Upstream:
    """One HAProxy backend: the endpoints of one Service port with its connection options."""

    name: str
    service: str  # "ns/name:port"
    protocol: str = "http"  # http | https | h2c | grpc | grpcs
    endpoints: tuple[tuple[str, int], ...] = ()
    affinity_cookie: str = ""
    timeout_server: int = 300
    timeout_connect: int = 5
    error: str = ""  # why the backend does not resolve (answers 503)


@dataclass(frozen=True)
class Canary:
    upstream: str
    weight: int = 0  # out of weight_total
    weight_total: int = 100
    header: str = ""
    header_value: str = ""  # "" with a header: the values "always"/"never"
    cookie: str = ""
    source: str = ""


@dataclass(frozen=True)
class Route:
    """One (host, path) rule. The table lists routes in match order within each host group."""

    host: str  # "" matches any host; "*.a.b" one label
    path: str
    kind: str  # Exact | Prefix | Regex
    upstream: str  # backend name; "" for the default backend
    source: str  # "ns/name" of the Ingress
    tls: bool = False
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    body_limit: int | None = 1024 * 1024
    rewrite: str = ""  # rewrite-target (with use-regex: $n capture groups)
    allow: tuple[str, ...] = ()  # whitelist-source-range CIDRs
    canaries: tuple[Canary, ...] = ()
    case_insensitive: bool = False
    # Gateway API matches and weighted backends (empty for Ingress routes)
    method: str = ""
    headers: tuple[tuple[str, str, str], ...] = ()  # (lower-case name, Exact|RegularExpression, value)
    query: tuple[tuple[str, str, str], ...] = ()  # (name, Exact|RegularExpression, value)
    backends: tuple[tuple[str, int], ...] = ()  # (upstream or "" for a 500, weight)
    # Gateway API filters
    req_headers: tuple[tuple[str, str, str], ...] = ()  # (set|add|remove, name, value)
    resp_headers: tuple[tuple[str, str, str], ...] = ()
    redirect: tuple[str, str, int, str, int] | None = None  # (scheme, hostname, port, full path, status)
    rewrite_host: str = ""
    rewrite_path: tuple[str, str] | None = None  # (ReplaceFullPath|ReplacePrefixMatch, value)
    redirect_prefix: str = ""  # RequestRedirect ReplacePrefixMatch value
    mirror: tuple[tuple[str, int, int], ...] = ()  # RequestMirror targets (address, port, percent)
    timeout_ms: int = 0  # Gateway API rule timeouts (backendRequest, else request); 0: the default


@dataclass(frozen=True)
class Cert:
    name: str  # file name, "<ns>_<secret>.pem"
    pem: bytes  # certificate chain + key
    hosts: tuple[str, ...] = ()  # SNI filters ("" none: the certificate's own names)


@dataclass(frozen=True)
class Problem:
    """Configuration rejected or degraded: becomes an Event on the object."""

    kind: str  # Ingress | IngressClass
    namespace: str
    name: str
    reason: str
    message: str
    type: str = "Warning"


@dataclass(frozen=True)
class Table:
    routes: tuple[Route, ...] = ()
    upstreams: tuple[Upstream, ...] = ()
    certs: tuple[Cert, ...] = ()
    default_upstream: str = ""  # "" : 404
    ingresses: tuple[str, ...] = ()  # "ns/name" of every Ingress this controller serves
    wildcard_labels: int = 1  # how many labels a "*." host may cover (Ingress 1; Gateway API any)
    problems: tuple[Problem, ...] = field(default=(), compare=False)

    def upstream(self, name: str) -> Upstream | None:
        for u in self.upstreams:
            if u.name == name:
                return u
        return None
