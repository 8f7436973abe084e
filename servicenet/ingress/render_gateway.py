"""Turn a Gateway API plan into HAProxy configuration text (pure).

One frontend per listener port. HTTP and HTTPS frontends choose a host group by the Host header
(exact names, then wildcards by length, then the any-host group), then the route: from the maps
(:mod:`servicenet.ingress.gateway_maps`) for groups that match paths only, else by one rule per route
in precedence order. The route's backend comes from a map; its weights, filters and timeout from its
map spec, applied by the Lua action (:mod:`servicenet.ingress.gateway_lua`). So routes change through
the runtime API; the configuration text depends on the listeners, the backends and the rules of the
groups with method/header/query/regex matches only. An HTTPS frontend answers 421 when the Host
header selects another listener than the TLS SNI did. TLS passthrough frontends are TCP proxies
choosing a backend by SNI.
"""

from __future__ import annotations

from dataclasses import dataclass

from servicenet.ingress import gateway_maps as gm
from servicenet.ingress import render as rd
from servicenet.ingress.gateway_compile import Frontend, Plan
from servicenet.ingress.gateway_core import host_rank
from servicenet.ingress.gateway_lua import LUA
from servicenet.ingress.gateway_maps import NOT_FOUND, UNRESOLVED
from servicenet.ingress.model import Upstream
from servicenet.ingress.render import LOG_FORMAT, Slots

__all__ = ["LUA", "GwFiles", "crt_lists", "http_maps", "map_files", "render"]



@dataclass(frozen=True)
class GwFiles:
    dir: str
    log_socket: str = ""
    gen: str = ""  # suffix of the map files (content-addressed by the shell)

    @property
    def admin_socket(self) -> str:
        return f"{self.dir}/admin.sock"

    def crt_list(self, port: int) -> str:
        return f"{self.dir}/crt-list-{port}.txt"

    def cert(self, name: str) -> str:
        return f"{self.dir}/certs/{name}"

    @property
    def lua(self) -> str:
        return f"{self.dir}/gateway.lua"

    def map(self, port: int, name: str) -> str:
        return f"{self.dir}/{gm.stem(port, name)}{self.gen}.map"

    def map_paths(self, plan: Plan) -> dict[str, str]:
        """Each map's file (by stem) as a configuration of ``plan`` with this ``gen`` loads it."""
        return {gm.stem(fe.port, n): self.map(fe.port, n) for fe in plan.frontends if fe.mode != "tls"
                for n in gm.NAMES}


def _host_cond(var: str, host: str) -> str:
    if host.startswith("*."):
        return f"{{ {var} -m end {rd._sq(host[1:])} }}"
    return f"{{ {var} -m str {rd._sq(host)} }}"


def http_maps(plan: Plan) -> gm.Maps:
    """The map entries of every HTTP and HTTPS frontend of ``plan``."""
    return gm.build([(fe.port, fe.mode == "https", fe.table) for fe in plan.frontends if fe.mode != "tls"])


def map_files(plan: Plan, files: GwFiles) -> dict[str, str]:
    """Map file name (relative to the state directory) -> contents, for ``plan`` with ``files.gen``."""
    m = http_maps(plan)
    return {f"{s}{files.gen}.map": gm.text(m.get(s, {})) for s in files.map_paths(plan)}


def _terminated(port: int) -> str:
    """Where the HTTPS frontend of a port shared with TLS passthrough listens (the TCP frontend on
    the port hands it the connections whose SNI selects an HTTPS listener, with a PROXY header)."""
    return f"abns@gw{port}_https"


def _http_frontend(fe: Frontend, addresses: tuple[str, ...], files: GwFiles, behind_sni: bool = False) -> list[str]:
    https = fe.mode == "https"
    out = [f"frontend gw_{fe.port}{'_https' if behind_sni else ''}", "    mode http"]
    tls = f" ssl crt {files.dir}/certs/default.pem crt-list {files.crt_list(fe.port)} alpn h2,http/1.1" \
        if https else ""
    if behind_sni:
        out.append(f"    bind {_terminated(fe.port)} accept-proxy{tls}")
    for a in () if behind_sni else addresses:
        out.append(f"    bind {f'[{a}]' if ':' in a else a}:{fe.port}{tls}")
    out.append("    http-request set-var(txn.host) req.hdr(host),field(1,:),lower")
    if https:  # 421: the Host header selects another listener than the SNI did
        for i, li in enumerate(fe.listeners):
            for var, fetch in (("txn.lh", "var(txn.host)"), ("txn.ls", "ssl_fc_sni,lower")):
                cond = _host_cond(fetch, li.hostname) if li.hostname else ""
                out.append(f"    http-request set-var({var}) str(L{i}) if !{{ var({var}) -m found }} {cond}".rstrip())
        out.append("    http-request return status 421 content-type text/plain string \"421 misdirected request\" "
                   "if { ssl_fc_sni -m found } !{ var(txn.lh),strcmp(txn.ls) eq 0 }")
    t, port = fe.table, fe.port
    hosts = files.map(port, "hosts")
    out += [
        f"    http-request set-var(txn.hg) var(txn.host),map_str({hosts})",
        *(f"    http-request set-var(txn.hg) var(txn.host),regsub(^{'[^.]+[.]' * k},*.),map_str({hosts}) "
          "if !{ var(txn.hg) -m found }" for k in range(1, gm.WILDCARD_DEPTH + 1)),
        f"    http-request set-var(txn.hg) str({gm.NO_HOST}) if !{{ var(txn.hg) -m found }}",
        '    http-request set-var-fmt(txn.k) "%[var(txn.hg)]%[path]"',
        f"    http-request set-var(txn.r) var(txn.k),map_str({files.map(port, 'exact')})",
        '    http-request set-var-fmt(txn.k) "%[var(txn.hg)]%[path]/" if !{ var(txn.r) -m found }',
        f"    http-request set-var(txn.r) var(txn.k),map_beg({files.map(port, 'prefix')}) if !{{ var(txn.r) -m found }}",
    ]
    groups = gm.map_groups(t)
    for rid, r in zip(gm.route_ids(port, t, groups), t.routes, strict=True):  # the other groups: a rule each
        if r.host in groups:
            continue
        alts = [f"!{{ var(txn.r) -m found }} {{ var(txn.hg) -m str {r.host or gm.NO_HOST} }} {c}{rd._match_conds(r)}"
                .rstrip() for c in rd._path_conds(r)]
        out.append(f"    http-request set-var(txn.r) str({rid}) if {' || '.join(alts)}")
    out += [
        f"    http-request set-var(txn.f) var(txn.r),map_str({files.map(port, 'spec')}) if {{ var(txn.r) -m found }}",
        "    http-request wait-for-body time 1s if { var(txn.f) -m sub &m= }",  # a mirror copies the body
        "    http-request lua.sn_route if { var(txn.f) -m found }",
        *(f"    http-request redirect location %[var(txn.loc)] code {c} if {{ var(txn.rc) -m str {c} }}"
          for c in (301, 302, 303, 307, 308)),
        "    http-response lua.sn_resp if { var(txn.fr) -m found }",
        "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
        "    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
        "    http-request set-header X-Forwarded-Host %[req.hdr(host)]",
        # the listener's port (behind the SNI split too, where the PROXY header carries it): a
        # constant, where %[dst_port] asked the kernel (getsockname) once per client connection
        f"    http-request set-header X-Forwarded-Port {port}",
        "    use_backend %[var(txn.b)] if { var(txn.b) -m found }",
        f"    use_backend %[var(txn.r),map_str({files.map(port, 'routes')})] if {{ var(txn.r) -m found }}",
        f"    default_backend {NOT_FOUND}",
    ]
    return out


def _tls_frontend(fe: Frontend, addresses: tuple[str, ...], terminate: Frontend | None = None) -> list[str]:
    """TLS passthrough by SNI; with ``terminate`` (the HTTPS frontend of the same port), the SNI first
    selects a listener of either, most specific hostname first, and HTTPS ones go to ``terminate``."""
    out = [f"frontend gw_{fe.port}", "    mode tcp"]
    for a in addresses:
        out.append(f"    bind {f'[{a}]' if ':' in a else a}:{fe.port}")
    # wait for the ClientHello (an "accept" would end the rules: the SNI ones must run first)
    out += ["    tcp-request inspect-delay 5s", "    tcp-request content reject if !{ req.ssl_hello_type 1 }",
            "    tcp-request content set-var(txn.sni) req.ssl_sni,lower"]
    if terminate is not None:
        both = sorted([(li, "t") for li in fe.listeners] + [(li, "h") for li in terminate.listeners],
                      key=lambda lm: host_rank(lm[0].hostname))
        for li, m in both:
            cond = _host_cond("var(txn.sni)", li.hostname) if li.hostname else ""
            out.append(f"    tcp-request content set-var(txn.lm) str({m}) if !{{ var(txn.lm) -m found }} {cond}".rstrip())
    for i, p in enumerate(fe.passthrough):
        cond = _host_cond("var(txn.sni)", p.host) if p.host else ""
        out.append(f"    tcp-request content set-var(txn.r) str(p{i}) if !{{ var(txn.r) -m found }} {cond}".rstrip())
    uses = [f"    use_backend gw_{fe.port}_terminate if {{ var(txn.lm) -m str h }}"] if terminate else []
    for i, p in enumerate(fe.passthrough):
        total = sum(w for _, w in p.backends if w > 0)
        rid = f"{{ var(txn.r) -m str p{i} }}"
        out.append(f"    tcp-request content set-var(txn.w) rand({max(total, 1)}) if {rid}")
        lo = 0
        for up, w in p.backends:
            if w <= 0 or not up:
                lo += max(w, 0)
                continue  # an unresolved share: no backend, the connection is closed
            uses.append(f"    use_backend {up} if {rid} {{ var(txn.w) -m int ge {lo} }} {{ var(txn.w) -m int lt {lo + w} }}")
            lo += w
    return out + uses


def _backend(u: Upstream, slots: tuple[tuple[str, int] | None, ...], with_servers: bool) -> list[str]:
    lines = rd._backend(u, slots, with_servers)
    if u.protocol != "tcp":  # a route's timeout (its map spec, through Lua)
        lines.insert(2, "    http-request set-timeout server var(txn.tmo) if { var(txn.tmo) -m found }")
    return lines


def render(plan: Plan, slots: Slots, files: GwFiles, *, with_servers: bool = True) -> str:
    """The whole configuration. ``with_servers=False`` gives the structure only (no addresses)."""
    out = ["global", f"    stats socket {files.admin_socket} mode 600 level admin expose-fd listeners",
           "    stats timeout 2m", "    hard-stop-after 1h", "    ssl-default-bind-options ssl-min-ver TLSv1.2",
           "    tune.bufsize 32768"]
    out.append(f"    lua-load {files.lua}")
    if files.log_socket:  # the access log: one write per request to stdout, a pipe the controller drains
        out.append("    log stdout len 4096 format raw local0 info")
    out += ["", "defaults http", "    mode http", "    log global", "    option dontlognull",
            f"    log-format \"{LOG_FORMAT.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}\"",
            "    option http-keep-alive", "    option idle-close-on-response", "    option forwardfor",
            "    http-reuse safe", "    option redispatch", "    retries 2", "    timeout connect 5s",
            "    timeout client 300s", "    timeout server 300s", "    timeout http-request 60s",
            "    timeout http-keep-alive 75s", "    timeout tunnel 1h", "    timeout client-fin 10s",
            f"    {rd.DEFAULT_SERVER}"]
    https = {fe.port: fe for fe in plan.frontends if fe.mode == "https"}
    split = {fe.port for fe in plan.frontends if fe.mode == "tls"} & set(https)
    for fe in plan.frontends:
        if fe.mode != "tls":
            out += ["", *_http_frontend(fe, plan.addresses, files, fe.port in split)]
    out += ["", f"backend {NOT_FOUND}",
            "    http-request return status 404 content-type text/plain string \"404 no route matches\"",
            "", f"backend {UNRESOLVED}",
            "    http-request return status 500 content-type text/plain string \"500 backend does not resolve\""]
    for u in plan.upstreams:
        if u.protocol != "tcp" and not u.error:
            out += ["", *_backend(u, slots.get(u.name, ()), with_servers)]
    out += ["", "defaults tcp", "    mode tcp", "    timeout connect 5s", "    timeout client 300s",
            "    timeout server 300s", "    timeout tunnel 1h", f"    {rd.DEFAULT_SERVER}"]
    for fe in plan.frontends:
        if fe.mode == "tls":
            out += ["", *_tls_frontend(fe, plan.addresses, https.get(fe.port))]
    for port in sorted(split):
        out += ["", f"backend gw_{port}_terminate", f"    server s1 {_terminated(port)} send-proxy-v2 no-check"]
    for u in plan.upstreams:
        if u.protocol == "tcp" and not u.error:
            out += ["", *_backend(u, slots.get(u.name, ()), with_servers)]
    return "\n".join(out) + "\n"


def crt_lists(plan: Plan, files: GwFiles) -> dict[int, str]:
    """Port -> crt-list text: each HTTPS listener's certificates, filtered by its hostname."""
    out: dict[int, str] = {}
    for fe in plan.frontends:
        if fe.mode != "https":
            continue
        lines = []
        for li in fe.listeners:
            for c in li.certs:
                lines.append(f"{files.cert(c)}{' ' + li.hostname if li.hostname else ''}\n")
        out[fe.port] = "".join(lines)
    return out


def route_names(plan: Plan) -> dict[str, str]:
    """Route id -> the name metrics and logs show: ``ns/name :port host/path``."""
    out: dict[str, str] = {}
    for fe in plan.frontends:
        if fe.mode != "tls":
            ids = gm.route_ids(fe.port, fe.table, gm.map_groups(fe.table))
            for rid, r in zip(ids, fe.table.routes, strict=True):
                out.setdefault(rid, f"{r.source} :{fe.port} {r.host or '*'}{r.path}")
    return out
