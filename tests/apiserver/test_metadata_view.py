"""The garbage collector's metadata-only view of a stored object equals the full decode's metadata
(without managedFields), and anything not written the usual way falls back to the full decode."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from servicenet.apiserver.responses import metadata_view
from servicenet.store import Record
from servicenet.store._plan import encode_at
from tests.api.test_pb_codec import REALISTIC


def _rec(obj: dict[str, Any], rev: int = 77) -> Record:
    return Record("/registry/x/y", encode_at(obj, rev), rev, rev)


def _want(rec: Record) -> dict[str, Any]:
    md = dict(orjson.loads(rec.value)["metadata"])
    md.pop("managedFields", None)
    return md


@pytest.mark.parametrize("obj", REALISTIC, ids=[o["kind"] for o in REALISTIC])
def test_metadata_view_of_every_kind(obj: dict[str, Any]) -> None:
    md = {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}  # as a write stores it
    rec = _rec({**obj, "metadata": md})
    got = metadata_view(rec)
    assert "managedFields" not in got["metadata"]  # the metadata-only path, not the fallback
    assert got["metadata"] == _want(rec)


def test_tricky_layouts_fall_back_or_decode_right() -> None:
    base = {"apiVersion": "v1", "kind": "ConfigMap"}
    cases = [
        # a nested object whose text looks like the metadata's end
        {**base, "metadata": {"name": "a", "annotations": {"resourceVersion": "77"},
                              "managedFields": [{"manager": "m", "fieldsV1": {"f:data": {}}}]}},
        # the same in a label, and a quote-and-brace string
        {**base, "metadata": {"name": "b", "labels": {"resourceVersion": "77"}, "annotations": {"x": '"}]"'}}},
        # spec before metadata: a template's metadata must not be taken for the object's
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "spec": {"template": {"metadata": {"name": "tmpl"}}},
         "metadata": {"name": "rs", "uid": "u1", "ownerReferences": [{"uid": "o1", "name": "d"}]}},
        # resourceVersion sent by the client keeps its place: not last in metadata
        {**base, "metadata": {"resourceVersion": "5", "name": "c", "uid": "u2"}},
        # escapes in kind or apiVersion
        {"apiVersion": "v1", "kind": 'Con"fig', "metadata": {"name": "d"}},
        # no metadata
        {**base, "data": {"k": "v"}},
    ]
    for obj in cases:
        rec = _rec(obj)
        got = metadata_view(rec).get("metadata")
        assert {k: v for k, v in (got or {}).items() if k != "managedFields"} == _want(rec), obj
