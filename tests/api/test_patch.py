from __future__ import annotations

import json

import pytest

from servicenet.api.errors import ApiStatusError
from servicenet.api.patch import apply_patch, json_merge_patch

CM = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}},
      "data": {"x": "1", "y": "2"}}
SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
       "spec": {"ports": [{"port": 80, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]}}


def b(o: object) -> bytes:
    return json.dumps(o).encode()


def test_json_patch_ops() -> None:
    ops = [{"op": "replace", "path": "/data/x", "value": "9"}, {"op": "remove", "path": "/data/y"},
           {"op": "add", "path": "/metadata/labels/b", "value": "2"}, {"op": "test", "path": "/data/x", "value": "9"}]
    out = apply_patch("ConfigMap", CM, b(ops), "application/json-patch+json")
    assert out["data"] == {"x": "9"} and out["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert CM["data"] == {"x": "1", "y": "2"}


@pytest.mark.parametrize(
    ("ops", "code"),
    [
        ([{"op": "remove", "path": "/data/nope"}], 422),
        ([{"op": "test", "path": "/data/x", "value": "2"}], 422),
        ([{"op": "replace", "path": "/spec/a/b", "value": 1}], 422),
        ([{"op": "frobnicate", "path": "/data"}], 400),
        ({"op": "add"}, 400),
    ],
)
def test_json_patch_errors(ops: object, code: int) -> None:
    with pytest.raises(ApiStatusError) as ei:
        apply_patch("ConfigMap", CM, b(ops), "application/json-patch+json")
    assert ei.value.code == code


def test_merge_patch_rfc7386() -> None:
    out = apply_patch("Service", SVC, b({"metadata": {"labels": {"n": "1"}}, "spec": {"ports": [{"port": 1}]}}),
                      "application/merge-patch+json")
    assert out["spec"]["ports"] == [{"port": 1}]  # lists replaced, never merged
    assert out["metadata"] == {"name": "web", "labels": {"n": "1"}}
    out = apply_patch("ConfigMap", CM, b({"data": {"x": None, "z": "3"}}), "application/merge-patch+json; charset=utf-8")
    assert out["data"] == {"y": "2", "z": "3"}
    # RFC 7386 appendix examples
    assert json_merge_patch({"a": "b"}, {"a": "c"}) == {"a": "c"}
    assert json_merge_patch({"a": [{"b": "c"}]}, {"a": [1]}) == {"a": [1]}
    assert json_merge_patch({"e": None}, {"a": 1}) == {"e": None, "a": 1}
    assert json_merge_patch({}, {"a": {"bb": {"ccc": None}}}) == {"a": {"bb": {}}}
    assert json_merge_patch({"a": "foo"}, "bar") == "bar"


def test_strategic_dispatch() -> None:
    out = apply_patch("Service", SVC, b({"spec": {"ports": [{"port": 80, "name": "http"}]}}),
                      "application/strategic-merge-patch+json")
    assert out["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "name": "http"}, {"port": 443, "protocol": "TCP"}]


class _CrdInfo:
    kind = "Widget"
    builtin = False


def test_errors() -> None:
    with pytest.raises(ApiStatusError) as ei:
        apply_patch("Service", SVC, b({}), "text/plain")
    assert (ei.value.code, ei.value.reason) == (415, "UnsupportedMediaType")
    with pytest.raises(ApiStatusError) as ei:
        apply_patch(_CrdInfo(), {"kind": "Widget"}, b({}), "application/strategic-merge-patch+json")
    assert ei.value.code == 415
    with pytest.raises(ApiStatusError) as ei:
        apply_patch("Service", SVC, b"{not json", "application/merge-patch+json")
    assert (ei.value.code, ei.value.reason) == (400, "BadRequest")
    with pytest.raises(ApiStatusError) as ei:
        apply_patch("Service", SVC, b("[1]"), "application/merge-patch+json")
    assert ei.value.code == 400
