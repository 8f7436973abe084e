"""An update that moves no field keeps the stored managedFields: the same bytes as rendering them
again, and ``_diff``'s skip of equal subtrees finds what the full walk finds."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicenet.api import apply, resources
from servicenet.api.pb import types
from tests.api.test_pb_codec import REALISTIC, _obj_strategy


def _both(before: dict[str, Any] | None, after: dict[str, Any], manager: str, now: str,
          subresource: str = "") -> tuple[bytes, bytes]:
    kw: dict[str, Any] = {"api_version": after["apiVersion"], "now": now, "kind": after["kind"], "subresource": subresource}
    fast = apply.update_managed_fields(before, after, manager, **kw)
    slow = apply.update_managed_fields(before, after, manager, reuse=False, **kw)
    return orjson.dumps(fast), orjson.dumps(slow)


def _lease(renew: str) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "n1", "namespace": "kube-node-lease", "uid": "u1"},
            "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40, "renewTime": renew}}


def test_lease_renew_keeps_the_entry_and_its_time() -> None:
    cur = apply.update_managed_fields(None, _lease("t0"), "kubelet", api_version="coordination.k8s.io/v1",
                                      now="T0", kind="Lease")
    for i in range(1, 4):
        nxt = {**_lease(f"t{i}"), "metadata": cur["metadata"]}
        fast, slow = _both(cur, nxt, "kubelet", f"T{i}")
        assert fast == slow
        cur = orjson.loads(fast)
    assert [e["time"] for e in cur["metadata"]["managedFields"]] == ["T0"]  # no field moved: time kept


def test_a_second_manager_and_field_moves_render_anew() -> None:
    pod = copy.deepcopy(next(o for o in REALISTIC if o["kind"] == "Pod"))
    cur = apply.update_managed_fields(None, pod, "creator", api_version="v1", now="T0", kind="Pod")
    steps: list[tuple[str, str, Any]] = [
        ("kubelet", "status", lambda o: o.setdefault("status", {}).update(message="m1")),  # a new field: moved
        ("kubelet", "status", lambda o: o["status"].update(message="m2")),  # its own field: kept
        ("creator", "", lambda o: o["metadata"].setdefault("labels", {}).update(a="1")),  # new label: moved
        ("other", "", lambda o: o["metadata"]["labels"].update(a="2")),  # takes the creator's field: moved
        ("creator", "", lambda o: o["metadata"]["labels"].pop("a")),  # removal: moved
        ("creator", "", lambda o: None),  # nothing at all: kept
    ]
    for i, (manager, sub, change) in enumerate(steps):
        nxt = copy.deepcopy(cur)
        change(nxt)
        fast, slow = _both(cur, nxt, manager, f"S{i}", sub)
        assert fast == slow, (manager, sub)
        cur = orjson.loads(fast)
    # "other" owned only the label, which went away; the kubelet's entry dates from its first write,
    # the creator's from its last field added (a removal keeps the time)
    assert {e["manager"]: e["time"] for e in cur["metadata"]["managedFields"]} == {"creator": "S2", "kubelet": "S0"}


def test_the_stored_list_is_copied_not_shared() -> None:
    cur = apply.update_managed_fields(None, _lease("t0"), "k", api_version="coordination.k8s.io/v1", now="T0", kind="Lease")
    out = apply.update_managed_fields(cur, _lease("t1"), "k", api_version="coordination.k8s.io/v1", now="T1", kind="Lease")
    assert out["metadata"]["managedFields"] == cur["metadata"]["managedFields"]
    out["metadata"]["managedFields"][0]["fieldsV1"]["x"] = {}
    assert "x" not in cur["metadata"]["managedFields"][0]["fieldsV1"]


def _diff_full(kind: str, old: Any, new: Any, path: apply.Path = (), names: tuple[str, ...] = ()) -> tuple[set[Any], set[Any]]:
    """The walk without the equal-subtree skip (the oracle)."""
    changed: set[Any] = set()
    removed: set[Any] = set()
    old_children = {pe: (v, n) for pe, v, n, _ in apply._children(kind, old, names)}
    new_children = {pe: (v, n) for pe, v, n, _ in apply._children(kind, new, names)}
    for pe, (nv, n) in new_children.items():
        p = (*path, pe)
        if pe not in old_children:
            apply._all_paths_into(kind, nv, p, n, changed)
            continue
        ov = old_children[pe][0]
        if apply._is_container(kind, nv, n) and apply._is_container(kind, ov, n) and type(nv) is type(ov):
            c, r = _diff_full(kind, ov, nv, p, n)
            changed |= c
            removed |= r
        elif ov != nv:
            changed.add(p)
    for pe, (ov, n) in old_children.items():
        if pe not in new_children:
            apply._all_paths_into(kind, ov, (*path, pe), n, removed)
    return changed, removed


def _mix(a: dict[str, Any], b: dict[str, Any], picks: list[bool]) -> dict[str, Any]:
    """``a`` with some of its top-level and second-level values taken from ``b``."""
    out = copy.deepcopy(a)
    i = 0
    for k in sorted(set(a) | set(b)):
        i += 1
        take = picks[i % len(picks)] if picks else False
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            for ck in sorted(set(a[k]) | set(b[k])):
                i += 1
                if picks[i % len(picks)] and ck in b[k]:
                    out[k][ck] = copy.deepcopy(b[k][ck])
        elif take and k in b:
            out[k] = copy.deepcopy(b[k])
    return out


@pytest.mark.parametrize("kind", list(resources.all_resources()), ids=[r.kind for r in resources.all_resources()])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_generated_updates(kind: resources.ResourceInfo, data: st.DataObject) -> None:
    name = types.message_for(kind.api_version, kind.kind)
    assert name is not None
    strat = _obj_strategy(types.descriptor(name), 3)
    head = {"apiVersion": kind.api_version, "kind": kind.kind}
    a = {**head, **data.draw(strat)}
    b = {**head, **data.draw(strat)}
    picks = data.draw(st.lists(st.booleans(), min_size=1, max_size=8))
    new = _mix(a, b, picks)
    assert apply._diff(kind.kind, a, new) == _diff_full(kind.kind, a, new)
    cur = apply.update_managed_fields(None, a, "one", api_version=kind.api_version, now="T0", kind=kind.kind)
    manager = data.draw(st.sampled_from(["one", "two"]))
    fast, slow = _both(cur, {**new, "metadata": {**(new.get("metadata") or {}),
                                                 "managedFields": cur["metadata"].get("managedFields")}}, manager, "T1")
    assert fast == slow
