"""The informer cache transform that drops managedFields (the controller manager's)."""

from __future__ import annotations

from servicenet.client import Cache, strip_managed_fields


def test_strip_managed_fields_leaves_the_event_object_alone() -> None:
    obj = {"kind": "Pod", "metadata": {"name": "p", "namespace": "d", "resourceVersion": "7",
                                       "managedFields": [{"manager": "m"}], "labels": {"a": "b"}}, "spec": {"x": 1}}
    out = strip_managed_fields(obj)
    assert out == {"kind": "Pod", "metadata": {"name": "p", "namespace": "d", "resourceVersion": "7",
                                               "labels": {"a": "b"}}, "spec": {"x": 1}}
    assert "managedFields" in obj["metadata"]  # the handlers still get the object as it came
    plain = {"metadata": {"name": "q"}}
    assert strip_managed_fields(plain) is plain
    cache = Cache()
    cache.upsert(out)
    assert "managedFields" not in cache.items["d/p"]["metadata"]
