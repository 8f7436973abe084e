"""Patching the table for a few changed Ingresses (pure) gives what a full compile gives: a random
walk of creates, edits and deletes over shared hosts (conflicts, TLS, a rule-group annotation, a
canary now and then), each step checked against ``compile_table`` and ``maps.build``."""

from __future__ import annotations

import random
from typing import Any

from servicenet.ingress import incremental, maps
from servicenet.ingress.core import Inputs, compile_table
from servicenet.ingress.model import Table

from .objects import CLASS, ingress, path, rule, service

HOSTS = ["a.test", "b.test", "c.test", "d.test", "e.test", "f.test", "*.w.test", ""]
PATHS = ["/", "/x", "/x/y", "/yy", "/zz", "/a/b", "/q"]


def _random_ingress(rnd: random.Random, name: str, rv: int) -> dict[str, Any]:
    rules = []
    for host in rnd.sample(HOSTS, rnd.randint(1, 2)):
        ps = [path(p, f"s{rnd.randint(0, 2)}", 80, rnd.choice(["Prefix", "Exact"])) for p in rnd.sample(PATHS, 2)]
        rules.append(rule(host, *ps))
    ann = {}
    roll = rnd.random()
    if roll < 0.02:
        ann = {"nginx.ingress.kubernetes.io/canary": "true", "nginx.ingress.kubernetes.io/canary-weight": "10"}
    elif roll < 0.12:
        ann = {"nginx.ingress.kubernetes.io/whitelist-source-range": "10.0.0.0/8"}
    elif roll < 0.25:
        ann = {"nginx.ingress.kubernetes.io/proxy-body-size": "5m"}
    ing = ingress(name, rules, annotations=ann, created=f"2026-01-01T00:00:{int(name[1:]):02d}Z",
                  tls=[{"hosts": ["a.test"]}] if rnd.random() < 0.2 else None)
    ing["metadata"]["resourceVersion"] = str(rv)
    return ing


def _same(patched: Table, full: Table) -> None:
    assert patched.ingresses == full.ingresses
    assert patched.certs == full.certs and patched.default_upstream == full.default_upstream
    assert set(patched.problems) == set(full.problems)
    # the same routes, in the same order up to ties in precedence (disjoint paths of one length)
    assert sorted(map(repr, patched.routes)) == sorted(map(repr, full.routes))
    assert [(r.host, len(r.path.rstrip("/"))) for r in patched.routes] == \
        [(r.host, len(r.path.rstrip("/"))) for r in full.routes]


def test_patches_equal_full_compiles_on_a_random_walk() -> None:
    rnd = random.Random(7)
    svcs = {f"default/s{i}": service(f"s{i}", [("http", 80)]) for i in range(3)}
    for svc in svcs.values():
        svc["metadata"]["resourceVersion"] = "1"  # versions let the compile memoize (as in a cluster)
    cache: dict[Any, Any] = {}
    objs: dict[str, dict[str, Any]] = {}

    def inputs() -> Inputs:
        return Inputs((CLASS,), tuple(objs.values()), svcs, {}, {}, cache=cache)

    def versions() -> dict[str, str]:
        return {f"default/{k}": o["metadata"]["resourceVersion"] for k, o in objs.items()}

    table, compiled = compile_table(inputs()), versions()
    m = maps.build(table)
    state: incremental.State | None = None
    patched = 0
    for step in range(400):
        names = {f"i{rnd.randint(0, 11)}" for _ in range(rnd.choice([1, 1, 1, 2]))}
        for name in sorted(names):
            if name in objs and rnd.random() < 0.25:
                del objs[name]
            else:
                objs[name] = _random_ingress(rnd, name, 10 * step + len(name))
        if state is None:  # as the controller: built when first needed, from the versions compiled
            state = incremental.state_of(table, inputs(), compiled)
        before = dict(state.per_host) if state else {}
        p = incremental.patch(state, inputs(), {f"default/{n}": objs.get(n) for n in names}) if state else None
        delta = incremental.map_delta(state, before, p, table.default_upstream) if state and p else None
        full = compile_table(inputs())
        if p is not None and delta is not None:
            _same(p.table, full)
            m = incremental.apply_delta(m, *delta)
            assert m == maps.build(full)
            table = p.table
            patched += 1
        else:
            state, table, m = None, full, maps.build(full)
        compiled = versions()
    assert patched > 50, patched  # the fast path is taken often (conflicts and canaries are frequent here)
