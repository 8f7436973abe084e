"""JSON dict → protobuf bytes directly, without building message objects.

The same mapping as :func:`servicenet.api.pb.convert.from_json` (which fills ``protobuf`` message
objects), written straight to the wire: one table per message type, built from its descriptor and
the Go tags on first use. Fields are written in field-number order, as Go's marshaller does (so the
decoder's fast path reads what this writes); map entries in the dict's order. Answers to protobuf
clients are encoded here; ``convert`` stays the reference (the tests check both agree) and handles
the few apiextensions union types.

Sub-messages that repeat (a pod spec across status updates, containers, probes, env) are encoded
once: the bytes of each are kept by the JSON text of its value (see :mod:`.memo`).

Encoders take the JSON value and return the encoded field, tag included; a value that does not fit
raises :class:`ConversionError` with the path below the field, and each level adds its key.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from servicenet.api.pb import convert, memo, types
from servicenet.api.pb.convert import ConversionError

_SMALL = [bytes((i,)) for i in range(128)]
_DOUBLE = struct.Struct("<d")
_MASK64 = (1 << 64) - 1
_MIN, _MAX = memo.MIN_BYTES, memo.MAX_BYTES


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


varint = _varint


def _tag(number: int, wire_type: int) -> bytes:
    return _varint((number << 3) | wire_type)


def _with_len(tag: bytes) -> list[bytes]:
    """``tag`` followed by each one-byte length: a length-delimited field's head in one lookup."""
    return [tag + _SMALL[i] for i in range(128)]


def _len_field(tag: bytes, payload: bytes) -> bytes:
    return tag + _varint(len(payload)) + payload


# a value encoder: json value -> the encoded field(s), tag included
Enc = Callable[[Any], bytes]


def _int_payload(v: Any) -> bytes:
    if type(v) is int:
        return _varint(v)
    if isinstance(v, float) and v.is_integer():
        return _varint(int(v))
    raise ConversionError("", f"cannot unmarshal {type(v).__name__} into an integer field")


def _str_encoder(tag: bytes) -> Enc:
    heads = _with_len(tag)

    def enc_str(v: Any) -> bytes:
        if type(v) is not str:
            raise ConversionError("", f"cannot unmarshal {type(v).__name__} into a string field")
        b = v.encode()
        n = len(b)
        return heads[n] + b if n < 128 else tag + _varint(n) + b
    return enc_str


def _scalar_encoder(fd: FieldDescriptor, number: int) -> Enc:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return _str_encoder(_tag(number, 2))
    if t == FieldDescriptor.TYPE_BYTES:
        tag = _tag(number, 2)

        def enc_bytes(v: Any) -> bytes:
            if not isinstance(v, str):
                raise ConversionError("", "cannot unmarshal into a base64 byte field: not a string")
            try:
                b = base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ConversionError("", f"illegal base64 data: {exc}") from None
            return tag + _varint(len(b)) + b
        return enc_bytes
    if t == FieldDescriptor.TYPE_BOOL:
        on, off = _tag(number, 0) + b"\x01", _tag(number, 0) + b"\x00"

        def enc_bool(v: Any) -> bytes:
            if type(v) is not bool:
                raise ConversionError("", f"cannot unmarshal {type(v).__name__} into a bool field")
            return on if v else off
        return enc_bool
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        tag = _tag(number, 1 if t == FieldDescriptor.TYPE_DOUBLE else 5)
        fmt = _DOUBLE if t == FieldDescriptor.TYPE_DOUBLE else struct.Struct("<f")

        def enc_float(v: Any) -> bytes:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ConversionError("", f"cannot unmarshal {type(v).__name__} into a number field")
            return tag + fmt.pack(float(v))
        return enc_float
    tag = _tag(number, 0)
    small = [tag + _SMALL[i] for i in range(128)]

    def enc_int(v: Any) -> bytes:
        if type(v) is int and 0 <= v < 128:
            return small[v]
        return tag + _int_payload(v)
    return enc_int


def _special_payload(name: str) -> Callable[[Any], bytes] | None:
    """The message payload (no tag) of a special JSON shape, or None for an ordinary message."""
    if name in (convert.TIME, convert.MICRO_TIME):
        micro = name == convert.MICRO_TIME

        def time_payload(v: Any) -> bytes:
            if not isinstance(v, str):
                raise ConversionError("", "a time must be an RFC 3339 string")
            try:
                s, n = convert.parse_time(v)
            except ValueError as exc:
                raise ConversionError("", str(exc)) from None
            return b"\x08" + _varint(s) + b"\x10" + _varint((n // 1000) * 1000 if micro else 0)
        return time_payload
    if name == convert.DURATION:
        def duration_payload(v: Any) -> bytes:
            if type(v) is int:
                ns = v
            elif isinstance(v, str):
                try:
                    ns = convert.parse_duration(v)
                except ValueError as exc:
                    raise ConversionError("", str(exc)) from None
            else:
                raise ConversionError("", "a duration must be a string")
            return b"\x08" + _varint(ns)
        return duration_payload
    if name == convert.QUANTITY:
        def quantity_payload(v: Any) -> bytes:
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise ConversionError("", "a quantity must be a string or a number")
            b = (v if isinstance(v, str) else str(v)).encode()
            return b"\x0a" + _varint(len(b)) + b
        return quantity_payload
    if name == convert.INT_OR_STRING:
        def ios_payload(v: Any) -> bytes:
            if type(v) is str:
                b = v.encode()
                return b"\x08\x01\x1a" + _varint(len(b)) + b
            if type(v) is int:
                return b"\x08\x00\x10" + _varint(v)
            raise ConversionError("", "an int-or-string must be an integer or a string")
        return ios_payload
    if name in (convert.RAW_EXTENSION, convert.FIELDS_V1, f"{convert._APIEXT}.JSON"):
        def raw_payload(v: Any) -> bytes:
            b = orjson.dumps(v)
            return b"\x0a" + _varint(len(b)) + b
        return raw_payload
    if name in types.wrappers():
        def wrapper_payload(v: Any) -> bytes:
            if not isinstance(v, list):
                raise ConversionError("", "expected a list")
            out = []
            for item in v:
                if type(item) is not str:
                    raise ConversionError("", "expected a list of strings")
                b = item.encode()
                out.append(b"\x0a" + _varint(len(b)) + b)
            return b"".join(out)
        return wrapper_payload
    if name.startswith(convert._APIEXT + ".JSONSchemaPropsOr"):
        def union_payload(v: Any) -> bytes:
            return bytes(convert.from_json(v, types.message_class(name)(), "", []).SerializeToString())
        return union_payload
    return None


_memos: dict[str, memo.Memo] = {}


def _kept(enc: Enc, name: str) -> Enc:
    """``enc`` with its answers kept by the JSON text of the value (see :mod:`.memo`)."""
    kept = _memos.get(name) or _memos.setdefault(name, memo.new(name))
    table = kept.kept  # cleared in place, never replaced

    def kept_enc(v: Any) -> bytes:
        if kept.off:  # switched off for a while: this value's kind rarely repeats
            kept.off -= 1
            return enc(v)
        try:
            key = orjson.dumps(v)
        except TypeError:  # not JSON (nested too deeply, a huge int): encoded, not kept
            return enc(v)
        if not _MIN <= len(key) <= _MAX:
            return enc(v)
        out = table.get(key)
        if out is not None:  # Memo.get inlined: the hit is the common case
            kept.tries += 1
            kept.hits += 1
            return out
        kept.get(key)  # counts the miss (and may switch the memo off)
        out = enc(v)
        kept.put(key, out)
        return out
    return kept_enc


def _message_payload(desc: Descriptor) -> Callable[[Any], bytes]:
    special = _special_payload(desc.full_name)
    if special is not None:
        return special
    name = desc.full_name

    def payload(v: Any) -> bytes:
        if type(v) is not dict:
            raise ConversionError("", f"expected an object, got {type(v).__name__}")
        return encode_message(v, name)

    return payload if memo.has_float(desc) else _kept(payload, name)


def _field_encoder(fd: FieldDescriptor) -> Enc:
    """The encoder of one field; whole lists of messages and whole maps are kept too (a pod's env,
    ports, tolerations, labels repeat as a whole)."""
    number = fd.number
    where = f"{fd.containing_type.full_name}.{fd.name}[]"  # a field's memo: never a message type's name
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        vfd = fd.message_type.fields_by_name["value"]
        if vfd.type == FieldDescriptor.TYPE_MESSAGE and memo.has_float(vfd.message_type):
            return _map_encoder(fd)
        return _kept(_map_encoder(fd), where)
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        pay = _message_payload(fd.message_type)
        tag = _tag(number, 2)
        heads = _with_len(tag)

        def enc_msg(v: Any) -> bytes:
            p = pay(v)
            n = len(p)
            return heads[n] + p if n < 128 else tag + _varint(n) + p
        elem = enc_msg
    else:
        elem = _scalar_encoder(fd, number)
    if not fd.is_repeated:
        return elem
    empty = _len_field(_tag(number, 2), b"") if fd.type == FieldDescriptor.TYPE_MESSAGE else b""

    def enc_list(v: Any) -> bytes:
        if type(v) is not list:
            raise ConversionError("", "expected a list")
        out = []
        for i, item in enumerate(v):
            if item is None:
                out.append(empty)
                continue
            try:
                out.append(elem(item))
            except ConversionError as exc:
                raise exc.under(f"[{i}]") from None
        return b"".join(out)
    if fd.type == FieldDescriptor.TYPE_MESSAGE and not memo.has_float(fd.message_type):
        return _kept(enc_list, where)
    return enc_list


def _map_encoder(fd: FieldDescriptor) -> Enc:
    kfd = fd.message_type.fields_by_name["key"]
    vfd = fd.message_type.fields_by_name["value"]
    tag = _tag(fd.number, 2)
    heads = _with_len(tag)
    if kfd.type == vfd.type == FieldDescriptor.TYPE_STRING:  # labels, annotations, data, selectors
        def enc_str_map(v: Any) -> bytes:
            if type(v) is not dict:
                raise ConversionError("", "expected an object")
            out = []
            for k, item in v.items():
                if item is None:
                    continue
                if type(k) is not str or type(item) is not str:
                    raise ConversionError(f"[{k}]", f"cannot unmarshal {type(item).__name__} into a string field")
                kb, vb = k.encode(), item.encode()
                nk, nv = len(kb), len(vb)
                if nk < 128 and nv < 128 and nk + nv < 124:
                    out.append(heads[nk + nv + 4] + b"\x0a" + _SMALL[nk] + kb + b"\x12" + _SMALL[nv] + vb)
                else:
                    out.append(_len_field(tag, b"\x0a" + _varint(nk) + kb + b"\x12" + _varint(nv) + vb))
            return b"".join(out)
        return enc_str_map
    enc_k = _scalar_encoder(kfd, 1)
    if vfd.type == FieldDescriptor.TYPE_MESSAGE:
        vpay = _message_payload(vfd.message_type)
        vtag = _tag(2, 2)

        def enc_v(v: Any) -> bytes:
            return _len_field(vtag, vpay(v))
    else:
        enc_v = _scalar_encoder(vfd, 2)

    def enc_map(v: Any) -> bytes:
        if type(v) is not dict:
            raise ConversionError("", "expected an object")
        out = []
        for k, item in v.items():
            if item is None:
                continue
            try:
                out.append(_len_field(tag, enc_k(k) + enc_v(item)))
            except ConversionError as exc:
                raise exc.under(f"[{k}]") from None
        return b"".join(out)
    return enc_map


class _Plan:
    """One message type: JSON key → (slot, encoder; None for a key of an inlined struct), where a
    field's slot is its place in field-number order (what Go writes)."""

    __slots__ = ("keys", "nulls", "inlines", "size")

    def __init__(self) -> None:
        self.keys: dict[str, tuple[int, Enc | None]] = {}
        self.nulls: dict[str, bytes] = {}  # keys whose null is an empty struct (non-pointer structs)
        self.inlines: dict[int, tuple[bytes, str]] = {}  # inline field's slot → (tag, message)
        self.size = 0


_plans: dict[str, _Plan] = {}


def _plan(name: str) -> _Plan:
    plan = _plans.get(name)
    if plan is not None:
        return plan
    desc = types.descriptor(name)
    plan = _plans[name] = _Plan()
    fields = sorted(desc.fields, key=lambda f: f.number)
    plan.size = len(fields)
    for slot, fd in enumerate(fields):
        go = types.go_field(name, fd)
        if go.inline and fd.type == FieldDescriptor.TYPE_MESSAGE and not fd.is_repeated:
            plan.inlines[slot] = (_tag(fd.number, 2), fd.message_type.full_name)
            for key in _plan(fd.message_type.full_name).keys:
                plan.keys[key] = (slot, None)
            continue
        plan.keys[go.json] = (slot, _field_encoder(fd))
        if fd.type == FieldDescriptor.TYPE_MESSAGE and not fd.is_repeated and not go.pointer:
            plan.nulls[go.json] = _len_field(_tag(fd.number, 2), b"")
    return plan


def encode_message(obj: dict[str, Any], name: str, path: str = "") -> bytes:
    """``obj`` as the serialized message ``name``; keys the message lacks are ignored."""
    plan = _plans.get(name) or _plan(name)
    keys = plan.keys
    slots: list[bytes | None] = [None] * plan.size
    grouped: dict[int, dict[str, Any]] | None = None
    for key, value in obj.items():
        entry = keys.get(key)
        if entry is None:
            continue
        slot, enc = entry
        if enc is None:
            if grouped is None:
                grouped = {}
            grouped.setdefault(slot, {})[key] = value
        elif value is not None:
            try:
                slots[slot] = enc(value)
            except ConversionError as exc:
                raise (exc.under(f"{path}.{key}" if path else key)) from None
        else:
            slots[slot] = plan.nulls.get(key)
    if grouped:
        for slot, sub in grouped.items():
            tag, sub_name = plan.inlines[slot]
            slots[slot] = _len_field(tag, encode_message(sub, sub_name, path))
    return b"".join(filter(None, slots))
