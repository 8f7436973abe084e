"""The one-pass managedFields of a create equal what the general update bookkeeping computes."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.api import objects
from servicenet.api import apply, managed_create, resources
from servicenet.api.pb import types
from tests.api.test_pb_codec import REALISTIC, _obj_strategy


def _both(o: dict[str, Any]) -> tuple[bytes, bytes]:
    slow = apply.update_managed_fields(None, o, "mgr", "Update", api_version=o["apiVersion"], now="T",
                                       kind=o["kind"])["metadata"].get("managedFields", [])
    fast = managed_create.create_managed_fields(o, "mgr", api_version=o["apiVersion"], now="T", kind=o["kind"])
    return orjson.dumps(slow), orjson.dumps(fast)


@pytest.mark.parametrize("obj", REALISTIC + [objects.pod("p"), objects.service("s")],
                         ids=[o["kind"] for o in REALISTIC] + ["bench-pod", "bench-svc"])
def test_realistic(obj: dict[str, Any]) -> None:
    o = copy.deepcopy(obj)
    slow, fast = _both(o)
    assert slow == fast
    assert fast != b"[]"


def test_duplicate_list_keys_merge() -> None:
    o = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
         "spec": {"containers": [{"name": "c", "image": "a", "env": [{"name": "A", "value": "1"},
                                                                      {"name": "A", "valueFrom": {"x": 1}}]}]}}
    slow, fast = _both(o)
    assert slow == fast


@pytest.mark.parametrize("kind", list(resources.all_resources()), ids=[r.kind for r in resources.all_resources()])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_generated(kind: resources.ResourceInfo, data: st.DataObject) -> None:
    name = types.message_for(kind.api_version, kind.kind)
    assert name is not None
    o = {"apiVersion": kind.api_version, "kind": kind.kind, **data.draw(_obj_strategy(types.descriptor(name), 4))}
    slow, fast = _both(o)
    assert slow == fast
