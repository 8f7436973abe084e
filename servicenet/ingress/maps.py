"""Routes as HAProxy map entries (pure): what lets a route change go through the runtime API.

A *simple* route (Exact or Prefix path, no method/header/query match, no per-route rule such as a
rewrite, an allow-list, a canary, weights or a Gateway filter) needs no line of its own in the
configuration: it is a map entry, and HAProxy's runtime API adds, changes and removes map entries
without a reload (``add map`` / ``set map`` / ``del map``).

Lookups, per request (the renderer writes these rules once):

- ``hosts``: the request host → its host group (the rule host itself; the wildcard form ``*.a.b``
  on a wildcard hit; no entry: ``@``, the group of the rules without a host);
- ``exact``: ``<group><path>/`` → route id (``map_str``: an exact key; the same key as the prefix
  lookup's, so the request key is built once);
- ``prefix``: ``<group><path>/`` → route id (``map_beg``, which HAProxy indexes as a prefix tree
  and answers with the *longest* matching key). A Prefix path ``/foo`` is the key ``<group>/foo/``:
  it matches ``/foo`` and ``/foo/bar`` but not ``/foobar``, element-wise as Kubernetes wants;
- ``routes``: route id → backend; ``redirect``: route id → 1 when the route redirects HTTP to HTTPS;
  ``body``: route id → its body limit in bytes.

This is the core's precedence exactly, which is why only groups made of simple routes use it: within
a host group the core orders routes longest path first, Exact before Prefix on a tie, and any Prefix
that matches a path is no longer than it, so "the exact entry, else the longest prefix entry" is
"the first route in table order". A group with any other route keeps one configuration rule per
route, in table order (a change there is structural and reloads).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import MISSING, dataclass, field, fields

from servicenet.ingress.model import EXACT, PREFIX, Route, Table

NAMES = ("hosts", "exact", "prefix", "routes", "redirect", "body")
NOT_FOUND = "be_default_404"
UNRESOLVED = "be_default_500"  # a Gateway API backendRef that does not resolve
NO_HOST = "@"  # the host group of the rules without a host (no DNS name is "@")


# the Route fields a map entry carries; any other field away from its default needs a rule of its own
# (a field added to Route later is "not simple" until the maps learn it)
MAP_FIELDS = frozenset({"host", "path", "kind", "upstream", "source", "tls", "ssl_redirect", "force_ssl_redirect",
                        "body_limit", "case_insensitive"})
_DEFAULTS = tuple((f.name, f.default) for f in fields(Route) if f.name not in MAP_FIELDS and f.default is not MISSING)
assert len(_DEFAULTS) == len(fields(Route)) - len(MAP_FIELDS), "every other Route field has a default"


def is_simple(r: Route) -> bool:
    return r.kind in (EXACT, PREFIX) and all(getattr(r, k) == v for k, v in _DEFAULTS)


_last: list[object] = [None, frozenset()]  # the last table and its map groups (computed for each user)


def map_groups(table: Table) -> frozenset[str]:
    """Hosts ("" for no host) whose routes are all simple: they live in the maps."""
    if _last[0] is table:
        return _last[1]  # type: ignore[return-value]
    bad = {r.host for r in table.routes if not is_simple(r)}
    out = frozenset(r.host for r in table.routes if r.host not in bad)
    _last[:] = [table, out]
    return out


def key_path(r: Route) -> str:
    """A route's key in the exact or prefix map, after its host group. Both end in "/", so that one
    request key (``<group><path>/``) serves both lookups: an Exact ``/foo`` is ``/foo/``, which only
    the request path ``/foo`` gives (appending "/" is one to one)."""
    return r.path + "/" if r.kind == EXACT else r.path.rstrip("/") + "/"


@functools.lru_cache(maxsize=1 << 17)
def _map_id(host: str, kind: str, kpath: str) -> str:
    return "m" + hashlib.sha1(f"{host}\0{kind}\0{kpath}".encode()).hexdigest()[:12]


def route_id(r: Route) -> str:
    """The id of a map route: the same host, type and path keep their id across tables."""
    return _map_id(r.host, r.kind, key_path(r))


def route_ids(table: Table, groups: frozenset[str] | None = None) -> tuple[str, ...]:
    """A stable id per route: ``m<hash>`` for map routes (the same host, type and path keep their id
    across tables, so a change elsewhere touches no entry of theirs), ``r<n>`` for the others (in
    table order among them)."""
    if _last_ids[0] is table:
        return _last_ids[1]  # type: ignore[return-value]
    groups = map_groups(table) if groups is None else groups
    out: list[str] = []
    n = 0
    for r in table.routes:
        if r.host in groups:
            out.append(route_id(r))
        else:
            out.append(f"r{n}")
            n += 1
    _last_ids[:] = [table, tuple(out)]
    return tuple(out)


_last_ids: list[object] = [None, ()]


@dataclass(frozen=True)
class Maps:
    """The contents of every map, each in precedence order (the order the files list them)."""

    hosts: dict[str, str] = field(default_factory=dict)
    exact: dict[str, str] = field(default_factory=dict)
    prefix: dict[str, str] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    redirect: dict[str, str] = field(default_factory=dict)
    body: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> dict[str, str]:
        out: dict[str, str] = getattr(self, name)
        return out


def build(table: Table, ids: tuple[str, ...] | None = None, groups: frozenset[str] | None = None) -> Maps:
    groups = map_groups(table) if groups is None else groups
    ids = ids or route_ids(table, groups)
    m = Maps()
    for r in table.routes:
        if r.host:
            m.hosts.setdefault(r.host, r.host)
    for rid, r in zip(ids, table.routes, strict=True):
        m.routes[rid] = r.upstream or table.default_upstream or NOT_FOUND
        for c in r.canaries:
            m.routes[rid + "c"] = c.upstream
        for k, (up, _) in enumerate(r.backends):
            m.routes[f"{rid}w{k}"] = up or UNRESOLVED
        if r.host not in groups:
            continue
        (m.exact if r.kind == EXACT else m.prefix).setdefault((r.host or NO_HOST) + key_path(r), rid)
        if r.force_ssl_redirect or (r.tls and r.ssl_redirect):
            m.redirect[rid] = "1"
        if r.body_limit is not None:
            m.body[rid] = str(r.body_limit)
    return m


def text(entries: dict[str, str]) -> str:
    return "".join(f"{k} {v}\n" for k, v in entries.items())


def _word(s: str) -> str:
    """A runtime API word: ';' separates commands and '\\' escapes (keys never hold spaces)."""
    return s.replace("\\", "\\\\").replace(";", "\\;")


def ops(old: Maps, new: Maps, path: dict[str, str]) -> list[str]:
    """Runtime API commands that turn the running maps ``old`` into ``new``. ``path`` names each map's
    file as HAProxy loaded it. Entries that make a route reachable go last when added and first when
    removed, so a request never meets a route whose backend or options are not in place yet."""
    def dels(name: str) -> list[str]:
        o, n = old.get(name), new.get(name)
        return [f"del map {path[name]} {_word(k)}" for k in o if k not in n]

    def sets(name: str) -> list[str]:
        o, n = old.get(name), new.get(name)
        out = []
        for k, v in n.items():
            if k not in o:
                out.append(f"add map {path[name]} {_word(k)} {_word(v)}")
            elif o[k] != v:
                out.append(f"set map {path[name]} {_word(k)} {_word(v)}")
        return out

    reach = ("exact", "prefix", "hosts")  # a host's entries are reachable once the host is
    attrs = ("routes", "redirect", "body")
    return ([c for n in reach[::-1] for c in dels(n)] + [c for n in attrs for c in sets(n)]
            + [c for n in reach for c in sets(n)] + [c for n in attrs for c in dels(n)])
