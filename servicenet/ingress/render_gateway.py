"""Turn a Gateway API plan into HAProxy configuration text (pure).

One frontend per listener port. HTTP and HTTPS frontends choose a host group by the Host header
(exact names, then wildcards by length, then the any-host group), then the first route of the group
whose matches hold (the table is already in precedence order), then apply the route's filters and
pick a backend by weight; an HTTPS frontend answers 421 when the Host header selects another listener
than the TLS SNI did. TLS passthrough frontends are TCP proxies choosing a backend by SNI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from servicenet.ingress import render as rd
from servicenet.ingress.gateway_compile import Frontend, Plan
from servicenet.ingress.model import EXACT, PREFIX, Route, Upstream
from servicenet.ingress.render import LOG_FORMAT, Slots

NOT_FOUND, UNRESOLVED = "be_gw_404", "be_gw_500"

# RequestMirror: a copy of the request line and headers goes to the mirror target from a HAProxy
# task, so the client's request never waits for it (the mirror's answer is dropped).
MIRROR_LUA = """\
local methods = {GET = "get", HEAD = "head", PUT = "put", POST = "post", DELETE = "delete"}
core.register_action("sn_mirror", {"http-req"}, function(txn, target)
  local verb = methods[txn.sf:method()] or "get"
  local url = "http://" .. target .. txn.sf:pathq()
  local hdrs = {}
  for name, vals in pairs(txn.http:req_get_headers()) do
    local list = {}
    for i = 0, #vals do if vals[i] ~= nil then list[#list + 1] = vals[i] end end
    hdrs[name] = list
  end
  hdrs["x-servicenet-mirror"] = {"1"}
  core.register_task(function()
    local hc = core.httpclient()
    pcall(function() hc[verb](hc, {url = url, headers = hdrs, timeout = 5000}) end)
  end)
end, 1)
"""


@dataclass(frozen=True)
class GwFiles:
    dir: str
    log_socket: str = ""

    @property
    def admin_socket(self) -> str:
        return f"{self.dir}/admin.sock"

    def crt_list(self, port: int) -> str:
        return f"{self.dir}/crt-list-{port}.txt"

    def cert(self, name: str) -> str:
        return f"{self.dir}/certs/{name}"

    @property
    def lua(self) -> str:
        return f"{self.dir}/mirror.lua"


def _sq(s: str) -> str:
    assert "'" not in s
    return "'" + s + "'"


def _lf(s: str) -> str:
    """A literal inside a log-format string ('%' doubled)."""
    return s.replace("%", "%%")


def _host_cond(var: str, host: str) -> str:
    if host.startswith("*."):
        return f"{{ {var} -m end {_sq(host[1:])} }}"
    return f"{{ {var} -m str {_sq(host)} }}"


def _path_conds(r: Route) -> list[str]:
    if r.kind == EXACT:
        return [f"{{ path -m str {_sq(r.path)} }}"]
    if r.kind == PREFIX:
        p = r.path.rstrip("/")
        if not p:
            return [""]
        return [f"{{ path -m str {_sq(p)} }}", f"{{ path -m beg {_sq(p + '/')} }}"]
    return [f"{{ path -m reg {_sq('^' + r.path)} }}"]


def _match_conds(r: Route) -> str:
    out = ""
    if r.method:
        out += f" {{ method {r.method} }}"
    for name, typ, val in r.headers:
        out += f" {{ req.hdr({name}) -m {'str' if typ == 'Exact' else 'reg'} {_sq(val)} }}"
    for name, typ, val in r.query:
        out += f" {{ url_param({name}) -m {'str' if typ == 'Exact' else 'reg'} {_sq(val)} }}"
    return out


def _replace_prefix(r: Route, value: str, rid: str) -> list[str]:
    """``replace-path`` rules swapping the matched PathPrefix for ``value`` (element-wise)."""
    prefix = re.escape(r.path.rstrip("/"))
    base = value.rstrip("/")
    if base:
        return [f"    http-request replace-path {_sq('^' + prefix + '(/.*)?$')} {_sq(base + chr(92) + '1')} if {rid}"]
    return [f"    http-request replace-path {_sq('^' + prefix + '/?$')} '/' if {rid}",
            f"    http-request replace-path {_sq('^' + prefix + '(/.+)$')} {_sq(chr(92) + '1')} if {rid}"]


def _filters(r: Route, rid: str, port: int, https: bool) -> list[str]:
    out: list[str] = []
    for addr, mport, pct in r.mirror:
        target = f"[{addr}]:{mport}" if ":" in addr else f"{addr}:{mport}"
        cond = "" if pct >= 100 else f" {{ rand(100) -m int lt {pct} }}"
        out.append(f"    http-request lua.sn_mirror {target} if {rid}{cond}")
    if r.redirect is not None:
        scheme, host, rport, full, status = r.redirect
        sch = scheme or ("https" if https else "http")
        if rport:
            prt = "" if (sch, rport) in (("http", 80), ("https", 443)) else f":{rport}"
        elif scheme:
            prt = ""  # a scheme change without a port: the scheme's well-known port
        else:
            prt = "" if (sch, port) in (("http", 80), ("https", 443)) else f":{port}"
        if r.redirect_prefix:
            out += _replace_prefix(r, r.redirect_prefix, rid)
        path = _lf(full) + "%[query,regsub(^,?)]" if full else "%[url]"
        hst = _lf(host) if host else "%[var(txn.host)]"
        out.append(f"    http-request redirect location {_sq(sch + '://' + hst + prt + path)} code {status} if {rid}")
    for op, name, val in r.req_headers:
        verb = {"set": "set-header", "add": "add-header", "remove": "del-header"}[op]
        out.append(f"    http-request {verb} {name}{' ' + _sq(_lf(val)) if op != 'remove' else ''} if {rid}")
    if r.rewrite_host:
        out.append(f"    http-request set-header Host {_sq(r.rewrite_host)} if {rid}")
    if r.rewrite_path is not None:
        kind, val = r.rewrite_path
        if kind == "ReplaceFullPath":
            out.append(f"    http-request set-path {_sq(_lf(val))} if {rid}")
        else:
            out += _replace_prefix(r, val, rid)
    for op, name, val in r.resp_headers:
        verb = {"set": "set-header", "add": "add-header", "remove": "del-header"}[op]
        out.append(f"    http-response {verb} {name}{' ' + _sq(_lf(val)) if op != 'remove' else ''} if {rid}")
    return out


def _http_frontend(fe: Frontend, addresses: tuple[str, ...], files: GwFiles) -> list[str]:
    https = fe.mode == "https"
    out = [f"frontend gw_{fe.port}", "    mode http"]
    for a in addresses:
        host = f"[{a}]" if ":" in a else a
        tls = f" ssl crt {files.dir}/certs/default.pem crt-list {files.crt_list(fe.port)} alpn h2,http/1.1" \
            if https else ""
        out.append(f"    bind {host}:{fe.port}{tls}")
    out.append("    http-request set-var(txn.host) req.hdr(host),field(1,:),lower")
    if https:  # 421: the Host header selects another listener than the SNI did
        for i, li in enumerate(fe.listeners):
            for var, fetch in (("txn.lh", "var(txn.host)"), ("txn.ls", "ssl_fc_sni,lower")):
                cond = _host_cond(fetch, li.hostname) if li.hostname else ""
                out.append(f"    http-request set-var({var}) str(L{i}) if !{{ var({var}) -m found }} {cond}".rstrip())
        out.append("    http-request return status 421 content-type text/plain string \"421 misdirected request\" "
                   "if { ssl_fc_sni -m found } !{ var(txn.lh),strcmp(txn.ls) eq 0 }")
    t = fe.table
    groups: dict[str, str] = {}
    for r in t.routes:
        groups.setdefault(r.host, f"g{len(groups)}")
    for h, g in groups.items():
        cond = _host_cond("var(txn.host)", h) if h else ""
        out.append(f"    http-request set-var(txn.hg) str({g}) if !{{ var(txn.hg) -m found }} {cond}".rstrip())
    for i, r in enumerate(t.routes):
        extra = _match_conds(r)
        alts = [f"!{{ var(txn.r) -m found }} {{ var(txn.hg) -m str {groups[r.host]} }} {c}{extra}".rstrip()
                for c in _path_conds(r)]
        out.append(f"    http-request set-var(txn.r) str(r{i}) if {' || '.join(alts)}")
    uses: list[str] = []
    for i, r in enumerate(t.routes):
        rid = f"{{ var(txn.r) -m str r{i} }}"
        out += _filters(r, rid, fe.port, https)
        total = sum(w for _, w in r.backends if w > 0)
        if r.backends and total:
            out.append(f"    http-request set-var(txn.w) rand({total}) if {rid}")
            lo = 0
            for k, (up, w) in enumerate(r.backends):
                if w <= 0:
                    continue
                out.append(f"    http-request set-var(txn.b) str(r{i}w{k}) if {rid} {{ var(txn.w) -m int ge {lo} }} "
                           f"{{ var(txn.w) -m int lt {lo + w} }}")
                uses.append(f"    use_backend {up or UNRESOLVED} if {{ var(txn.b) -m str r{i}w{k} }}")
                lo += w
        elif r.backends:
            uses.append(f"    use_backend {UNRESOLVED} if {rid}")  # every weight is zero
        else:
            uses.append(f"    use_backend {r.upstream or UNRESOLVED} if {rid}")
    out += [
        "    http-request set-header X-Forwarded-Proto https if { ssl_fc }",
        "    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }",
        "    http-request set-header X-Forwarded-Host %[req.hdr(host)]",
        "    http-request set-header X-Forwarded-Port %[dst_port]",
        *uses,
        f"    default_backend {NOT_FOUND}",
    ]
    return out


def _tls_frontend(fe: Frontend, addresses: tuple[str, ...]) -> list[str]:
    out = [f"frontend gw_{fe.port}", "    mode tcp"]
    for a in addresses:
        out.append(f"    bind {f'[{a}]' if ':' in a else a}:{fe.port}")
    # wait for the ClientHello (an "accept" would end the rules: the SNI ones must run first)
    out += ["    tcp-request inspect-delay 5s", "    tcp-request content reject if !{ req.ssl_hello_type 1 }",
            "    tcp-request content set-var(txn.sni) req.ssl_sni,lower"]
    for i, p in enumerate(fe.passthrough):
        cond = _host_cond("var(txn.sni)", p.host) if p.host else ""
        out.append(f"    tcp-request content set-var(txn.r) str(p{i}) if !{{ var(txn.r) -m found }} {cond}".rstrip())
    for i, p in enumerate(fe.passthrough):
        total = sum(w for _, w in p.backends if w > 0)
        rid = f"{{ var(txn.r) -m str p{i} }}"
        out.append(f"    tcp-request content set-var(txn.w) rand({max(total, 1)}) if {rid}")
        lo = 0
        for up, w in p.backends:
            if w <= 0 or not up:
                lo += max(w, 0)
                continue  # an unresolved share: no backend, the connection is closed
            out.append(f"    use_backend {up} if {rid} {{ var(txn.w) -m int ge {lo} }} {{ var(txn.w) -m int lt {lo + w} }}")
            lo += w
    return out


def _backend(u: Upstream, slots: tuple[tuple[str, int] | None, ...], with_servers: bool,
             timeout_ms: int = 0) -> list[str]:
    lines = [f"backend {u.name}", f"    # {u.service}", f"    mode {'tcp' if u.protocol == 'tcp' else 'http'}",
             "    balance roundrobin"]
    if timeout_ms:
        lines.append(f"    timeout server {timeout_ms}ms")
    opts = rd.server_options(u)
    for i, ep in enumerate(slots):
        if not with_servers:
            lines.append(f"    server s{i + 1}{opts}")
        elif ep is None:
            lines.append(f"    server s{i + 1} 0.0.0.0:1 disabled{opts}")
        else:
            host = f"[{ep[0]}]" if ":" in ep[0] else ep[0]
            lines.append(f"    server s{i + 1} {host}:{ep[1]}{opts}")
    return lines


def uses_mirror(plan: Plan) -> bool:
    return any(r.mirror for fe in plan.frontends for r in fe.table.routes)


def render(plan: Plan, slots: Slots, files: GwFiles, *, with_servers: bool = True) -> str:
    """The whole configuration. ``with_servers=False`` gives the structure only (no addresses)."""
    out = ["global", f"    stats socket {files.admin_socket} mode 600 level admin expose-fd listeners",
           "    stats timeout 2m", "    hard-stop-after 1h", "    ssl-default-bind-options ssl-min-ver TLSv1.2",
           "    tune.bufsize 32768"]
    if files.log_socket:
        out.append(f"    log {files.log_socket} len 4096 format raw local0 info")
    if uses_mirror(plan):
        out.append(f"    lua-load {files.lua}")
    out += ["", "defaults http", "    mode http", "    log global", "    option dontlognull",
            f"    log-format \"{LOG_FORMAT.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}\"",
            "    option http-keep-alive", "    option idle-close-on-response", "    option forwardfor",
            "    http-reuse safe", "    option redispatch", "    retries 2", "    timeout connect 5s",
            "    timeout client 300s", "    timeout server 300s", "    timeout http-request 60s",
            "    timeout http-keep-alive 75s", "    timeout tunnel 1h", "    timeout client-fin 10s",
            f"    {rd.DEFAULT_SERVER}"]
    for fe in plan.frontends:
        if fe.mode != "tls":
            out += ["", *_http_frontend(fe, plan.addresses, files)]
    out += ["", f"backend {NOT_FOUND}",
            "    http-request return status 404 content-type text/plain string \"404 no route matches\"",
            "", f"backend {UNRESOLVED}",
            "    http-request return status 500 content-type text/plain string \"500 backend does not resolve\""]
    for u in plan.upstreams:
        if u.protocol != "tcp" and not u.error:
            out += ["", *_backend(u, slots.get(u.name, ()), with_servers, plan.timeouts.get(u.name, 0))]
    out += ["", "defaults tcp", "    mode tcp", "    timeout connect 5s", "    timeout client 300s",
            "    timeout server 300s", "    timeout tunnel 1h", f"    {rd.DEFAULT_SERVER}"]
    for fe in plan.frontends:
        if fe.mode == "tls":
            out += ["", *_tls_frontend(fe, plan.addresses)]
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
