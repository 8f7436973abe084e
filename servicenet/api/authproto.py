"""Decoding of the protobuf bodies typed clients (kubectl ≥ 1.32) send for the identity APIs:
TokenRequest, TokenReview, SelfSubjectReview and the access reviews.

Field numbers follow ``kubernetes/api`` ``authentication/v1`` and ``authorization/v1``
``generated.proto``. The envelope is ``k8s\\x00`` + ``runtime.Unknown{typeMeta=1, raw=2}``.
Only the fields these requests carry are decoded; unknown fields are skipped.
"""

from __future__ import annotations

from typing import Any

from servicenet.api.wire import meta as meta_of

MAGIC = b"k8s\x00"

# message schema: field number -> (json name, type, repeated); type is "string", "int", "bool",
# or a nested schema name
_S = "string"
SCHEMAS: dict[str, dict[int, tuple[str, str, bool]]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta", False), 2: ("raw", "bytes", False)},
    "TypeMeta": {1: ("apiVersion", _S, False), 2: ("kind", _S, False)},
    "ObjectMeta": {1: ("name", _S, False), 2: ("generateName", _S, False), 3: ("namespace", _S, False)},
    "Review": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "Spec", False)},
    "Spec": {},  # replaced per kind
    "ResourceAttributes": {1: ("namespace", _S, False), 2: ("verb", _S, False), 3: ("group", _S, False),
                           4: ("version", _S, False), 5: ("resource", _S, False), 6: ("subresource", _S, False),
                           7: ("name", _S, False)},
    "NonResourceAttributes": {1: ("path", _S, False), 2: ("verb", _S, False)},
    "ExtraEntry": {1: ("key", _S, False), 2: ("value", "ExtraValue", False)},
    "ExtraValue": {1: ("items", _S, True)},
    "BoundObjectReference": {1: ("kind", _S, False), 2: ("apiVersion", _S, False), 3: ("name", _S, False),
                             4: ("uid", _S, False)},
}
SPECS: dict[str, dict[int, tuple[str, str, bool]]] = {
    "TokenRequest": {1: ("audiences", _S, True), 3: ("boundObjectRef", "BoundObjectReference", False),
                     4: ("expirationSeconds", "int", False)},
    "TokenReview": {1: ("token", _S, False), 2: ("audiences", _S, True)},
    "SelfSubjectReview": {},
    "SelfSubjectAccessReview": {1: ("resourceAttributes", "ResourceAttributes", False),
                                2: ("nonResourceAttributes", "NonResourceAttributes", False)},
    "SelfSubjectRulesReview": {1: ("namespace", _S, False)},
    "SubjectAccessReview": {1: ("resourceAttributes", "ResourceAttributes", False),
                            2: ("nonResourceAttributes", "NonResourceAttributes", False),
                            3: ("user", _S, False), 4: ("groups", _S, True), 5: ("extra", "ExtraEntry", True),
                            6: ("uid", _S, False)},
}
SPECS["LocalSubjectAccessReview"] = SPECS["SubjectAccessReview"]


class ProtoError(ValueError):
    pass


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ProtoError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ProtoError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int, Any]]:
    out: list[tuple[int, int, Any]] = []
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(buf, i)
        elif wt == 2:
            n, i = _varint(buf, i)
            if i + n > len(buf):
                raise ProtoError("truncated field")
            v, i = buf[i:i + n], i + n
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ProtoError(f"unsupported wire type {wt}")
        out.append((num, wt, v))
    return out


def _decode(buf: bytes, schema: dict[int, tuple[str, str, bool]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for num, _wt, v in _fields(buf):
        spec = schema.get(num)
        if spec is None:
            continue
        name, typ, repeated = spec
        if typ == _S:
            val: Any = bytes(v).decode()
        elif typ == "bytes":
            val = bytes(v)
        elif typ == "int":
            val = v if isinstance(v, int) else 0
        elif typ == "bool":
            val = bool(v)
        else:
            val = _decode(bytes(v), SCHEMAS[typ])
        if repeated:
            obj.setdefault(name, []).append(val)
        else:
            obj[name] = val
    return obj


def decode(body: bytes, kind: str) -> dict[str, Any]:
    """A protobuf-encoded identity request as its JSON form."""
    if not body.startswith(MAGIC):
        raise ProtoError("missing the k8s protobuf envelope")
    unknown = _decode(body[len(MAGIC):], SCHEMAS["Unknown"])
    tm = unknown.get("typeMeta") or {}
    inner = _decode(unknown.get("raw", b""), {1: ("metadata", "ObjectMeta", False), 2: ("spec", "bytes", False)})
    spec = _decode(inner.get("spec", b""), SPECS.get(kind, {}))
    if "extra" in spec:
        spec["extra"] = {e.get("key", ""): (e.get("value") or {}).get("items", []) for e in spec["extra"]}
    return {"apiVersion": tm.get("apiVersion", ""), "kind": tm.get("kind") or kind,
            "metadata": meta_of(inner), "spec": spec}
