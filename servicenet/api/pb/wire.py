"""Kubernetes' protobuf wire format: the ``k8s\\0`` envelope, watch frames and media types.

A body is the 4-byte magic ``k8s\\0`` followed by a ``runtime.Unknown`` whose ``typeMeta`` names the
kind and whose ``raw`` is the kind's message (which carries no apiVersion/kind of its own). A watch
stream is a sequence of frames, each a 4-byte big-endian length and a ``metav1.WatchEvent`` (no
envelope) whose ``object.raw`` is an enveloped object. Pure functions: bytes in, dicts out.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import orjson
from google.protobuf import unknown_fields
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError

from servicenet.api import jsontree, known, spec_cache
from servicenet.api.pb import convert, native, types
from servicenet.api.pb import decode as _py_decode
from servicenet.api.pb import encode as _py_encode
from servicenet.api.pb.decode import Fallback
from servicenet.api.pb.decode import _varint as _read_varint
from servicenet.api.pb.encode import varint as _varint

MAGIC = b"k8s\x00"
PROTOBUF = "application/vnd.kubernetes.protobuf"
PROTOBUF_WATCH = PROTOBUF + ";stream=watch"
#: upstream's request body limit (``MaxRequestBodyBytes``)
MAX_BODY = 3 * 1024 * 1024
_LEN = struct.Struct(">I")

# the fast paths: C (servicenet.api.pb.native) when built, else pure Python; same answers either way
_decode_message: Callable[[bytes, str], dict[str, Any]] = _py_decode.decode_message
_encode_message: Callable[[dict[str, Any], str], bytes] = _py_encode.encode_message
_split_envelope: Callable[[bytes], tuple[str, str, bytes] | None] | None = None


def use_native(on: bool) -> bool:
    """Take the C fast paths (when built) or the pure-Python ones; returns whether C is now in use."""
    global _decode_message, _encode_message, _split_envelope
    on = on and native.BUILT
    _split_envelope = native.split_envelope if on else None
    _decode_message = native.decode_message if on else _py_decode.decode_message
    _encode_message = native.encode_message if on else _py_encode.encode_message
    return on


def native_in_use() -> bool:
    return _decode_message is native.decode_message


use_native(native.ENABLED)


class ProtobufError(ValueError):
    """A body that is not a usable protobuf object; ``reason`` is a Status reason."""

    def __init__(self, message: str, code: int = 400, reason: str = "BadRequest") -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason


class NotEncodable(ValueError):
    """The object's kind has no protobuf message."""


@dataclass
class Decoded:
    obj: dict[str, Any]
    api_version: str
    kind: str
    unknown: list[str] = field(default_factory=list)  # JSON paths of fields the message does not know


def _unknown_paths(msg: Any, path: str, out: list[str]) -> None:
    """Where ``msg`` holds fields its message type does not define (``spec.#42``)."""
    prefix = f"{path}." if path else ""
    for f in unknown_fields.UnknownFieldSet(msg):
        out.append(f"{prefix}#{f.field_number}")
    name = msg.DESCRIPTOR.full_name
    for fd, value in msg.ListFields():
        if fd.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        key = types.go_field(name, fd).json or fd.name
        inline = types.go_field(name, fd).inline
        here = path if inline else prefix + key
        if fd.message_type.GetOptions().map_entry:
            if fd.message_type.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE:
                for k, v in value.items():
                    _unknown_paths(v, f"{here}[{k}]", out)
        elif fd.is_repeated:
            for i, v in enumerate(value):
                _unknown_paths(v, f"{here}[{i}]", out)
        else:
            _unknown_paths(value, here, out)


def split_envelope(body: bytes) -> tuple[str, str, bytes]:
    """``(apiVersion, kind, raw)`` of an enveloped body; raises :class:`ProtobufError`."""
    if len(body) > MAX_BODY:
        raise ProtobufError(f"Request entity too large: limit is {MAX_BODY}", 413, "RequestEntityTooLarge")
    if not body.startswith(MAGIC):
        raise ProtobufError("the body does not appear to be a protobuf message: it does not start with the "
                            "prefix [107 56 115 0] (k8s\\x00)")
    if _split_envelope is not None and type(body) is bytes:
        canonical = _split_envelope(body)
        if canonical is not None:
            return canonical
    try:
        env = types.message_class(types.UNKNOWN).FromString(body[4:])
    except DecodeError as exc:
        raise ProtobufError(f"the protobuf envelope (runtime.Unknown) could not be decoded: {exc}") from None
    if env.contentEncoding:
        raise ProtobufError(f"unsupported content encoding {env.contentEncoding!r} in the protobuf envelope")
    if env.contentType not in ("", PROTOBUF):
        raise ProtobufError(f"unsupported content type {env.contentType!r} in the protobuf envelope")
    av, kind = env.typeMeta.apiVersion, env.typeMeta.kind
    if not kind:
        raise ProtobufError("Object 'Kind' is missing in the protobuf envelope")
    return av, kind, env.raw


def decode(body: bytes, *, find_unknown: bool = True, share_pod_spec: bool = False) -> Decoded:
    """An enveloped protobuf object as the JSON dict of its kind (apiVersion and kind first).

    ``share_pod_spec``: a Pod's spec may be handed out as a tree kept from an earlier body with the
    same spec bytes, shared and with its JSON text noted (:mod:`servicenet.api.known`). Only for a
    caller that changes the spec only after taking it as its own (a pod create: the defaulting
    replaces it, see :func:`servicenet.api.spec_cache.pod_create_defaults`)."""
    av, kind, raw = split_envelope(body)
    name = types.message_for(av, kind)
    if name is None:
        raise ProtobufError(f'no kind "{kind}" is registered for version "{av}"')
    if share_pod_spec and name == _POD:
        shared = _with_kept_spec(raw, av, kind)
        if shared is not None:
            return Decoded(shared, av, kind, [])
    try:  # the fast path reads Go's canonical bytes; anything else takes the reference path below
        return Decoded({"apiVersion": av, "kind": kind, **_decode_message(raw, name)}, av, kind, [])
    except Fallback:
        pass
    return _decode_reference(raw, name, av, kind, find_unknown)


# a Pod body's spec bytes -> (the spec's tree, its JSON text), or None when they are not kept (not
# Go's canonical bytes, or a text that would not be exact); bounded, emptied when full
_kept_specs: dict[bytes, tuple[dict[str, Any], bytes] | None] = {}
_KEPT_SPECS = 256
_SPEC_TAG = 0x12  # PodSpec is the Pod's field 2, length-delimited


def _with_kept_spec(raw: bytes, av: str, kind: str) -> dict[str, Any] | None:
    """The Pod in ``raw`` decoded with its spec taken from :data:`_kept_specs`, or None for the usual
    path (no spec, a spec not seen or not keepable, bytes the fast path does not read)."""
    pos, end = 0, len(raw)
    if pos < end and raw[pos] == 0x0A:  # metadata (1) first, as Go writes it
        pos = _skip_len(raw, pos + 1)
    if pos >= end or raw[pos] != _SPEC_TAG:
        return None
    start = pos
    try:
        n, at = _read_varint(raw, pos + 1)
    except (IndexError, Fallback):
        return None
    body = at + n
    if body > end:
        return None
    spec_bytes = raw[at:body]
    kept = _kept_specs.get(spec_bytes, _NOT_SEEN)
    if kept is _NOT_SEEN:
        kept = _keep_spec(spec_bytes)
    if kept is None:
        return None
    tree, text = kept
    try:
        rest = _decode_message(raw[:start] + raw[body:], _POD)
    except Fallback:
        return None
    out: dict[str, Any] = {"apiVersion": av, "kind": kind}
    if "metadata" in rest:
        out["metadata"] = rest.pop("metadata")
    out["spec"] = tree
    out.update(rest)
    known.note(tree, text)
    return out


_NOT_SEEN: Any = object()


def _keep_spec(spec_bytes: bytes) -> tuple[dict[str, Any], bytes] | None:
    try:
        tree = _decode_message(spec_bytes, _POD_SPEC)
        text = orjson.dumps(tree, option=spec_cache.STRICT)
    except (Fallback, TypeError):
        kept = None
    else:
        kept = None if jsontree.has_null(text) else (tree, text)
    if len(_kept_specs) >= _KEPT_SPECS:
        _kept_specs.clear()
    _kept_specs[spec_bytes] = kept
    return kept


def _skip_len(data: bytes, pos: int) -> int:
    """The position just past the length-delimited payload whose length starts at ``pos`` (past the
    end when the length does not read)."""
    try:
        n, at = _read_varint(data, pos)
    except (IndexError, Fallback):
        return len(data) + 1
    return at + n


def _decode_reference(raw: bytes, name: str, av: str, kind: str, find_unknown: bool) -> Decoded:
    """Through ``protobuf`` message objects: the unknown-field report and the errors of bad bytes."""
    cls = types.message_class(name)
    try:
        msg = cls.FromString(raw)
    except DecodeError as exc:
        raise ProtobufError(f"the body of the request could not be decoded as a protobuf {kind}: {exc}") from None
    unknown: list[str] = []
    if find_unknown:
        size = msg.ByteSize()
        msg.DiscardUnknownFields()
        if msg.ByteSize() != size:
            try:
                _unknown_paths(cls.FromString(raw), "", unknown)
            except ValueError as exc:  # a map key that is not UTF-8 (fuzzer find)
                raise ProtobufError(f"the protobuf {kind} could not be converted: {exc}") from None
    else:
        msg.DiscardUnknownFields()
    try:
        body_obj = convert.to_json(msg)
    except (ValueError, UnicodeDecodeError) as exc:  # e.g. a RawExtension whose bytes are not JSON
        raise ProtobufError(f"the protobuf {kind} could not be converted: {exc}") from None
    obj: dict[str, Any] = {"apiVersion": av, "kind": kind}
    obj.update(body_obj)
    return Decoded(obj, av, kind, unknown)


def encode(obj: dict[str, Any]) -> bytes:
    """A JSON object (with apiVersion and kind) as an enveloped protobuf body.

    Raises :class:`NotEncodable` when the kind has no message, and
    :class:`servicenet.api.pb.convert.ConversionError` when a value does not fit its field.
    """
    av, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(av, str) or not isinstance(kind, str):
        raise NotEncodable("the object has no apiVersion/kind")
    name = types.message_for(av, kind)
    if name is None:
        raise NotEncodable(f"object {av}/{kind} does not implement the protobuf marshalling interface and "
                           "cannot be encoded to a protobuf message")
    if name == _POD:
        spec = obj.get("spec")
        if spec is not None:
            pb = known.protobuf(spec)
            if pb is not None:  # a pod create's spec, its bytes known (servicenet.api.spec_cache)
                rest = _encode_message({k: v for k, v in obj.items() if k != "spec"}, name)
                return envelope(av, kind, with_field(rest, 2, pb))
    return envelope(av, kind, _encode_message(obj, name))


_POD = "k8s.io.api.core.v1.Pod"
_POD_SPEC = "k8s.io.api.core.v1.PodSpec"


def with_field(message: bytes, number: int, payload: bytes) -> bytes:
    """``message`` (canonical: fields in number order) with the length-delimited field ``number``
    carrying ``payload`` put where Go writes it: after the fields numbered below it. ``message`` must
    not hold that field already, and its fields before it must be length-delimited (as ObjectMeta is
    for a Pod's spec)."""
    pos, end = 0, len(message)
    while pos < end:
        tag = message[pos]
        if tag & 0x80 or (tag >> 3) >= number or tag & 7 != 2:  # not a one-byte length-delimited tag below it
            break
        pos = _skip_len(message, pos + 1)
    return b"".join((message[:pos], _varint(number << 3 | 2), _varint(len(payload)), payload, message[pos:]))


def encode_pod_spec(spec: dict[str, Any]) -> bytes:
    """A PodSpec's message bytes (no envelope)."""
    return _encode_message(spec, _POD_SPEC)


spec_cache.spec_encoder = encode_pod_spec


@lru_cache(maxsize=256)
def _type_meta(api_version: str, kind: str) -> bytes:
    """The envelope's ``typeMeta`` field (1), tag and length included."""
    av, k = api_version.encode(), kind.encode()
    tm = b"\x0a" + _varint(len(av)) + av + b"\x12" + _varint(len(k)) + k
    return b"\x0a" + _varint(len(tm)) + tm


def envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    """``k8s\\0`` and a ``runtime.Unknown``: typeMeta, raw, and contentEncoding and contentType written
    empty, as Go does."""
    return b"".join((MAGIC, _type_meta(api_version, kind), b"\x12", _varint(len(raw)), raw, b"\x1a\x00\x22\x00"))


def watch_frame(event_type: str, enveloped: bytes) -> bytes:
    """One length-prefixed watch frame carrying an already enveloped object: a ``WatchEvent`` of
    ``type`` (1) and ``object`` (2, a RawExtension whose ``raw`` (1) is the enveloped object)."""
    t = event_type.encode()
    obj = b"\x0a" + _varint(len(enveloped)) + enveloped
    data = b"".join((b"\x0a", _varint(len(t)), t, b"\x12", _varint(len(obj)), obj))
    return _LEN.pack(len(data)) + data


def read_watch_frames(stream: bytes) -> tuple[list[tuple[str, dict[str, Any]]], bytes]:
    """Split a protobuf watch stream into ``(type, object)`` events; returns the unread tail too."""
    out: list[tuple[str, dict[str, Any]]] = []
    pos = 0
    cls = types.message_class(types.WATCH_EVENT)
    while len(stream) - pos >= 4:
        (n,) = _LEN.unpack_from(stream, pos)
        if len(stream) - pos - 4 < n:
            break
        ev = cls.FromString(stream[pos + 4:pos + 4 + n])
        out.append((ev.type, decode(ev.object.raw, find_unknown=False).obj))
        pos += 4 + n
    return out, stream[pos:]


# -- media types ---------------------------------------------------------------------------------------

def _media_ranges(accept: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for i, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        mtype = pieces[0].lower()
        if not mtype:
            continue
        params: dict[str, str] = {}
        q = 1.0
        for p in pieces[1:]:
            k, _, v = p.partition("=")
            k = k.strip().lower()
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
            elif k:
                params[k] = v.strip()
        out.append((mtype, params, q - i * 1e-6))  # keep the client's order among equal q
    out.sort(key=lambda r: -r[2])
    return out


@lru_cache(maxsize=64)  # clients send the same few Accept headers
def wants_protobuf(accept: str) -> bool:
    """Whether the client's Accept header prefers protobuf over JSON for a plain object answer."""
    if "protobuf" not in accept:
        return False
    for mtype, params, q in _media_ranges(accept):
        if q <= 0:
            continue
        if mtype == PROTOBUF:
            return "as" not in params
        if mtype in ("application/json", "*/*", "application/*", "application/yaml"):
            return False
    return False


@lru_cache(maxsize=64)
def only_protobuf(accept: str) -> bool:
    """The Accept header allows protobuf and nothing we could answer with instead."""
    ranges = [(m, q) for m, _, q in _media_ranges(accept) if q > 0]
    return bool(ranges) and all(m == PROTOBUF for m, _ in ranges)


def body_media_type(content_type: str) -> str:
    """The media type of a request body, without parameters, lower case."""
    return content_type.split(";", 1)[0].strip().lower()
