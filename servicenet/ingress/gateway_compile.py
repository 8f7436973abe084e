"""Gateway API compiled (pure): GatewayClasses, Gateways, routes and ReferenceGrants in; one
frontend per listener port, the backends, the certificates and every object's status out.

Listeners of all the Gateways this controller serves are grouped by port. A port carries HTTP, or
TLS: terminated (HTTPS), passed through (TLS), or both, split by SNI; HTTP and TLS listeners on one
port are Conflicted (ProtocolConflict), as are two on one port with the same hostname
(HostnameConflict).
A route attaches to every listener its parentRefs select that allows its kind and namespace and
whose hostname intersects its own; the intersections become the hostnames it is routed under on
that port, so a request matches at most one listener. HTTP routing precedence is
:mod:`servicenet.ingress.gateway_core`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from servicenet.api.selectors import selector_matches
from servicenet.api.views import meta as meta_of
from servicenet.api.wire import Obj
from servicenet.ingress import gateway_status as st
from servicenet.ingress.certs import CertError, secret_pem
from servicenet.ingress.core import HOST, _age, _key
from servicenet.ingress.gateway_core import (
    GW_GROUP,
    RouteInputs,
    _RouteCompiler,
    compile_routes,
    granted,
    host_rank,
)
from servicenet.ingress.model import Cert, Problem, Table, Upstream

GATEWAY_CONTROLLER = "servicenet.io/gateway-controller"
HTTP_KINDS = ("HTTPRoute", "GRPCRoute")
KINDS_OF = {"HTTP": HTTP_KINDS, "HTTPS": HTTP_KINDS, "TLS": ("TLSRoute",)}
MODE_OF = {"HTTP": "http", "HTTPS": "https", "TLS": "tls"}
# listener modes that may share a port: the TLS ClientHello's SNI picks the listener (most specific
# hostname first), then HAProxy either passes the connection through or terminates it (upstream's
# conformance test GatewayHTTPSAndTLSPassthroughSamePort); equal hostnames still conflict
SNI_SPLIT = {"https", "tls"}
PLURAL = {"GatewayClass": "gatewayclasses", "Gateway": "gateways", "HTTPRoute": "httproutes",
          "GRPCRoute": "grpcroutes", "TLSRoute": "tlsroutes"}
REF_REASONS = (st.R_REF_NOT_PERMITTED, st.R_INVALID_KIND, st.R_BACKEND_NOT_FOUND)


@dataclass(frozen=True)
class GatewayInputs:
    classes: tuple[Obj, ...] = ()
    gateways: tuple[Obj, ...] = ()
    routes: tuple[Obj, ...] = ()  # HTTPRoutes, GRPCRoutes and TLSRoutes (each with its "kind")
    grants: tuple[Obj, ...] = ()
    namespaces: Any = None  # name -> Namespace (for allowedRoutes selectors)
    services: Any = None
    slices: Any = None
    secrets: Any = None
    addresses: tuple[str, ...] = ("127.0.0.1",)
    controller: str = GATEWAY_CONTROLLER
    programmed: bool = True  # False: the data plane refused the configuration
    rejected: Any = None  # route key "Kind/ns/name" -> why the data plane refused it (left out)
    reserved_ports: tuple[int, ...] = ()  # ports on these addresses that something else owns
    cache: Any = None  # compiled routes to reuse (see RouteInputs.cache)


@dataclass(frozen=True)
class Listener:
    lid: str  # "<gateway ns>/<gateway name>/<listener name>"
    port: int
    protocol: str  # HTTP | HTTPS | TLS
    hostname: str  # "" any
    certs: tuple[str, ...] = ()  # certificate names (TLS Terminate)


@dataclass(frozen=True)
class Passthrough:
    host: str  # SNI: exact, "*.suffix", or "" for any
    backends: tuple[tuple[str, int], ...]  # (upstream or "" when it does not resolve, weight)
    source: str


@dataclass(frozen=True)
class Frontend:
    port: int
    mode: str  # http | https | tls
    listeners: tuple[Listener, ...]  # most specific hostname first
    table: Table = Table()
    passthrough: tuple[Passthrough, ...] = ()


@dataclass(frozen=True)
class Plan:
    frontends: tuple[Frontend, ...] = ()
    upstreams: tuple[Upstream, ...] = ()
    certs: tuple[Cert, ...] = ()
    addresses: tuple[str, ...] = ()
    statuses: dict[tuple[str, str, str], Obj] = field(default_factory=dict)  # (plural, ns, name) -> status
    problems: tuple[Problem, ...] = ()


def hostname_intersection(listener: str, route: str) -> str | None:
    """The hostname both a listener and a route hostname accept ("" any), or None."""
    if not listener:
        return route
    if not route:
        return listener
    if listener == route:
        return route
    lw, rw = listener.startswith("*."), route.startswith("*.")
    if lw and (route.endswith(listener[1:])):
        return route  # the route's is the narrower (an exact name, or a longer wildcard)
    if rw and listener.endswith(route[1:]):
        return listener
    return None


def _ns(o: Obj) -> str:
    return meta_of(o).get("namespace", "")


def _name(o: Obj) -> str:
    return meta_of(o).get("name", "")


class _GatewayCompiler:
    def __init__(self, inp: GatewayInputs) -> None:
        self.inp = inp
        self.namespaces = inp.namespaces or {}
        self.secrets = inp.secrets or {}
        self.statuses: dict[tuple[str, str, str], Obj] = {}
        self.problems: list[Problem] = []
        self.listeners: dict[str, Listener] = {}  # lid -> programmed listener
        self.listener_obj: dict[str, tuple[Obj, Obj]] = {}  # lid -> (gateway, listener spec)
        self.kinds: dict[str, tuple[str, ...]] = {}  # lid -> supported route kinds
        self.attached: dict[str, int] = {}
        self.certs: dict[str, bytes] = {}
        self.cert_hosts: dict[str, set[str]] = {}
        self.cert_any: set[str] = set()
        # route key "Kind/ns/name" -> {lid: effective hostnames}
        self.attachments: dict[str, dict[str, list[str]]] = {}
        self.overlapping: set[tuple[str, str]] = set()  # (gateway, listener) with OverlappingTLSConfig

    # -- classes and gateways -------------------------------------------------------------------------
    def classes(self) -> set[str]:
        ours = set()
        for c in self.inp.classes:
            if (c.get("spec") or {}).get("controllerName") != self.inp.controller:
                continue
            g = st.generation(c)
            if (c.get("spec") or {}).get("parametersRef"):  # not accepted: its Gateways are not served
                conds = [st.cond(st.ACCEPTED, False, st.R_INVALID_PARAMETERS,
                                 "this controller takes no parameters", g)]
            else:
                ours.add(_name(c))
                conds = [st.cond(st.ACCEPTED, True, st.R_ACCEPTED, "handled by servicenet's gateway controller", g)]
            self.statuses[("gatewayclasses", "", _name(c))] = {"conditions": conds}
        return ours

    def cert_refs(self, gw: Obj, spec: Obj) -> tuple[tuple[str, ...], str, str]:
        """(certificate names, failing reason or "", message) of a TLS Terminate listener."""
        names: list[str] = []
        refs = (spec.get("tls") or {}).get("certificateRefs") or []
        if not refs:
            return (), st.R_INVALID_CERTIFICATE_REF, "a TLS Terminate listener needs a certificateRef"
        for ref in refs:
            ns = ref.get("namespace") or _ns(gw)
            what = f"{ref.get('kind') or 'Secret'} {ns}/{ref.get('name')}"
            if (ref.get("group") or "") != "" or (ref.get("kind") or "Secret") != "Secret":
                return (), st.R_INVALID_CERTIFICATE_REF, f"{what} is not a core Secret"
            if ns != _ns(gw) and not granted(self.inp.grants, _ns(gw), "Gateway", ns, "Secret", ref.get("name", "")):
                return (), st.R_REF_NOT_PERMITTED, f"{what}: no ReferenceGrant in {ns} allows it"
            sec = self.secrets.get(f"{ns}/{ref.get('name')}")
            if sec is None:
                return (), st.R_INVALID_CERTIFICATE_REF, f"{what} not found"
            try:
                pem = secret_pem(sec)
            except CertError as exc:
                return (), st.R_INVALID_CERTIFICATE_REF, f"{what}: {exc}"
            cname = f"gw_{ns}_{ref.get('name')}.pem"
            self.certs[cname] = pem
            names.append(cname)
        return tuple(names), "", ""

    def gateways(self, ours: set[str]) -> list[Obj]:
        gws = [g for g in self.inp.gateways if (g.get("spec") or {}).get("gatewayClassName") in ours]
        gws.sort(key=_age)
        # conflicts over every listener of every Gateway served (they share the addresses)
        by_port: dict[int, list[tuple[Obj, Obj]]] = {}
        for gw in gws:
            for li in (gw.get("spec") or {}).get("listeners") or []:
                by_port.setdefault(int(li.get("port") or 0), []).append((gw, li))
        conflict: dict[tuple[str, str], str] = {}
        for items in by_port.values():
            modes = {MODE_OF.get(li.get("protocol", ""), li.get("protocol", "")) for _, li in items}
            seen: dict[str, list[tuple[Obj, Obj]]] = {}
            for gw, li in items:
                if len(modes) > 1 and modes != SNI_SPLIT:
                    conflict[(_key(gw), li.get("name", ""))] = st.R_PROTOCOL_CONFLICT
                seen.setdefault((li.get("hostname") or "").lower(), []).append((gw, li))
            for dup in seen.values():
                if len(dup) > 1:
                    for gw, li in dup:
                        conflict.setdefault((_key(gw), li.get("name", "")), st.R_HOSTNAME_CONFLICT)
            # TLS-terminating listeners of one port whose hostnames overlap (not equal: that conflicts)
            tls = [(gw, li, (li.get("hostname") or "").lower()) for gw, li in items if li.get("protocol") == "HTTPS"]
            for gw, li, h in tls:
                if any(h != h2 and hostname_intersection(h, h2) is not None for _, _, h2 in tls):
                    self.overlapping.add((_key(gw), li.get("name", "")))
        for gw in gws:
            self.gateway(gw, conflict)
        return gws

    def gateway(self, gw: Obj, conflict: dict[tuple[str, str], str]) -> None:
        g = st.generation(gw)
        spec = gw.get("spec") or {}
        lstatus: list[Obj] = []
        valid = 0
        for li in spec.get("listeners") or []:
            name, proto = li.get("name", ""), li.get("protocol", "")
            lid = f"{_key(gw)}/{name}"
            conds: list[Obj] = []
            allowed = KINDS_OF.get(proto, ())
            want = (li.get("allowedRoutes") or {}).get("kinds")
            kinds = allowed
            resolved, rmsg = "", ""
            if want:
                kinds = tuple(k["kind"] for k in want if (k.get("group") or GW_GROUP) == GW_GROUP
                              and k.get("kind") in allowed)
                if len(kinds) != len(want):
                    resolved, rmsg = st.R_INVALID_ROUTE_KINDS, "some allowedRoutes kinds are not supported here"
            tls = li.get("tls") or {}
            mode = tls.get("mode") or "Terminate"
            certs: tuple[str, ...] = ()
            accepted_reason, amsg = "", ""
            host = (li.get("hostname") or "").lower()
            if proto not in KINDS_OF:
                accepted_reason, amsg = st.R_UNSUPPORTED_PROTOCOL, f"protocol {proto} is not supported"
            elif int(li.get("port") or 0) in self.inp.reserved_ports:
                accepted_reason, amsg = st.R_PORT_UNAVAILABLE, f"port {li.get('port')} is taken (the Ingress data plane)"
            elif (proto == "HTTPS" and mode != "Terminate") or (proto == "TLS" and mode != "Passthrough"):
                accepted_reason, amsg = st.R_UNSUPPORTED_PROTOCOL, f"{proto} listeners support TLS mode " + (
                    "Terminate" if proto == "HTTPS" else "Passthrough")
            elif host and not HOST.match(host):
                accepted_reason, amsg = st.R_UNSUPPORTED_PROTOCOL, f"hostname {host!r} is not valid"
            elif proto == "HTTPS":
                certs, why, msg = self.cert_refs(gw, li)
                if why:
                    resolved, rmsg = why, msg
            c = conflict.get((_key(gw), name))
            accepted = not accepted_reason and not c
            conds.append(st.cond(st.ACCEPTED, accepted, accepted_reason or (st.R_ACCEPTED if not c else c),
                                 amsg or ("listener conflicts with another on the same port" if c else "accepted"), g))
            conds.append(st.cond(st.RESOLVED_REFS, not resolved, resolved or st.R_RESOLVED_REFS,
                                 rmsg or "references resolved", g))
            cert_ok = resolved != st.R_REF_NOT_PERMITTED and resolved != st.R_INVALID_CERTIFICATE_REF
            programmed = accepted and cert_ok and self.inp.programmed
            conds.append(st.cond(st.PROGRAMMED, programmed, st.R_PROGRAMMED if programmed else (
                st.R_PENDING if accepted and cert_ok else st.R_INVALID),
                "programmed in the data plane" if programmed else "not programmed", g))
            conds.append(st.cond(st.CONFLICTED, bool(c), c or st.R_NO_CONFLICTS,
                                 "conflicts with another listener on this port" if c else "no conflicts", g))
            if (_key(gw), name) in self.overlapping:  # negative polarity: only ever set True
                conds.append(st.cond(st.OVERLAPPING_TLS, True, st.R_OVERLAPPING_HOSTNAMES,
                                     "another HTTPS listener on this port has an overlapping hostname", g))
            if accepted:
                valid += 1
                self.kinds[lid] = kinds
                self.listener_obj[lid] = (gw, li)
                if programmed or (accepted and cert_ok):
                    self.listeners[lid] = Listener(lid, int(li.get("port") or 0), proto, host, certs)
                    for cn in certs:
                        if host:
                            self.cert_hosts.setdefault(cn, set()).add(host)
                        else:
                            self.cert_any.add(cn)
            lstatus.append({"name": name, "supportedKinds": [{"group": GW_GROUP, "kind": k} for k in kinds],
                            "attachedRoutes": 0, "conditions": conds})
        n = len(lstatus)
        bad_addr = [a for a in spec.get("addresses") or [] if (a.get("type") or "IPAddress") != "IPAddress"]
        missing = [a.get("value") for a in spec.get("addresses") or [] if a not in bad_addr and a.get("value")
                   not in self.inp.addresses]
        if bad_addr:
            acc = st.cond(st.ACCEPTED, False, st.R_UNSUPPORTED_ADDRESS, "only IPAddress addresses are supported", g)
        elif valid == n:
            acc = st.cond(st.ACCEPTED, True, st.R_ACCEPTED, "accepted", g)
        else:
            acc = st.cond(st.ACCEPTED, valid > 0, st.R_LISTENERS_NOT_VALID,
                          f"{n - valid} of {n} listeners are not valid (see their conditions)", g)
        if acc["status"] != "True":
            prog = st.cond(st.PROGRAMMED, False, st.R_INVALID, "the Gateway is not accepted", g)
        elif missing:
            prog = st.cond(st.PROGRAMMED, False, st.R_ADDRESS_NOT_ASSIGNED,
                           f"addresses {', '.join(map(str, missing))} are not this data plane's", g)
        elif not self.inp.programmed:
            prog = st.cond(st.PROGRAMMED, False, st.R_PENDING, "the data plane refused the configuration", g)
        else:
            prog = st.cond(st.PROGRAMMED, True, st.R_PROGRAMMED, "programmed in the data plane", g)
        self.statuses[("gateways", _ns(gw), _name(gw))] = {
            "addresses": [{"type": "IPAddress", "value": a} for a in self.inp.addresses],
            "conditions": [acc, prog], "listeners": lstatus}

    # -- routes ---------------------------------------------------------------------------------------
    def namespace_allowed(self, gw: Obj, li: Obj, route_ns: str) -> bool:
        frm = ((li.get("allowedRoutes") or {}).get("namespaces") or {})
        how = frm.get("from") or "Same"
        if how == "All":
            return True
        if how == "Same":
            return route_ns == _ns(gw)
        if how == "Selector":
            ns_obj = self.namespaces.get(route_ns) or {}
            labels = {**(meta_of(ns_obj).get("labels") or {}),
                      "kubernetes.io/metadata.name": route_ns}
            return selector_matches(frm.get("selector") or {}, labels)
        return False

    def route(self, obj: Obj, gws: dict[str, Obj], problems: list[Problem]) -> None:
        kind = obj.get("kind", "")
        g = st.generation(obj)
        rkey = f"{kind}/{_key(obj)}"
        hosts = [h.lower() for h in (obj.get("spec") or {}).get("hostnames") or []] or [""]
        unsupported = [p for p in problems if p.reason not in REF_REASONS]
        refs = [p for p in problems if p.reason in REF_REASONS]
        parents: list[Obj] = []
        for pref in (obj.get("spec") or {}).get("parentRefs") or []:
            if (pref.get("group") or GW_GROUP) != GW_GROUP or (pref.get("kind") or "Gateway") != "Gateway":
                continue
            gw = gws.get(f"{pref.get('namespace') or _ns(obj)}/{pref.get('name')}")
            if gw is None:
                continue  # not a Gateway this controller serves: its status is not ours to write
            cands = [(lid, li) for lid, (gw2, li) in self.listener_obj.items() if gw2 is gw
                     and (not pref.get("sectionName") or li.get("name") == pref["sectionName"])
                     and (pref.get("port") is None or int(li.get("port") or 0) == int(pref["port"]))]
            all_listeners = [li for li in (gw.get("spec") or {}).get("listeners") or []
                             if (not pref.get("sectionName") or li.get("name") == pref["sectionName"])
                             and (pref.get("port") is None or int(li.get("port") or 0) == int(pref["port"]))]
            ok: dict[str, list[str]] = {}
            host_miss = False
            for lid, li in cands:
                if kind not in self.kinds.get(lid, ()) or not self.namespace_allowed(gw, li, _ns(obj)):
                    continue
                eff = sorted({x for h in hosts if (x := hostname_intersection(
                    (li.get("hostname") or "").lower(), h)) is not None})
                if not eff:
                    host_miss = True
                    continue
                ok[lid] = eff
            if unsupported:
                acc = st.cond(st.ACCEPTED, False, st.R_UNSUPPORTED_VALUE, unsupported[0].message, g)
            elif not all_listeners:
                acc = st.cond(st.ACCEPTED, False, st.R_NO_MATCHING_PARENT,
                              "no listener of the Gateway matches sectionName/port", g)
            elif ok:
                acc = st.cond(st.ACCEPTED, True, st.R_ACCEPTED, "accepted", g)
            elif host_miss:
                acc = st.cond(st.ACCEPTED, False, st.R_NO_MATCHING_LISTENER_HOSTNAME,
                              "no listener hostname intersects the route's hostnames", g)
            else:
                acc = st.cond(st.ACCEPTED, False, st.R_NOT_ALLOWED_BY_LISTENERS,
                              "no listener allows this route's kind and namespace", g)
            res = st.cond(st.RESOLVED_REFS, not refs, refs[0].reason if refs else st.R_RESOLVED_REFS,
                          refs[0].message if refs else "references resolved", g)
            if acc["status"] == "True":
                for lid, eff in ok.items():
                    self.attachments.setdefault(rkey, {})[lid] = eff
                    self.attached[lid] = self.attached.get(lid, 0) + 1
            ref_out = {"group": GW_GROUP, "kind": "Gateway", "namespace": _ns(gw), "name": _name(gw)}
            for k in ("sectionName", "port"):
                if pref.get(k) is not None:
                    ref_out[k] = pref[k]
            parents.append({"parentRef": ref_out, "controllerName": self.inp.controller, "conditions": [acc, res]})
        if parents:
            self.statuses[(PLURAL[kind], _ns(obj), _name(obj))] = {"parents": parents}


def _listener_order(li: Listener) -> tuple[int, int]:
    return host_rank(li.hostname)


def _with_hostnames(obj: Obj, hostnames: list[str]) -> Obj:
    """The route as routed on one port: its hostnames narrowed to the listeners' ("" any)."""
    spec = dict(obj.get("spec") or {})
    spec["hostnames"] = [] if hostnames == [""] else hostnames
    return {**obj, "spec": spec}


def compile_gateways(inp: GatewayInputs) -> Plan:
    c = _GatewayCompiler(inp)
    ours = c.classes()
    gws = {_key(g): g for g in c.gateways(ours)}
    routes = sorted(inp.routes, key=_age)
    base = RouteInputs(grants=inp.grants, services=inp.services, slices=inp.slices, cache=inp.cache)
    route_problems: dict[str, list[Problem]] = {}
    for obj in routes:
        if obj.get("kind") in HTTP_KINDS:
            t = compile_routes(replace(base, routes=(obj,)))
            route_problems[f"{obj['kind']}/{_key(obj)}"] = list(t.problems)
        else:
            route_problems[f"{obj.get('kind')}/{_key(obj)}"] = _tls_problems(obj, base)
    for key, why in (inp.rejected or {}).items():
        if key in route_problems:
            kind, ns, name = key.split("/", 2)
            route_problems[key].append(Problem(kind, ns, name, st.R_UNSUPPORTED_VALUE, why))
    for obj in routes:
        c.route(obj, gws, route_problems[f"{obj.get('kind')}/{_key(obj)}"])
    for (plural, ns, name), s in c.statuses.items():
        if plural == "gateways":
            for li in s["listeners"]:
                li["attachedRoutes"] = c.attached.get(f"{ns}/{name}/{li['name']}", 0)
    # frontends, one per port
    by_port: dict[tuple[int, str], list[Listener]] = {}  # (port, mode): HTTPS and TLS may share a port
    for li in c.listeners.values():
        by_port.setdefault((li.port, MODE_OF[li.protocol]), []).append(li)
    frontends: list[Frontend] = []
    upstreams: dict[str, Upstream] = {}
    for port, mode in sorted(by_port):
        lis = tuple(sorted(by_port[(port, mode)], key=_listener_order))
        lids = {li.lid for li in lis}
        attached = []
        for obj in routes:
            att = c.attachments.get(f"{obj.get('kind')}/{_key(obj)}") or {}
            eff = sorted({h for lid, hs in att.items() if lid in lids for h in hs})
            if eff:
                attached.append(_with_hostnames(obj, eff))
        if mode == "tls":
            rc = _RouteCompiler(base)
            rc.kind = "TLSRoute"
            pts = [Passthrough(h, _tls_backends(rc, obj), _key(obj)) for obj in attached
                   for h in ((obj.get("spec") or {}).get("hostnames") or [""])]
            pts.sort(key=lambda p: host_rank(p.host))
            uniq: dict[str, Passthrough] = {}
            for p in pts:  # one route per SNI name: the oldest (routes are in age order)
                uniq.setdefault(p.host, p)
            upstreams.update(rc.upstreams)
            frontends.append(Frontend(port, mode, lis, passthrough=tuple(uniq.values())))
        else:
            table = compile_routes(replace(base, routes=tuple(attached)))
            upstreams.update({u.name: u for u in table.upstreams})
            frontends.append(Frontend(port, mode, lis, table=table))
    certs = tuple(Cert(n, pem, () if n in c.cert_any else tuple(sorted(c.cert_hosts.get(n, ()))))
                  for n, pem in sorted(c.certs.items()) if n in c.cert_any or n in c.cert_hosts)
    problems = tuple(p for ps in route_problems.values() for p in ps)
    return Plan(tuple(frontends), tuple(sorted(upstreams.values(), key=lambda u: u.name)), certs,
                inp.addresses, c.statuses, problems)


def _tls_backends(rc: _RouteCompiler, obj: Obj) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    for rule in ((obj.get("spec") or {}).get("rules") or [])[:1]:
        for ref in rule.get("backendRefs") or []:
            out.append((rc.backend(obj, ref), int(ref.get("weight", 1))))
    return tuple(out) or (("", 1),)


def _tls_problems(obj: Obj, base: RouteInputs) -> list[Problem]:
    rc = _RouteCompiler(base)
    rc.kind = obj.get("kind") or "TLSRoute"
    for h in (obj.get("spec") or {}).get("hostnames") or []:
        if not HOST.match(h.lower()):
            rc.problem(obj, st.R_UNSUPPORTED_VALUE, f"hostname {h!r} is not valid")
    _tls_backends(rc, obj)
    return list(rc.problems)
