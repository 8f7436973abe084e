"""servicenet.api.jsontree: the C copy and null test answer as the Python ones, and a copy shares no
container with its source."""

from __future__ import annotations

import os
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servicenet.api import jsontree

_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(allow_nan=False),
                  st.text(max_size=8))
trees = st.recursive(_leaf, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                    st.dictionaries(st.text(max_size=6), kids, max_size=4)),
                     max_leaves=30)


def test_the_c_forms_are_built_in_ci() -> None:
    if os.environ.get("CI") == "true":
        assert jsontree.FAST, "the C extension (servicenet/api/pb/_cpb.c) was not built"


def _containers(t: Any) -> list[Any]:
    if type(t) is dict:
        return [t, *(c for v in t.values() for c in _containers(v))]
    if type(t) is list:
        return [t, *(c for v in t for c in _containers(v))]
    return []


@settings(max_examples=300, deadline=None)
@given(trees)
def test_copy_is_equal_and_shares_no_container(tree: Any) -> None:
    for copy in (jsontree.copy, jsontree.copy_py):
        c = copy(tree)
        assert c == tree and orjson.dumps(c) == orjson.dumps(tree)  # same keys, order, types
        ids = {id(x) for x in _containers(tree)}
        assert not ids & {id(x) for x in _containers(c)}


def test_copy_of_a_pod_spec_is_independent() -> None:
    spec = {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}], "ports": [{"containerPort": 80}]}],
            "volumes": [], "nodeSelector": {"k": "v"}, "priority": 0, "x": None, "f": 1.5, "b": True}
    c = jsontree.copy(spec)
    c["containers"][0]["env"].append({"name": "Y"})
    c["nodeSelector"]["k2"] = "w"
    c["volumes"].append({"name": "v"})
    assert spec["containers"][0]["env"] == [{"name": "X", "value": "1"}]
    assert spec["nodeSelector"] == {"k": "v"} and spec["volumes"] == []
    assert c["containers"][0]["name"] is spec["containers"][0]["name"]  # leaves are shared


class _D(dict):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize("bad", [(1, 2), {1, 2}, _D(a=1), b"x", {"a": [object()]}, [{"k": (1,)}]])
def test_copy_refuses_what_json_cannot_hold(bad: Any) -> None:
    for copy in (jsontree.copy, jsontree.copy_py):
        with pytest.raises(TypeError):
            copy(bad)


def test_copy_refuses_a_tree_deeper_than_it_goes() -> None:
    deep: Any = 1
    for _ in range(150):
        deep = [deep]
    if jsontree.FAST:
        with pytest.raises(RecursionError):
            jsontree.copy(deep)
    assert jsontree.copy_py(deep) == deep


@pytest.mark.parametrize("text", [b"", b"nul", b"null", b'{"a":null}', b'{"nullable":1}', b"nulnull", b"n" * 5000,
                                  b"x" * 3000 + b"null", b"NULL"])
def test_has_null_agrees(text: bytes) -> None:
    assert jsontree.has_null(text) == jsontree.has_null_py(text) == (b"null" in text)
