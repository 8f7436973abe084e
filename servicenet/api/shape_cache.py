"""Per-object results that depend only on an object's shape, kept for the next object of that shape.

Objects written in bulk are alike: a ReplicaSet's pods, a Job's, a DaemonSet's share everything
but their names. Two costly steps of a write depend on which fields an object sets (and on the keys
of its lists), never on the values of its identity metadata:

* the unknown-field check (``fieldValidation``) of :func:`servicenet.api.schema.unknown_fields`;
* the FieldsV1 of a create's ``managedFields`` (:func:`servicenet.api.managed_create.create_managed_fields`),
  which leaves those metadata fields out anyway.

Both are kept here under a key made of the object's JSON with those metadata fields left out, so
the second pod of a ReplicaSet costs one ``orjson.dumps`` instead of two walks of the object. A key
is the whole remaining JSON: two objects share a result only when they are equal but for their
name, namespace, uid and timestamps. Pure functions and two bounded dicts; no I/O.
"""

from __future__ import annotations

import copyreg
from collections.abc import Mapping
from typing import Any

import orjson

from servicenet.api import managed_create, schema, spec_cache

# ObjectMeta fields that are plain scalars in the schema (nothing below them to check) and that a
# create's managedFields leave out: their values are never part of either result
_IDENTITY = frozenset({"name", "generateName", "namespace", "uid", "creationTimestamp", "resourceVersion",
                       "generation", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"})
MAX_ENTRIES = 512

_unknown: dict[tuple[str, str, bytes], tuple[str, ...]] = {}


def _reduce_fragment(f: orjson.Fragment) -> tuple[type[orjson.Fragment], tuple[bytes]]:
    return orjson.Fragment, (orjson.dumps(f),)


# A created object's FieldsV1 is an orjson.Fragment (below), and code after a create's managedFields
# may copy the object (e.g. the shared service-IP allocator's trial copies): copy.deepcopy and pickle
# find how to rebuild a Fragment here (orjson offers no copy of its own).
copyreg.pickle(orjson.Fragment, _reduce_fragment)
_fields: dict[tuple[str, str, str, bytes], bytes | None] = {}


def shape_key(obj: Mapping[str, Any]) -> bytes | None:
    """The object's JSON without its identity metadata, or None when it cannot be written (then
    nothing is kept: the caller computes the result)."""
    md = obj.get("metadata")
    if type(md) is dict and not _IDENTITY.isdisjoint(md):
        obj = {**obj, "metadata": {k: v for k, v in md.items() if k not in _IDENTITY}}
    spec_text = spec_cache.known_text(obj.get("spec"))
    if spec_text is not None:  # a pod create's defaulted spec: its text is known, not written again
        obj = {**obj, "spec": orjson.Fragment(spec_text)}
    try:
        return orjson.dumps(obj)
    except (TypeError, ValueError):  # nested too deeply, a key that is not a string: not kept
        return None


def _put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= MAX_ENTRIES:
        cache.clear()
    cache[key] = value


def unknown_fields(api_version: str, kind: str, obj: dict[str, Any]) -> list[str]:
    """:func:`servicenet.api.schema.unknown_fields`, kept per shape."""
    shape = shape_key(obj)
    if shape is None:
        return schema.unknown_fields(api_version, kind, obj)
    key = (api_version, kind, shape)
    hit = _unknown.get(key)
    if hit is None:
        hit = tuple(schema.unknown_fields(api_version, kind, obj))
        _put(_unknown, key, hit)
    return list(hit)


def create_managed_fields(obj: dict[str, Any], manager: str, *, api_version: str, now: str,
                          kind: str) -> list[dict[str, Any]]:
    """:func:`servicenet.api.managed_create.create_managed_fields`, its ``fieldsV1`` kept per shape as
    JSON text and handed out as an ``orjson.Fragment`` of it: FieldsV1 is an opaque JSON blob that
    a create only writes out (the store's ``orjson.dumps``, the protobuf encoder's raw field), so it
    is never decoded here, and an immutable fragment shares nothing that could be changed."""
    shape = shape_key(obj)
    if shape is None:
        return managed_create.create_managed_fields(obj, manager, api_version=api_version, now=now, kind=kind)
    key = (manager, api_version, kind, shape)
    try:
        fields = _fields[key]
    except KeyError:
        out = managed_create.create_managed_fields(obj, manager, api_version=api_version, now=now, kind=kind)
        fields = orjson.dumps(out[0]["fieldsV1"]) if out else None
        _put(_fields, key, fields)
    if fields is None:
        return []
    return [{"manager": manager, "operation": "Update", "apiVersion": api_version, "time": now,
             "fieldsType": "FieldsV1", "fieldsV1": orjson.Fragment(fields)}]
