"""``metadata.managedFields`` of a create, built in one pass over the object.

Equal to ``apply.update_managed_fields(None, obj, manager, "Update", …)`` (the tests compare them on
realistic and generated objects of every served kind), without the path sets a general update needs:
everything a created object holds belongs to the creating manager.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from servicenet.api.apply import _ATOMIC_MAPS, _MAP_FIELDS, _NO_PATHS, _STRIPPED, _dumps, _is_atomic_map
from servicenet.api.apply import _elem_key as _apply_elem_key
from servicenet.api.smp import ListSpec, list_spec

__all__ = ["create_managed_fields"]


def create_managed_fields(obj: Mapping[str, Any], manager: str, *, api_version: str, now: str,
                          kind: str, subresource: str = "") -> list[dict[str, Any]]:
    """``metadata.managedFields`` after a create (``update_managed_fields(None, obj, …)``).

    Everything the object holds belongs to the creating manager, so its FieldsV1 is built straight
    from the object, without the path sets a general update needs.
    """
    tree: dict[str, Any] = {}
    for k, v in obj.items():
        if v is None or k in ("apiVersion", "kind"):
            continue
        pe = "f:" + k
        if k in ("metadata", "spec", "status") and isinstance(v, dict) and not _is_atomic_map(kind, (k,)):
            kids: dict[str, Any] = {}
            for ck, cv in v.items():
                if cv is None or (k == "metadata" and ("f:metadata", "f:" + ck) in _STRIPPED):
                    continue
                sub = _added(kind, cv, True, (k, ck))
                if sub is not None:
                    kids["f:" + ck] = sub
            if kids:
                tree[pe] = _sorted(kids)
        elif k in ("metadata", "spec", "status"):
            tree[pe] = {}  # not a struct where the zero object has one: changed as a whole
        else:
            sub = _added(kind, v, True, (k,))
            if sub is not None:
                tree[pe] = sub
    if not tree:
        return []
    rec: dict[str, Any] = {"manager": manager, "operation": "Update", "apiVersion": api_version, "time": now,
                           "fieldsType": "FieldsV1", "fieldsV1": _sorted(tree)}
    if subresource:
        rec["subresource"] = subresource
    return [rec]


def _sorted(kids: dict[str, Any]) -> dict[str, Any]:
    # one node's children are all fields (``f:``) or all list elements (``k:``/``v:``/``i:``), for
    # which plain string order is ``_pe_sort``'s order
    return kids if len(kids) < 2 else {pe: kids[pe] for pe in sorted(kids)}


_F: dict[str, str] = {}  # "f:" + field name, built once per name
_SCALARS = (str, int, bool, float)


def _f(k: str) -> str:
    pe = _F.get(k)
    if pe is None:
        pe = _F[k] = "f:" + k
    return pe


def _added(kind: str, value: Any, named: bool, names: tuple[str, ...]) -> dict[str, Any] | None:
    """FieldsV1 of a node added by a write and everything below it (``_all_paths_into`` + ``_finish``);
    None when neither the node nor anything below is a member. ``named``: reached by a field name.

    Scalars below a node are members without anything under them (``{}``), written in place here
    instead of one call each: most nodes of an object are scalars."""
    tv = type(value)
    if tv is dict:
        if not value or names in _ATOMIC_MAPS.get(kind, _NO_PATHS):
            return {}  # a member with nothing tracked below it
        member = not named or names[-1] in _MAP_FIELDS
        kids: dict[str, Any] = {".": {}} if member else {}
        for k in sorted(value) if len(value) > 1 else value:
            v = value[k]
            if v is None:
                continue
            if type(v) in _SCALARS:
                kids[_F.get(k) or _f(k)] = {}
                continue
            sub = _added(kind, v, True, (*names, k))
            if sub is not None:
                kids[_F.get(k) or _f(k)] = sub
        if member:
            return kids if len(kids) > 1 else {}
        return kids or None
    kids = {}
    if tv is list or isinstance(value, list):
        spec = list_spec(kind, names)
        if spec is None or spec.ssa == "atomic" or not value:
            return {}
        if spec.ssa == "set":
            for e in value:
                pe = "v:" + _dumps(e)
                sub = {} if type(e) in _SCALARS else _added(kind, e, False, names)
                if sub is not None:
                    kids[pe] = _union(kids[pe], sub) if pe in kids else sub
        else:
            for e in value:
                pe = _elem_key(spec, e)
                if pe is None:
                    continue
                sub = _added(kind, e, False, names)
                if sub is not None:
                    kids[pe] = _union(kids[pe], sub) if pe in kids else sub
        if not kids:
            return {}
        return {".": {}, **_sorted(kids)}
    if isinstance(value, dict):  # a dict subclass: the general path
        return _added(kind, dict(value), named, names)
    return {}


def _elem_key(spec: ListSpec, elem: Any) -> str | None:
    """``apply._elem_key`` with the usual case (string keys, a name or a port) written directly."""
    keys = spec.keys
    if type(elem) is dict and len(keys) == 1:
        v = elem.get(keys[0])
        if type(v) is str:
            return "k:" + orjson.dumps({keys[0]: v}).decode()
    return _apply_elem_key(spec, elem)


def _union(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two FieldsV1 subtrees of the same path (duplicate list keys) merged."""
    if not a or not b:
        # a bare member ({}) merged with a subtree: the subtree, now marked a member
        rest = a or b
        return {".": {}, **{k: v for k, v in rest.items() if k != "."}} if rest else {}
    kids = {k: (_union(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)))
            for k in {*a, *b} if k != "."}
    out: dict[str, Any] = {".": {}} if "." in a or "." in b else {}
    out.update(_sorted(kids))
    return out
