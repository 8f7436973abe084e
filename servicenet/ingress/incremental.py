"""A change of a few Ingresses applied to the last table without compiling the others (pure).

The full compile (``core.compile_table``) already reuses each unchanged Ingress's fragment, but it
still visits every Ingress, sorts every route and the renderer rebuilds every map: O(all Ingresses)
per change. When only Ingresses changed, and each changed one is *independent* — no route key it
has, had or gains is claimed by another Ingress (so no conflict starts or ends), no canary anywhere,
no defaultBackend, the same certificates — the new table is the old one with that Ingress's routes
swapped, which :func:`patch` computes in O(its routes + a sort of the route list). Anything else
answers None and the caller compiles in full; the result is the full compile's table up to the
order of routes that tie in precedence (disjoint paths of one length, where order has no meaning).

Map entries follow the same way (:func:`map_delta`) when the routes involved are *simple* and their
hosts hold no rule-group route (``maps.is_simple``): the change is then a few ``add/set/del map``
commands and the configuration's structure is untouched.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of
from servicenet.ingress import maps
from servicenet.ingress.core import Inputs, _age, _Compiler, _Fragment, _key, _order, is_ours, served_classes
from servicenet.ingress.model import EXACT, PREFIX, Route, Table


@dataclass
class State:
    """What :func:`patch` needs besides the table: each served Ingress's fragment and version, how
    many fragments claim each route key, and the routes per host."""

    table: Table
    frags: dict[str, tuple[str, _Fragment]]  # served Ingress key -> (resourceVersion, fragment)
    ages: dict[str, tuple[str, str]]
    claims: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    per_host: Counter[str] = field(default_factory=Counter)
    rule_hosts: frozenset[str] = frozenset()  # hosts with a route that is not a map entry


def state_of(table: Table, inp: Inputs, versions: dict[str, str]) -> State | None:
    """The state behind ``table``, compiled from ``inp`` when each served Ingress had the version in
    ``versions``: its fragments come from the compile's memo (None when one is missing, or when a
    canary exists: canaries attach across Ingresses)."""
    cache = inp.cache or {}
    frags: dict[str, tuple[str, _Fragment]] = {}
    claims: Counter[tuple[str, str, str]] = Counter()
    for k in table.ingresses:
        hit = cache.get(("frag", k))
        if hit is None or hit[0] != versions.get(k) or hit[1].canary is not None:
            return None
        frags[k] = hit
        claims.update(ref for what, ref, _ in hit[1].items if what == "route")
    ages = {k: ("", k) for k in frags}  # an Ingress gone from the inputs is deleted: patched away
    for ing in inp.ingresses:
        k = _key(ing)
        if k in frags:
            ages[k] = _age(ing)
    return State(table, frags, ages, claims, Counter(r.host for r in table.routes),
                 frozenset(r.host for r in table.routes if not maps.is_simple(r)))


def _fragment(inp: Inputs, ing: Obj) -> _Fragment:
    """The Ingress's fragment through the compile's memo (the same object a full compile would use)."""
    c = _Compiler(inp)
    name, rv = _key(ing), meta_of(ing).get("resourceVersion")
    hit = c.cache.get(("frag", name)) if rv else None
    if hit is not None and hit[0] == rv and all(c._unchanged(*d) for d in hit[1].deps):
        return hit[1]  # type: ignore[no-any-return]
    frag = c._fragment(ing)
    if rv and frag.memo:
        c.cache[("frag", name)] = (rv, frag)
    return frag


def _routes(f: _Fragment | None) -> list[Route]:
    return [f.routes[ref] for what, ref, _ in f.items if what == "route"] if f is not None else []


def _independent(f: _Fragment | None) -> bool:
    return f is None or (f.canary is None and all(what == "route" for what, _, _ in f.items))


def _route_key(r: Route) -> tuple[str, str, str]:
    """The core's key of a route (what conflicts are decided on)."""
    return (r.host, r.kind, (r.path.rstrip("/") or "/") if r.kind == PREFIX else r.path)


def _host_key(h: str) -> tuple[bool, bool, str]:
    return (h == "", h.startswith("*."), h)


@dataclass(frozen=True)
class Patch:
    table: Table
    removed: tuple[Route, ...]  # the changed Ingresses' routes before
    added: tuple[Route, ...]  # and after


def patch(state: State, inp: Inputs, changed: dict[str, Obj | None]) -> Patch | None:
    """The table after the Ingresses in ``changed`` (key -> the object now, None when deleted)
    changed, or None when a full compile is needed. ``state`` is updated in place on success."""
    ours, default = served_classes(inp.classes, inp.controller)
    new: dict[str, tuple[str, _Fragment] | None] = {}
    for k, ing in changed.items():
        served = ing is not None and is_ours(ing, ours, default) and not meta_of(ing).get("deletionTimestamp")
        new[k] = (str(meta_of(ing).get("resourceVersion")), _fragment(inp, ing)) \
            if served and ing is not None else None
    claims = state.claims.copy()
    for k, nf in new.items():
        of = state.frags.get(k)
        if not (_independent(of and of[1]) and _independent(nf and nf[1])):
            return None
        if of is not None and nf is not None and of[1].certs != nf[1].certs:
            return None
        if (of is None and nf is not None and nf[1].certs) or (nf is None and of is not None and of[1].certs):
            return None
        for _, ref, _ in (of[1].items if of else ()):
            claims[ref] -= 1
        for _, ref, _ in (nf[1].items if nf else ()):
            claims[ref] += 1
    removed = [r for k in new for r in _routes(state.frags[k][1] if k in state.frags else None)]
    added = [r for k, nf in new.items() for r in _routes(nf[1] if nf else None)]
    now = {_route_key(r) for r in added}
    if any(claims[k] != 1 for k in now) or any(claims[k] != 0 for k in {_route_key(r) for r in removed} - now):
        return None  # a route key another Ingress has too: a conflict starts (or ends) here
    names = {u.name for u in state.table.upstreams}
    if any(r.upstream and r.upstream not in names for r in added):
        return None  # a new backend: the configuration's structure changes
    t = state.table
    routes = [r for r in t.routes if r.source not in new] + added
    routes.sort(key=lambda r: (_host_key(r.host), _order(r)))
    for k, nf in new.items():
        if nf is None:
            state.frags.pop(k, None)
            state.ages.pop(k, None)
        else:
            state.frags[k] = nf
            state.ages[k] = _age(changed[k])  # type: ignore[arg-type]
    problems = [p for p in t.problems if f"{p.namespace}/{p.name}" not in new or p.kind != "Ingress"]
    for nf in new.values():
        if nf is not None:
            problems += nf[1].problems + [p for _, _, probs in nf[1].items for p in probs]
    table = replace(t, routes=tuple(routes), ingresses=tuple(sorted(state.frags, key=state.ages.__getitem__)),
                    problems=tuple(problems))
    state.table, state.claims = table, +claims
    state.per_host.subtract(r.host for r in removed)
    state.per_host.update(r.host for r in added)
    return Patch(table, tuple(removed), tuple(added))


def map_delta(state: State, before: dict[str, int], p: Patch, default_upstream: str
              ) -> tuple[maps.Maps, maps.Maps] | None:
    """The map entries the patch touches, before and after (``maps.ops`` turns them into commands);
    None when a route involved is not a map entry or lives in a rule group. ``before`` is the route
    count per host before the patch."""
    for r in p.removed + p.added:
        if not maps.is_simple(r) or r.host in state.rule_hosts:
            return None
    old, new = maps.Maps(), maps.Maps()
    for m, rs, count in ((old, p.removed, before), (new, p.added, state.per_host)):
        for r in rs:
            rid = maps.route_id(r)
            m.routes[rid] = r.upstream or default_upstream or maps.NOT_FOUND
            (m.exact if r.kind == EXACT else m.prefix)[(r.host or maps.NO_HOST) + maps.key_path(r)] = rid
            if r.force_ssl_redirect or (r.tls and r.ssl_redirect):
                m.redirect[rid] = "1"
            if r.body_limit is not None:
                m.body[rid] = str(r.body_limit)
        for h in {r.host for r in p.removed + p.added}:
            if h and count.get(h, 0) > 0:
                m.hosts[h] = h
    return old, new


def apply_delta(current: maps.Maps, old: maps.Maps, new: maps.Maps) -> maps.Maps:
    """``current`` with the entries of ``old`` replaced by those of ``new``."""
    out = maps.Maps()
    for n in maps.NAMES:
        d = dict(current.get(n))
        for k in old.get(n):
            d.pop(k, None)
        d.update(new.get(n))
        out.get(n).update(d)
    return out
