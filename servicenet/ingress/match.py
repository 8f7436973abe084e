"""The routing table's meaning, as a function (pure): which route a request takes.

The HAProxy renderer must produce exactly this behaviour; tests run the same tables through both.
"""

from __future__ import annotations

import re

from servicenet.ingress.core import host_matches, prefix_match
from servicenet.ingress.model import EXACT, PREFIX, Route, Table


def host_group(table: Table, host: str) -> str | None:
    """The rule host a request's Host selects: exact, then one-label wildcard, then no-host rules."""
    host = host.split(":", 1)[0].lower()
    hosts = {r.host for r in table.routes}
    if host in hosts:
        return host
    labels = host.split(".")
    for k in range(1, min(table.wildcard_labels, len(labels) - 1) + 1):
        if all(labels[:k]) and "*." + ".".join(labels[k:]) in hosts:
            return "*." + ".".join(labels[k:])
    return "" if "" in hosts else None


def path_matches(r: Route, path: str) -> bool:
    if r.kind == EXACT:
        return path == r.path
    if r.kind == PREFIX:
        return prefix_match(r.path, path)
    return re.match(r.path, path, re.I if r.case_insensitive else 0) is not None


def _value_matches(typ: str, want: str, got: str | None) -> bool:
    if got is None:
        return False
    return got == want if typ == "Exact" else re.search(want, got) is not None


def route_for(table: Table, host: str, path: str, method: str = "GET", headers: dict[str, str] | None = None,
              query: dict[str, str] | None = None) -> Route | None:
    """The first route of the selected host group whose path (and method, header and query
    matches) match; None means the default backend."""
    g = host_group(table, host)
    if g is None:
        return None
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    for r in table.routes:
        if r.host != g or not path_matches(r, path) or (r.method and r.method != method):
            continue
        if all(_value_matches(t, v, hdrs.get(n)) for n, t, v in r.headers) and all(
                _value_matches(t, v, (query or {}).get(n)) for n, t, v in r.query):
            return r
    return None


def backend_for(table: Table, host: str, path: str, headers: dict[str, str] | None = None) -> str:
    """Backend name ("" = 404 default) with header canaries applied (weights are random: not here)."""
    r = route_for(table, host, path)
    if r is None:
        return table.default_upstream
    for c in r.canaries:
        v = (headers or {}).get(c.header.lower()) if c.header else None
        if v is not None:
            if c.header_value and v == c.header_value or not c.header_value and v == "always":
                return c.upstream
            if not c.header_value and v == "never":
                return r.upstream
    return r.upstream


__all__ = ["backend_for", "host_group", "host_matches", "path_matches", "route_for"]
