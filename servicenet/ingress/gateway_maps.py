"""Gateway API HTTP routes as HAProxy map entries (pure): why an HTTPRoute or GRPCRoute change needs
no reload.

Per listener port (one HTTP/HTTPS frontend each) five maps, all changed through the runtime API:

- ``hosts``: request host → host group (the route hostname; a wildcard ``*.a.b`` is found by
  stripping leading labels, fewest first, so the longest wildcard wins; none: ``@``);
- ``exact``: ``<group><path>`` → route id; ``prefix``: ``<group><path>/`` → route id (``map_beg``
  answers with the longest key: element-wise PathPrefix precedence, as :mod:`maps` does for Ingress);
- ``routes``: route id → backend (the only backend; for weighted rules the 500 fallback);
- ``spec``: route id → what the route does besides choosing one backend: weights, filters
  (header modifiers, redirects, URL rewrites, mirrors) and its timeout, in a compact encoding
  (:func:`spec`) that the Lua action :data:`LUA` applies per request.

A host group whose routes only match paths (Exact or PathPrefix) lives entirely in the maps. A group
with a method, header, query or RegularExpression match keeps one configuration rule per route (in
precedence order, they select the route id); its backends, weights and filters still come from the
maps, so only a change of its *matches* needs a reload.
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote

from servicenet.ingress.maps import _word, text
from servicenet.ingress.model import EXACT, PREFIX, Route, Table

__all__ = ["build", "map_groups", "ops", "route_ids", "spec", "text"]

NAMES = ("hosts", "exact", "prefix", "routes", "spec")
REACH = ("exact", "prefix", "hosts")  # entries that make a route reachable (added last, removed first)
NO_HOST = "@"
WILDCARD_DEPTH = 16  # labels a Gateway API wildcard hostname may cover (longer names: no wildcard match)
UNRESOLVED = "be_gw_500"
NOT_FOUND = "be_gw_404"

Maps = dict[str, dict[str, str]]  # map file stem ("gw<port>-<name>") -> entries in file order


def is_simple(r: Route) -> bool:
    """Matches the path only (Exact or PathPrefix): a map entry can select it."""
    return r.kind in (EXACT, PREFIX) and not r.method and not r.headers and not r.query


def map_groups(table: Table) -> frozenset[str]:
    """Hosts ("" none) whose routes are all simple."""
    bad = {r.host for r in table.routes if not is_simple(r)}
    return frozenset(r.host for r in table.routes if r.host not in bad)


def key_path(r: Route) -> str:
    return r.path if r.kind == EXACT else r.path.rstrip("/") + "/"


def route_ids(port: int, table: Table, groups: frozenset[str]) -> tuple[str, ...]:
    """A route id per route: ``m<port>_<hash>`` for map routes (stable across tables: the same host,
    type and path keep their entries), ``r<port>_<n>`` for rule routes (in table order: they change
    only with the rules, which reload anyway)."""
    out, n = [], 0
    for r in table.routes:
        if r.host in groups:
            out.append(f"m{port}_" + hashlib.sha1(f"{r.host}\0{r.kind}\0{key_path(r)}".encode()).hexdigest()[:12])
        else:
            out.append(f"r{port}_{n}")
            n += 1
    return tuple(out)


def _enc(v: object) -> str:
    return quote(str(v), safe="")


def spec(r: Route, port: int, https: bool) -> str:
    """The route's weights, filters and timeout as ``&key=value`` items (values percent-encoded, so
    the text holds no space, ``;`` or ``\\`` and survives the runtime API); "" when it has none.
    Items apply in order; mirrors come first (they copy the request as the client sent it)."""
    items: list[tuple[str, object]] = []
    for addr, mport, pct in r.mirror:
        items.append(("m", f"{f'[{addr}]' if ':' in addr else addr}:{mport}:{pct}"))
    if r.backends:
        ws = [(up or UNRESOLVED, w) for up, w in r.backends if w > 0]
        items += [("w", f"{up}:{w}") for up, w in ws or [(UNRESOLVED, 1)]]
    if r.redirect is not None:
        scheme, host, rport, full, status = r.redirect
        items += [("rc", status), ("lp", port)] + [(k, v) for k, v in (
            ("rs", scheme), ("rh", host), ("rp", rport or ""), ("rf", full), ("rx", r.redirect_prefix)) if v]
        if https:
            items.append(("tls", 1))
    for op, name, val in r.req_headers:
        items.append(("h" + op[0], f"{name}:{val}"))  # hs / ha / hr
    for op, name, val in r.resp_headers:
        items.append(("p" + op[0], f"{name}:{val}"))
    if r.rewrite_host:
        items.append(("uh", r.rewrite_host))
    if r.rewrite_path is not None:
        items.append(("uf" if r.rewrite_path[0] == "ReplaceFullPath" else "ux", r.rewrite_path[1]))
    if r.redirect_prefix or (r.rewrite_path is not None and r.rewrite_path[0] != "ReplaceFullPath"):
        items.append(("mp", r.path.rstrip("/")))
    if r.timeout_ms:
        items.append(("t", r.timeout_ms))
    return "".join(f"&{k}={_enc(v)}" for k, v in items)


def stem(port: int, name: str) -> str:
    return f"gw{port}-{name}"


def build(frontends: list[tuple[int, bool, Table]]) -> Maps:
    """Every map's entries for the HTTP frontends ``(port, https, table)``."""
    out: Maps = {}
    for port, https, table in frontends:
        groups = map_groups(table)
        m = {n: out.setdefault(stem(port, n), {}) for n in NAMES}
        for r in table.routes:
            if r.host:
                m["hosts"].setdefault(r.host, r.host)
        for rid, r in zip(route_ids(port, table, groups), table.routes, strict=True):
            if rid in m["routes"]:
                continue  # the same host, type and path again: the first (older) route wins
            m["routes"][rid] = r.upstream if r.upstream and not r.backends else UNRESOLVED
            if s := spec(r, port, https):
                m["spec"][rid] = s
            if r.host in groups:
                (m["exact"] if r.kind == EXACT else m["prefix"])[(r.host or NO_HOST) + key_path(r)] = rid
    return out


def ops(old: Maps, new: Maps, path: dict[str, str]) -> list[str]:
    """Runtime API commands turning the running maps ``old`` into ``new`` (``path``: each stem's file
    as HAProxy loaded it). What makes a route reachable is added after, and removed before, what it
    needs (its backend and spec), so no request meets a half-installed route."""
    def kind(s: str) -> str:
        return s.rsplit("-", 1)[1]

    def changes(reach: bool, adding: bool) -> list[str]:
        out = []
        def rank(s: str) -> tuple[int, int, str]:
            k = kind(s)
            return (REACH.index(k) if k in REACH else -1, NAMES.index(k), s)
        for s in sorted(set(old) | set(new), key=rank, reverse=not adding):
            if (kind(s) in REACH) != reach or s not in path:
                continue
            o, n = old.get(s, {}), new.get(s, {})
            if adding:
                out += [f"{'set' if k in o else 'add'} map {path[s]} {_word(k)} {_word(v)}"
                        for k, v in n.items() if o.get(k) != v]
            else:
                out += [f"del map {path[s]} {_word(k)}" for k in o if k not in n]
        return out
    return changes(True, False) + changes(False, True) + changes(True, True) + changes(False, False)
