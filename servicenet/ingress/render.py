"""Turn a routing table into HAProxy configuration text (pure).

Server lines come from a *slot plan*: every backend has a fixed number of server slots, each holding
an endpoint or empty (``disabled``). Endpoints then move in and out of slots through HAProxy's runtime
API without a reload; only a change of structure (routes, backends, slot counts, certificate set)
needs a new configuration. ``structure_key`` is what tells the two apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from servicenet.ingress import maps
from servicenet.ingress.maps import NO_HOST, NOT_FOUND, UNRESOLVED, route_ids
from servicenet.ingress.model import EXACT, PREFIX, REGEX, Route, Table, Upstream

Slots = dict[str, tuple[tuple[str, int] | None, ...]]  # backend -> slot contents

# The JSON access-log line (documented in docs/ingress.md). The metric fields lead in a fixed order
# (accesslog reads them with one regular expression per batch; none of them can hold a comma or a quote).
# Every field costs HAProxy CPU on every request (callgrind: ~0.3-2k instructions each, the client
# address most), so the line holds what an operator reads, about as many fields as nginx's combined
# format: TLS shows as the "~" of the frontend name (%ft) rather than a sample fetch.
LOG_FORMAT = (
    '{"route":"%[var(txn.r)]","backend":"%b","status":%ST,"t_total_ms":%Ta,"bytes_out":%B,'
    '"time":"%tr","client":"%ci","frontend":"%ft","server":"%s","method":"%HM",'
    '"host":"%[var(txn.host)]","path":"%HPO","t_response_ms":%Tr,"termination":"%ts"}'
)


@dataclass(frozen=True)
class Listen:
    addresses: tuple[str, ...] = ("127.0.0.1",)
    http_port: int = 8080
    https_port: int = 8443


@dataclass(frozen=True)
class Files:
    """Where the shell keeps the data plane's files (paths written into the configuration)."""

    dir: str
    log_socket: str = ""  # non-empty: log each request (to stdout, see haproxy.HAProxy.log_pipe)
    gen: str = ""  # suffix of the map and crt-list files (content-addressed by the shell)
    extra_global: tuple[str, ...] = field(default=())

    def map(self, name: str) -> str:
        """The file of one of :data:`maps.NAMES`."""
        return f"{self.dir}/{name}{self.gen}.map"

    @property
    def hosts_map(self) -> str:
        return self.map("hosts")

    @property
    def routes_map(self) -> str:
        return self.map("routes")

    def map_paths(self) -> dict[str, str]:
        return {n: self.map(n) for n in maps.NAMES}

    @property
    def crt_list(self) -> str:
        return f"{self.dir}/crt-list{self.gen}.txt"

    @property
    def admin_socket(self) -> str:
        return f"{self.dir}/admin.sock"

    def cert(self, name: str) -> str:
        return f"{self.dir}/certs/{name}"


def slot_count(n: int) -> int:
    """Slots for n endpoints: room to grow before a reload is needed (2, 4, 8, ...)."""
    return max(2, 1 << n.bit_length())


def plan_slots(table: Table, prev: Slots | None = None) -> Slots:
    """Assign every backend's endpoints to slots, keeping endpoints in the slots they had.

    A backend that is new, or has more endpoints than slots, gets a fresh layout (a structural
    change the renderer's ``with_servers=False`` output shows)."""
    prev = prev or {}
    out: Slots = {}
    for u in table.upstreams:
        if u.error:
            continue
        old = prev.get(u.name)
        want = set(u.endpoints)
        if old is None or len(want) > len(old):
            out[u.name] = tuple(sorted(want)) + (None,) * (slot_count(len(want)) - len(want))
            continue
        cur: list[tuple[str, int] | None] = [s if s in want else None for s in old]
        for ep in sorted(want - {s for s in cur if s}):
            cur[cur.index(None)] = ep
        out[u.name] = tuple(cur)
    return out


def runtime_ops(old: Slots, new: Slots) -> list[str]:
    """Runtime API commands that turn the running slot contents ``old`` into ``new``."""
    ops: list[str] = []
    for be, slots in new.items():
        before = old.get(be, ())
        for i, ep in enumerate(slots):
            prev = before[i] if i < len(before) else None
            if ep == prev:
                continue
            srv = f"{be}/s{i + 1}"
            if ep is None:
                ops.append(f"set server {srv} state maint")
            else:
                if prev is not None:
                    ops.append(f"set server {srv} state maint")
                ops.append(f"set server {srv} addr {ep[0]} port {ep[1]}")
                ops.append(f"set server {srv} state ready")
    return ops


def _q(s: str) -> str:
    """A double-quoted HAProxy word (the core already refused quotes, CR/LF and controls)."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _sq(s: str) -> str:
    """A single-quoted HAProxy word: no variable expansion, no escapes (the core refused quotes)."""
    assert "'" not in s
    return "'" + s + "'"


def _path_conds(r: Route) -> list[str]:
    if r.kind == EXACT:
        return [f"{{ path -m str {_sq(r.path)} }}"]
    if r.kind == PREFIX:
        p = r.path.rstrip("/")
        if not p:
            return [""]
        return [f"{{ path -m str {_sq(p)} }}", f"{{ path -m beg {_sq(p + '/')} }}"]
    flags = "-i " if r.case_insensitive else ""
    return [f"{{ path -m reg {flags}{_sq('^' + r.path)} }}"]


def _filter_rules(table: Table, listen: Listen, ids: tuple[str, ...]) -> list[str]:
    """Gateway API filters: header modifiers, redirects and URL rewrites, keyed on the route id."""
    out: list[str] = []
    for i, r in enumerate(table.routes):
        rid = f"{{ var(txn.r) -m str {ids[i]} }}"
        if r.redirect is not None:
            scheme, host, port, full, status = r.redirect
            sch = scheme or "%[ssl_fc,iif(https,http)]"
            hst = host or "%[var(txn.host)]"
            if port:
                prt = "" if (scheme, port) in (("http", 80), ("https", 443)) else f":{port}"
            elif scheme:
                prt = ""  # a scheme change without a port: the scheme's well-known port
            else:
                prt = _port_of(listen)
            path = full if full else "%[url]"
            out.append(f"    http-request redirect location {_sq(sch + '://' + hst + prt + path)} code {status} if {rid}")
        for op, name, val in r.req_headers:
            verb = {"set": "set-header", "add": "add-header", "remove": "del-header"}[op]
            out.append(f"    http-request {verb} {name}{' ' + _sq(val) if op != 'remove' else ''} if {rid}")
        if r.rewrite_host:
            out.append(f"    http-request set-header Host {_sq(r.rewrite_host)} if {rid}")
        if r.rewrite_path is not None:
            kind, val = r.rewrite_path
            if kind == "ReplaceFullPath":
                out.append(f"    http-request set-path {_sq(val)} if {rid}")
            else:
                prefix = re.escape(r.path.rstrip("/"))
                base = val.rstrip("/")
                out.append(f"    http-request replace-path {_sq('^' + prefix + '/?(.*)$')} {_sq(base + '/' + chr(92) + '1')} "
                           f"if {rid}")
    for i, r in enumerate(table.routes):
        for op, name, val in r.resp_headers:
            verb = {"set": "set-header", "add": "add-header", "remove": "del-header"}[op]
            out.append(f"    http-response {verb} {name}{' ' + _sq(val) if op != 'remove' else ''} "
                       f"if {{ var(txn.rr) -m str {ids[i]} }}")
    return out


def _port_of(listen: Listen) -> str:
    """The port part of a redirect that keeps scheme and port: the listener's, unless the default."""
    return "%[ssl_fc,iif(" + ("" if listen.https_port == 443 else f":{listen.https_port}") + "," + (
        "" if listen.http_port == 80 else f":{listen.http_port}") + ")]"


def _match_conds(r: Route) -> str:
    """Gateway API method, header and query matches as extra ACL terms (" {...}" each)."""
    out = ""
    if r.method:
        out += f" {{ method {r.method} }}"
    for name, typ, val in r.headers:
        out += f" {{ req.hdr({name}) -m {'str' if typ == 'Exact' else 'reg'} {_sq(val)} }}"
    for name, typ, val in r.query:
        out += f" {{ url_param({name}) -m {'str' if typ == 'Exact' else 'reg'} {_sq(val)} }}"
    return out


def wildcard_depth(table: Table) -> int:
    """The most labels a wildcard of this table must cover (bounded by the longest request host)."""
    return 1 if table.wildcard_labels <= 1 else 8


def _rewrite_regex(r: Route) -> tuple[str, str]:
    pat = r.path if r.kind == REGEX else re.escape(r.path)
    repl = re.sub(r"\$(\d)", r"\\\1", r.rewrite)
    return ("(?i)" if r.case_insensitive else "") + f"^(?:{pat}).*$", repl


def render(table: Table, slots: Slots, listen: Listen, files: Files, *, with_servers: bool = True) -> str:
    """The whole configuration. ``with_servers=False`` gives the structure only (no addresses)."""
    d = files.dir
    in_maps = maps.map_groups(table)
    ids = route_ids(table, in_maps)
    out: list[str] = [
        "global",
        f"    stats socket {files.admin_socket} mode 600 level admin expose-fd listeners",
        "    stats timeout 2m",
        "    hard-stop-after 1h",
        "    ssl-default-bind-options ssl-min-ver TLSv1.2",
        "    tune.ssl.default-dh-param 2048",
        "    tune.bufsize 32768",
        # no server-side TLS session cache (as nginx's default "ssl_session_cache none"): resumption
        # still works with session tickets, and storing every TLS 1.3 session under the cache's
        # lock cost ~95k instructions (3.5%) per new connection (callgrind)
        "    tune.ssl.cachesize 0",
    ]
    if files.log_socket:  # one write per request to stdout, a pipe the controller reads in batches
        out.append("    log stdout len 4096 format raw local0 info")
    out += [f"    {x}" for x in files.extra_global]
    out += [
        "", "defaults",
        "    mode http",
        "    log global",
        "    option dontlognull",
        f"    log-format {_q(LOG_FORMAT)}",
        "    option http-keep-alive",
        "    option idle-close-on-response",  # on reload, close idle client connections only after a response
        "    option forwardfor",
        # like nginx's keepalive upstreams: any request may take any idle backend connection (with
        # "aggressive" a client's first request only takes one already reused, which traffic of
        # one request per client connection never produces: every such request connected anew)
        "    http-reuse always",
        # (no L7 "retry-on empty-response" for a reused connection the server closed meanwhile: it
        # copies every request's whole buffer, ~10% of HAProxy's CPU per small HTTPS request)
        "    option redispatch",  # a failed connection is retried on another server
        "    retries 2",
        "    timeout connect 5s",
        "    timeout client 300s",
        "    timeout server 300s",
        "    timeout http-request 60s",
        "    timeout http-keep-alive 75s",
        "    timeout tunnel 1h",
        "    timeout client-fin 10s",
        f"    {DEFAULT_SERVER}",
        "",
        "frontend fe_ingress",
    ]
    for a in listen.addresses:
        host = f"[{a}]" if ":" in a else a
        out.append(f"    bind {host}:{listen.http_port}")
        out.append(f"    bind {host}:{listen.https_port} ssl crt {d}/certs/default.pem crt-list {files.crt_list}"
                   " alpn h2,http/1.1")
    out += [
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower",
        f"    http-request set-var(txn.hg) var(txn.host),map_str({files.hosts_map})",
        *(f"    http-request set-var(txn.hg) var(txn.host),regsub(^{'[^.]+[.]' * k},*.),map_str({files.hosts_map}) "
          "if !{ var(txn.hg) -m found }" for k in range(1, min(table.wildcard_labels, wildcard_depth(table)) + 1)),
        f"    http-request set-var(txn.hg) str({NO_HOST}) if !{{ var(txn.hg) -m found }}",
        # routes of map groups (maps.py): the exact entry, else the longest prefix entry
        # one key for both maps (an Exact path's key carries the same trailing "/": maps.key_path)
        '    http-request set-var-fmt(txn.k) "%[var(txn.hg)]%[path]/"',
        f"    http-request set-var(txn.r) var(txn.k),map_str({files.map('exact')})",
        f"    http-request set-var(txn.r) var(txn.k),map_beg({files.map('prefix')}) if !{{ var(txn.r) -m found }}",
    ]
    for i, r in enumerate(table.routes):  # the other groups: one rule per route, in table order
        if r.host in in_maps:
            continue
        extra = _match_conds(r)
        alts = [f"!{{ var(txn.r) -m found }} {{ var(txn.hg) -m str {r.host or NO_HOST} }} {c}{extra}".rstrip()
                for c in _path_conds(r)]
        out.append(f"    http-request set-var(txn.r) str({ids[i]}) if {' || '.join(alts)}")
    https_port = "" if listen.https_port == 443 else f":{listen.https_port}"
    out += [
        # cheapest test first: HTTPS requests never look the redirect map up, bodiless ones the limits
        f"    http-request redirect location https://%[var(txn.host)]{https_port}%[url] code 308 "
        f"if !{{ ssl_fc }} {{ var(txn.r),map_str({files.map('redirect')}) -m found }}",
        f"    http-request set-var(txn.bl) var(txn.r),map_str_int({files.map('body')}) "
        "if { req.hdr(content-length) -m found }",
        "    http-request deny deny_status 413 if { var(txn.bl) -m found } "
        "{ req.hdr_val(content-length),sub(txn.bl) -m int gt 0 }",
    ]
    for i, r in enumerate(table.routes):
        if r.host in in_maps:
            continue
        rid = f"{{ var(txn.r) -m str {ids[i]} }}"
        if r.allow:
            out.append(f"    http-request deny deny_status 403 if {rid} !{{ src {' '.join(r.allow)} }}")
        if r.force_ssl_redirect or (r.tls and r.ssl_redirect):
            out.append(f"    http-request redirect location https://%[var(txn.host)]{https_port}%[url] code 308 "
                       f"if {rid} !{{ ssl_fc }}")
        if r.body_limit is not None:
            out.append(f"    http-request deny deny_status 413 if {rid} {{ req.hdr_val(content-length) gt "
                       f"{r.body_limit} }}")
        if r.rewrite:
            pat, repl = _rewrite_regex(r)
            out.append(f"    http-request replace-path {_sq(pat)} {_sq(repl)} if {rid}")
    out.append("    http-request deny deny_status 413 if !{ var(txn.r) -m found } "
               "{ req.hdr_val(content-length) gt 1048576 }")
    out += _filter_rules(table, listen, ids)
    if any(r.resp_headers for r in table.routes):  # response filters read the route the request took
        out.append("    http-request set-var(txn.rr) var(txn.r) if { var(txn.r) -m found }")
    for i, r in enumerate(table.routes):
        rid = f"{{ var(txn.r) -m str {ids[i]} }}"
        for c in r.canaries:
            to = f"    http-request set-var(txn.r) str({ids[i]}c) if {rid}"
            if c.header:
                if c.header_value:
                    out.append(f"{to} {{ req.hdr({c.header}) -m str {_sq(c.header_value)} }}")
                else:
                    out.append(f"    http-request set-var(txn.nc) bool(1) if {rid} {{ req.hdr({c.header}) -m str never }}")
                    out.append(f"{to} {{ req.hdr({c.header}) -m str always }}")
            if c.cookie:
                out.append(f"    http-request set-var(txn.nc) bool(1) if {rid} {{ req.cook({c.cookie}) -m str never }}")
                out.append(f"{to} {{ req.cook({c.cookie}) -m str always }}")
            if c.weight > 0:
                out.append(f"{to} !{{ var(txn.nc) -m found }} {{ rand({c.weight_total}) -m int lt {c.weight} }}")
        total = sum(w for _, w in r.backends if w > 0)
        if r.backends and total:
            out.append(f"    http-request set-var(txn.w) rand({total}) if {rid}")
            lo = 0
            for k, (_, w) in enumerate(r.backends):
                if w <= 0:
                    continue
                out.append(f"    http-request set-var(txn.r) str({ids[i]}w{k}) if {rid} {{ var(txn.w) -m int ge {lo} }} "
                           f"{{ var(txn.w) -m int lt {lo + w} }}")
                lo += w
    out += [
        # the walkthrough's headers and ingress-nginx's: each set-header costs ~1-2k instructions
        # per request (callgrind), a constant value the least
        "    http-request set-header X-Real-IP %[src]",
        "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
        "    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
        # as ingress-nginx sets them (applications build their absolute URLs from these)
        "    http-request set-header X-Forwarded-Host %[req.hdr(host)]",
        # the listener's port as a constant: %[dst_port] asks the kernel (getsockname, and a
        # getsockopt for SO_ORIGINAL_DST) once per client connection
        f"    http-request set-header X-Forwarded-Port {listen.https_port} if {{ ssl_fc }}",
        f"    http-request set-header X-Forwarded-Port {listen.http_port} if !{{ ssl_fc }}",
        # Connection is hop-by-hop: a client's "close" must not close the kept-alive backend
        # connection (HAProxy would forward it and then close); an upgrade passes (websockets)
        "    http-request del-header Connection if !{ req.hdr(upgrade) -m found }",
        f"    use_backend %[var(txn.r),map_str({files.routes_map})] if {{ var(txn.r) -m found }}",
        f"    default_backend {table.default_upstream or NOT_FOUND}",
        "",
        f"backend {NOT_FOUND}",
        "    http-request return status 404 content-type text/plain string \"404 page not found\"",
        "",
        f"backend {UNRESOLVED}",
        "    http-request return status 500 content-type text/plain string \"500 backend does not resolve\"",
    ]
    for u in table.upstreams:
        if with_servers:
            out += ["", *_backend(u, slots.get(u.name, ()), True)]
        else:
            out += ["", _backend_shape(u, len(slots.get(u.name, ())))]
    return "\n".join(out) + "\n"


_shapes: dict[tuple[object, ...], str] = {}


def _backend_shape(u: Upstream, n: int) -> str:
    """A backend without its servers' addresses: the same text for every endpoint set, so it is
    computed once per backend shape (a memo keyed by every other field)."""
    key = (n, *(v for k, v in u.__dict__.items() if k != "endpoints"))
    text = _shapes.get(key)
    if text is None:
        if len(_shapes) > 65536:
            _shapes.clear()
        text = _shapes[key] = "\n".join(_backend(replace(u, endpoints=()), (None,) * n, False))
    return text


def _backend(u: Upstream, slots: tuple[tuple[str, int] | None, ...], with_servers: bool) -> list[str]:
    lines = [f"backend {u.name}", f"    # {u.service}"]
    if u.error:
        return lines + [f"    http-request return status 503 content-type text/plain string {_q('503 ' + u.error)}"]
    lines += ["    balance roundrobin", f"    timeout server {u.timeout_server}s",
              f"    timeout connect {u.timeout_connect}s"]
    if u.affinity_cookie:
        lines.append(f"    cookie {u.affinity_cookie} insert indirect nocache")
    opts = server_options(u)
    for i, ep in enumerate(slots):
        name = f"s{i + 1}"
        cookie = f" cookie {name}" if u.affinity_cookie else ""
        if not with_servers:
            lines.append(f"    server {name}{cookie}{opts}")
        elif ep is None:
            lines.append(f"    server {name} 0.0.0.0:1 disabled{cookie}{opts}")
        else:
            host = f"[{ep[0]}]" if ":" in ep[0] else ep[0]
            lines.append(f"    server {name} {host}:{ep[1]}{cookie}{opts}")
    return lines


# every server: passive outlier detection (3 connection errors: down, then checked every 2 s, and
# every 5 s while down, to come back) and a TCP check every 30 s while up: readiness is what takes
# endpoints out, and at 10,000 endpoints a check every 5 s is 2,000 connections a second
DEFAULT_SERVER = ("default-server check inter 30s fastinter 2s downinter 5s fall 3 rise 1 "
                  "observe layer4 error-limit 3 on-error mark-down")


def server_options(u: Upstream) -> str:
    o = ""
    if u.protocol in ("https", "grpcs"):
        o += " ssl verify none"
        if u.protocol == "grpcs":
            o += " alpn h2"
    elif u.protocol in ("h2c", "grpc"):
        o += " proto h2"
    return o


def map_files(table: Table, gen: str = "") -> dict[str, str]:
    """Every map file's name (relative to the state directory) and contents for ``table``."""
    m = maps.build(table)
    return {f"{n}{gen}.map": maps.text(m.get(n)) for n in maps.NAMES}


def structure(table: Table, slots: Slots, listen: Listen, files: Files) -> str:
    """What needs a reload when it changes: the configuration without server addresses and without
    the map files' generation (map contents change through the runtime API)."""
    key = shape(table, slots, listen, files)
    if _last_structure[0] == key:
        return _last_structure[1]  # type: ignore[return-value]
    text = render(table, slots, listen, Files(files.dir, files.log_socket, "", files.extra_global),
                  with_servers=False)
    _last_structure[:] = [key, text]
    return text


_last_structure: list[object] = [None, ""]


def shape(table: Table, slots: Slots, listen: Listen, files: Files) -> tuple[object, ...]:
    """Everything ``structure`` reads, cheaper to compare than the text it renders: the routes of
    rule groups, every other table field but the map routes, endpoints and reports, and each
    backend without its endpoints but with its slot count. Generic over the fields, so a field added
    later counts until the renderer is shown not to use it."""
    groups = maps.map_groups(table)
    rest = tuple(v for k, v in table.__dict__.items() if k not in ("routes", "upstreams", "problems", "ingresses"))
    return (listen, files.dir, files.log_socket, files.extra_global, rest,
            tuple(r for r in table.routes if r.host not in groups),
            tuple((len(slots.get(u.name, ())), *(v for k, v in u.__dict__.items() if k != "endpoints"))
                  for u in table.upstreams))


def crt_list(table: Table, files: Files) -> str:
    return "".join(f"{files.cert(c.name)}{''.join(' ' + h for h in c.hosts)}\n" for c in table.certs)
