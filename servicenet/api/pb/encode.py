"""JSON dict → protobuf bytes directly, without building message objects.

The same mapping as :func:`servicenet.api.pb.convert.from_json` (which fills ``protobuf`` message
objects), written straight to the wire: one plan per message type, built from its descriptor and
the Go tags. Answers to protobuf clients are encoded here; ``convert`` stays the reference (the tests
check both agree) and handles the few apiextensions union types.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from servicenet.api.pb import convert, types
from servicenet.api.pb.convert import ConversionError

_SMALL = [bytes((i,)) for i in range(128)]
_DOUBLE = struct.Struct("<d")
_MASK64 = (1 << 64) - 1


def _varint(n: int) -> bytes:
    if 0 <= n < 128:
        return _SMALL[n]
    n &= _MASK64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _tag(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


# a value encoder: (json value, path) -> the encoded field(s), tag included
Enc = Callable[[Any, str], bytes]


def _int_payload(v: Any, path: str) -> bytes:
    if type(v) is int:
        return _varint(v)
    if isinstance(v, float) and v.is_integer():
        return _varint(int(v))
    raise ConversionError(path, f"cannot unmarshal {type(v).__name__} into an integer field")


def _scalar_encoder(fd: FieldDescriptor, number: int) -> Enc:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        tag = _tag(number, 2)

        def enc_str(v: Any, path: str) -> bytes:
            if type(v) is not str:
                raise ConversionError(path, f"cannot unmarshal {type(v).__name__} into a string field")
            b = v.encode()
            return tag + _varint(len(b)) + b
        return enc_str
    if t == FieldDescriptor.TYPE_BYTES:
        tag = _tag(number, 2)

        def enc_bytes(v: Any, path: str) -> bytes:
            if not isinstance(v, str):
                raise ConversionError(path, "cannot unmarshal into a base64 byte field: not a string")
            try:
                b = base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ConversionError(path, f"illegal base64 data: {exc}") from None
            return tag + _varint(len(b)) + b
        return enc_bytes
    if t == FieldDescriptor.TYPE_BOOL:
        on, off = _tag(number, 0) + b"\x01", _tag(number, 0) + b"\x00"

        def enc_bool(v: Any, path: str) -> bytes:
            if type(v) is not bool:
                raise ConversionError(path, f"cannot unmarshal {type(v).__name__} into a bool field")
            return on if v else off
        return enc_bool
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        tag = _tag(number, 1 if t == FieldDescriptor.TYPE_DOUBLE else 5)
        fmt = _DOUBLE if t == FieldDescriptor.TYPE_DOUBLE else struct.Struct("<f")

        def enc_float(v: Any, path: str) -> bytes:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ConversionError(path, f"cannot unmarshal {type(v).__name__} into a number field")
            return tag + fmt.pack(float(v))
        return enc_float
    tag = _tag(number, 0)

    def enc_int(v: Any, path: str) -> bytes:
        return tag + _int_payload(v, path)
    return enc_int


def _special_payload(name: str) -> Callable[[Any, str], bytes] | None:
    """The message payload (no tag) of a special JSON shape, or None for an ordinary message."""
    if name in (convert.TIME, convert.MICRO_TIME):
        micro = name == convert.MICRO_TIME

        def time_payload(v: Any, path: str) -> bytes:
            if not isinstance(v, str):
                raise ConversionError(path, "a time must be an RFC 3339 string")
            try:
                s, n = convert.parse_time(v)
            except ValueError as exc:
                raise ConversionError(path, str(exc)) from None
            return b"\x08" + _varint(s) + b"\x10" + _varint((n // 1000) * 1000 if micro else 0)
        return time_payload
    if name == convert.DURATION:
        def duration_payload(v: Any, path: str) -> bytes:
            if type(v) is int:
                ns = v
            elif isinstance(v, str):
                try:
                    ns = convert.parse_duration(v)
                except ValueError as exc:
                    raise ConversionError(path, str(exc)) from None
            else:
                raise ConversionError(path, "a duration must be a string")
            return b"\x08" + _varint(ns)
        return duration_payload
    if name == convert.QUANTITY:
        def quantity_payload(v: Any, path: str) -> bytes:
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise ConversionError(path, "a quantity must be a string or a number")
            b = (v if isinstance(v, str) else str(v)).encode()
            return b"\x0a" + _varint(len(b)) + b
        return quantity_payload
    if name == convert.INT_OR_STRING:
        def ios_payload(v: Any, path: str) -> bytes:
            if type(v) is str:
                b = v.encode()
                return b"\x08\x01\x1a" + _varint(len(b)) + b
            if type(v) is int:
                return b"\x08\x00\x10" + _varint(v)
            raise ConversionError(path, "an int-or-string must be an integer or a string")
        return ios_payload
    if name in (convert.RAW_EXTENSION, convert.FIELDS_V1, f"{convert._APIEXT}.JSON"):
        def raw_payload(v: Any, path: str) -> bytes:
            b = orjson.dumps(v)
            return b"\x0a" + _varint(len(b)) + b
        return raw_payload
    if name in types.wrappers():
        def wrapper_payload(v: Any, path: str) -> bytes:
            if not isinstance(v, list):
                raise ConversionError(path, "expected a list")
            out = []
            for item in v:
                if type(item) is not str:
                    raise ConversionError(path, "expected a list of strings")
                b = item.encode()
                out.append(b"\x0a" + _varint(len(b)) + b)
            return b"".join(out)
        return wrapper_payload
    if name.startswith(convert._APIEXT + ".JSONSchemaPropsOr"):
        def union_payload(v: Any, path: str) -> bytes:
            return bytes(convert.from_json(v, types.message_class(name)(), path, []).SerializeToString())
        return union_payload
    return None


# Encoded ``…Spec`` messages by their JSON: a watched object's later versions mostly keep their spec (a
# pod's status updates; the spec is most of its bytes), templates repeat. Bounded; cleared when full.
_SPECS: dict[tuple[str, bytes], bytes] = {}
_SPECS_MAX = 1024


def _message_payload(desc: Descriptor) -> Callable[[Any, str], bytes]:
    special = _special_payload(desc.full_name)
    if special is not None:
        return special
    name = desc.full_name

    def payload(v: Any, path: str) -> bytes:
        if type(v) is not dict:
            raise ConversionError(path, f"expected an object, got {type(v).__name__}")
        return encode_message(v, name, path)

    if not name.endswith("Spec"):
        return payload

    def spec_payload(v: Any, path: str) -> bytes:
        if type(v) is not dict:
            raise ConversionError(path, f"expected an object, got {type(v).__name__}")
        try:
            key = (name, orjson.dumps(v))
        except TypeError:  # not JSON (nested too deeply): encoded, not kept
            return encode_message(v, name, path)
        out = _SPECS.get(key)
        if out is None:
            out = encode_message(v, name, path)
            if len(_SPECS) >= _SPECS_MAX:
                _SPECS.clear()
            _SPECS[key] = out
        return out
    return spec_payload


def _field_encoder(message: str, fd: FieldDescriptor) -> Enc:
    number = fd.number
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        kfd = fd.message_type.fields_by_name["key"]
        vfd = fd.message_type.fields_by_name["value"]
        enc_k = _scalar_encoder(kfd, 1)
        if vfd.type == FieldDescriptor.TYPE_MESSAGE:
            vpay = _message_payload(vfd.message_type)
            vtag = _tag(2, 2)

            def enc_v(v: Any, path: str) -> bytes:
                return _len_field(vtag, vpay(v, path))
        else:
            enc_v = _scalar_encoder(vfd, 2)
        tag = _tag(number, 2)

        def enc_map(v: Any, path: str) -> bytes:
            if type(v) is not dict:
                raise ConversionError(path, "expected an object")
            return b"".join(_len_field(tag, enc_k(k, path) + enc_v(item, f"{path}[{k}]"))
                            for k, item in v.items() if item is not None)
        return enc_map
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        pay = _message_payload(fd.message_type)
        tag = _tag(number, 2)

        def enc_msg(v: Any, path: str) -> bytes:
            return _len_field(tag, pay(v, path))
        elem = enc_msg
    else:
        elem = _scalar_encoder(fd, number)
    if fd.is_repeated:
        empty = _len_field(_tag(number, 2), b"") if fd.type == FieldDescriptor.TYPE_MESSAGE else None

        def enc_list(v: Any, path: str) -> bytes:
            if type(v) is not list:
                raise ConversionError(path, "expected a list")
            return b"".join(elem(item, f"{path}[{i}]") if item is not None else (empty or b"")
                            for i, item in enumerate(v))
        return enc_list
    return elem


# per message: JSON key -> (encoder, inline field number or 0); plus keys whose null is an empty struct
_plans: dict[str, tuple[dict[str, tuple[Enc, int]], dict[str, bytes], dict[int, tuple[bytes, str]]]] = {}


def _plan(name: str) -> tuple[dict[str, tuple[Enc, int]], dict[str, bytes], dict[int, tuple[bytes, str]]]:
    plan = _plans.get(name)
    if plan is not None:
        return plan
    desc = types.descriptor(name)
    keys: dict[str, tuple[Enc, int]] = {}
    nulls: dict[str, bytes] = {}
    inlines: dict[int, tuple[bytes, str]] = {}
    plan = _plans[name] = (keys, nulls, inlines)
    for fd in desc.fields:
        go = types.go_field(name, fd)
        if go.inline and fd.type == FieldDescriptor.TYPE_MESSAGE and not fd.is_repeated:
            inlines[fd.number] = (_tag(fd.number, 2), fd.message_type.full_name)
            inner_keys, inner_nulls, inner_inlines = _plan(fd.message_type.full_name)
            for key in inner_keys:
                keys[key] = (_no_direct, fd.number)
            continue
        keys[go.json] = (_field_encoder(name, fd), 0)
        if fd.type == FieldDescriptor.TYPE_MESSAGE and not fd.is_repeated and not go.pointer:
            nulls[go.json] = _len_field(_tag(fd.number, 2), b"")
    return plan


def _no_direct(v: Any, path: str) -> bytes:  # pragma: no cover - inline keys are grouped, never called
    raise AssertionError(path)


def encode_message(obj: dict[str, Any], name: str, path: str = "") -> bytes:
    """``obj`` as the serialized message ``name``; keys the message lacks are ignored."""
    keys, nulls, inlines = _plans.get(name) or _plan(name)
    out: list[bytes] = []
    grouped: dict[int, dict[str, Any]] | None = None
    prefix = f"{path}." if path else ""
    for key, value in obj.items():
        entry = keys.get(key)
        if entry is None:
            continue
        enc, inline = entry
        if inline:
            if grouped is None:
                grouped = {}
            grouped.setdefault(inline, {})[key] = value
            continue
        if value is None:
            null = nulls.get(key)
            if null is not None:
                out.append(null)
            continue
        out.append(enc(value, prefix + key))
    if grouped:
        for number, sub in grouped.items():
            tag, sub_name = inlines[number]
            out.append(_len_field(tag, encode_message(sub, sub_name, path)))
    return b"".join(out)
