"""The watch hub's fan-out by cached per-resource routes delivers exactly what matching every
prefix against every key would: same events, same order, for any mix of prefixes and batches."""

from __future__ import annotations

import random

from servicenet.store import ADDED, Event, Record
from servicenet.store.watch import Watch, WatchHub, _resource_root

KEYS = [
    "/registry/core/configmaps/a/x", "/registry/core/configmaps/b/y", "/registry/core/configmaps/ab/z",
    "/registry/core/namespaces/a", "/registry/core/pods/a/p", "/registry/apps/deployments/a/d",
    "/registry/rbac.authorization.k8s.io/roles/a/r", "/registry/x", "/other/key", "/registry/core",
]
PREFIXES = [
    "", "/", "/registry/", "/registry/core/", "/registry/core/configmaps/", "/registry/core/configmaps/a/",
    "/registry/core/configmaps/a", "/registry/core/configmaps/a/x", "/registry/core/namespaces/",
    "/registry/apps/", "/registry/rbac.authorization.k8s.io/", "/registry/co", "/registry/x",
    "/registry/core/configmaps/ab/", "/other/",
]


def test_resource_root() -> None:
    assert _resource_root("/registry/core/configmaps/a/x") == "/registry/core/configmaps/"
    assert _resource_root("/registry/core/namespaces/a") == "/registry/core/namespaces/"
    assert _resource_root("/registry/core") == "/registry/core"
    assert _resource_root("/registry/x") == "/registry/x"


def _drain(w: Watch) -> list[int]:
    out = []
    while w.pending:
        out.append(w._buf.popleft().revision)
    return out


def test_routes_deliver_what_prefix_matching_would() -> None:
    rnd = random.Random(13)
    for trial in range(200):
        hub = WatchHub()
        watches: list[Watch] = []
        expected: dict[int, list[int]] = {}
        rev = 0
        for _ in range(30):
            if rnd.random() < 0.3 or not watches:  # watchers come and go between batches
                w = hub.add(rnd.choice(PREFIXES), [], 10_000)
                watches.append(w)
                expected[id(w)] = []
            if watches and rnd.random() < 0.15:
                gone = watches.pop(rnd.randrange(len(watches)))
                gone.close()
            batch = []
            for _k in range(rnd.choice([1, 1, 1, 2, 5])):
                rev += 1
                batch.append(Event(ADDED, Record(rnd.choice(KEYS), b"{}", rev, rev), None))
            hub.publish(batch)
            for w in watches:
                expected[id(w)].extend(e.revision for e in batch if e.record.key.startswith(w.prefix))
        for w in watches:
            assert _drain(w) == expected[id(w)], (trial, w.prefix)


def test_a_watcher_closed_during_fan_out_and_a_reused_prefix() -> None:
    hub = WatchHub()
    a = hub.add("/registry/core/configmaps/", [], 1)  # overflows on the second event
    b = hub.add("/registry/core/configmaps/", [], 10)
    ev = [Event(ADDED, Record(f"/registry/core/configmaps/n/c{i}", b"{}", i, i), None) for i in (1, 2, 3)]
    hub.publish(ev[:1])
    hub.publish(ev[1:2])  # a overflows and leaves the hub in the middle of the fan-out
    assert a.closed and b.pending == 2 and len(hub) == 1
    b.close()
    assert len(hub) == 0
    c = hub.add("/registry/core/configmaps/", [], 10)  # same prefix again: a fresh route
    hub.publish(ev[2:])
    assert _drain(c) == [3]
