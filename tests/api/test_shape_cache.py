"""Results kept per object shape equal the ones computed afresh, and are never shared between objects."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest

from bench.api import objects
from servicenet.api import managed_create, schema, shape_cache
from tests.api.test_pb_codec import REALISTIC


def _renamed(o: dict[str, Any], i: int) -> dict[str, Any]:
    c = copy.deepcopy(o)
    md = c.setdefault("metadata", {})
    md.update(name=f"other-{i}", namespace=f"ns-{i}", uid=f"u-{i}", creationTimestamp=f"2026-01-01T00:00:0{i}Z",
              resourceVersion=str(i), generation=i)
    return c


def _fresh(o: dict[str, Any]) -> bytes:
    return orjson.dumps(managed_create.create_managed_fields(o, "mgr", api_version=o["apiVersion"], now="T",
                                                             kind=o["kind"]))


def _kept(o: dict[str, Any]) -> bytes:
    return orjson.dumps(shape_cache.create_managed_fields(o, "mgr", api_version=o["apiVersion"], now="T",
                                                          kind=o["kind"]))


@pytest.mark.parametrize("obj", REALISTIC + [objects.pod("p"), objects.service("s")],
                         ids=[o["kind"] for o in REALISTIC] + ["bench-pod", "bench-svc"])
def test_managed_fields_equal_fresh_ones_for_the_same_shape(obj: dict[str, Any]) -> None:
    for i in range(3):  # a miss, then hits for objects that differ only in identity metadata
        o = _renamed(obj, i)
        assert _kept(o) == _fresh(o)


def test_a_different_shape_is_not_a_hit() -> None:
    a = objects.pod("a")
    b = copy.deepcopy(a)
    b["spec"]["containers"][0]["name"] = "other"  # a list key: another FieldsV1
    b["metadata"]["labels"]["extra"] = "x"
    assert _kept(a) == _fresh(a)
    assert _kept(b) == _fresh(b) != _fresh(a)


def test_kept_managed_fields_are_not_shared() -> None:
    o = objects.pod("a")
    first = shape_cache.create_managed_fields(o, "m", api_version="v1", now="T", kind="Pod")
    assert isinstance(first[0]["fieldsV1"], orjson.Fragment)  # immutable: nothing to change in place
    copied = copy.deepcopy(first)  # what code after a create may do (the shared allocator's trial copy)
    assert orjson.dumps(copied) == orjson.dumps(first) and copied[0]["fieldsV1"] is not first[0]["fieldsV1"]
    first[0]["fieldsV1"] = {"f:spec": {}}  # an entry replaced: the kept text is not affected
    first[0]["time"] = "changed"
    again = shape_cache.create_managed_fields(_renamed(o, 1), "m", api_version="v1", now="T", kind="Pod")
    assert orjson.dumps(again) == orjson.dumps(
        managed_create.create_managed_fields(o, "m", api_version="v1", now="T", kind="Pod"))


def test_kept_managed_fields_encode_in_protobuf_as_the_fresh_ones() -> None:
    from servicenet.api.pb import wire
    NOW = "2026-12-04T10:00:00Z"
    o = objects.pod("a")
    shape_cache.create_managed_fields(o, "m", api_version="v1", now=NOW, kind="Pod")  # kept
    kept = {**o, "metadata": {**o["metadata"], "managedFields": shape_cache.create_managed_fields(
        _renamed(o, 0), "m", api_version="v1", now=NOW, kind="Pod")}}
    fresh = {**o, "metadata": {**o["metadata"], "managedFields": managed_create.create_managed_fields(
        o, "m", api_version="v1", now=NOW, kind="Pod")}}
    assert isinstance(kept["metadata"]["managedFields"][0]["fieldsV1"], orjson.Fragment)
    assert wire.encode(kept) == wire.encode(fresh)


def test_unknown_fields_equal_fresh_ones() -> None:
    o = objects.pod("a")
    o["spec"]["bogus"] = 1
    o["spec"]["containers"][0]["ports"][1]["nope"] = {"x": 1}
    o["metadata"]["weird"] = True
    want = schema.unknown_fields("v1", "Pod", o)
    assert want == [".metadata.weird", ".spec.containers[0].ports[1].nope", ".spec.bogus"]
    for i in range(3):
        got = shape_cache.unknown_fields("v1", "Pod", _renamed(o, i))
        assert got == want
        got.append("mutated")  # the caller's list is its own
    clean = objects.pod("b")
    assert shape_cache.unknown_fields("v1", "Pod", clean) == [] == schema.unknown_fields("v1", "Pod", clean)


def test_unencodable_objects_are_computed_not_kept() -> None:
    deep: Any = "x"
    for _ in range(300):
        deep = {"a": deep}
    o = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}, "x": deep}
    before = len(shape_cache._unknown)
    assert shape_cache.unknown_fields("v1", "ConfigMap", o) == schema.unknown_fields("v1", "ConfigMap", o)
    assert len(shape_cache._unknown) == before


def test_protobuf_specs_kept_encode_and_decode_as_fresh_ones() -> None:
    from servicenet.api.pb import memo, wire

    was = wire.native_in_use()
    wire.use_native(False)  # the memos are the pure-Python paths' (the C paths keep nothing)
    try:
        pods = [objects.pod(f"p{i}") for i in range(3)]
        memo.clear()
        first = wire.encode(pods[0])
        assert any(m.kept for m in memo._all)  # sub-messages were kept
        for p in pods[1:]:
            body = wire.encode(p)
            memo.clear()
            assert body == wire.encode(p)  # a hit writes what a miss writes
        a = wire.decode(first).obj
        a["spec"]["containers"][0]["image"] = "mutated"  # the caller's dict is its own
        b = wire.decode(first).obj
        memo.clear()
        assert b == wire.decode(first).obj == pods[0]
    finally:
        wire.use_native(was)
