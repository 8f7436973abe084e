"""Protobuf bytes → Kubernetes JSON dict directly, without building message objects.

The fast path of :func:`servicenet.api.pb.wire.decode`: the same mapping as
:func:`servicenet.api.pb.convert.to_json` (the reference, on ``protobuf`` message objects), read
straight off the wire with one table per message type, keyed by the full tag (field number and wire
type), built from the descriptor and the Go tags on first use. No kind has its own code.

It only accepts what Go's marshaller writes: fields in ascending number order, each singular field
once, every field known to the message, valid UTF-8, repeated scalars unpacked. Anything else (unknown
or out-of-order fields, a wrong wire type, truncation, the apiextensions union types) raises
:class:`Fallback`, and the caller decodes the body with the reference path, which has the error
messages and the unknown-field report. So this module never decides what a bad body means.

Sub-messages that repeat byte for byte (the pod spec of a ReplicaSet's pods, a container, a probe)
are decoded once: the JSON of each is kept by its bytes (see :mod:`.memo`) and decoded afresh from
the kept JSON on a hit, so no caller shares a dict.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from servicenet.api.pb import convert, memo, types

_DOUBLE = struct.Struct("<d").unpack_from
_FLOAT = struct.Struct("<f").unpack_from
_SKIP = object()
_MIN, _MAX = memo.MIN_BYTES, memo.MAX_BYTES


class Fallback(Exception):  # noqa: N818 - a signal, not an error: use the reference decoder
    """The bytes are not in the canonical form this decoder reads."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the varint at ``pos`` (its first byte is known to be ≥ 0x80)."""
    result = 0
    shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if shift == 63 and b > 1:
                raise Fallback
            return result, pos
        shift += 7
        if shift > 63:
            raise Fallback


# A reader takes (data, pos, end) with pos at the field's payload and returns (JSON value, next pos).
Reader = Callable[[bytes, int, int], tuple[Any, int]]


def _read_len(data: bytes, pos: int, end: int) -> tuple[int, int]:
    n = data[pos]
    pos += 1
    if n >= 0x80:
        n, pos = _varint(data, pos - 1)
    if pos + n > end:
        raise Fallback
    return n, pos


def _int_reader(bits: int, omit_zero: bool) -> Reader:
    half, mask = 1 << (bits - 1), (1 << bits) - 1

    def read_int(data: bytes, pos: int, end: int) -> tuple[Any, int]:
        v = data[pos]
        pos += 1
        if v >= 0x80:
            v, pos = _varint(data, pos - 1)
            v &= mask
            if v >= half:
                v -= 1 << bits
        if pos > end:
            raise Fallback
        return (_SKIP if omit_zero and not v else v), pos
    return read_int


def _bool_reader(omit_zero: bool) -> Reader:
    def read_bool(data: bytes, pos: int, end: int) -> tuple[Any, int]:
        v = data[pos]
        pos += 1
        if v >= 0x80:
            v, pos = _varint(data, pos - 1)
        if pos > end:
            raise Fallback
        return (True if v else (_SKIP if omit_zero else False)), pos
    return read_bool


def _str_reader(omit_zero: bool) -> Reader:
    def read_str(data: bytes, pos: int, end: int) -> tuple[Any, int]:
        n = data[pos]
        pos += 1
        if n >= 0x80:
            n, pos = _varint(data, pos - 1)
        stop = pos + n
        if stop > end:
            raise Fallback
        if not n:
            return (_SKIP if omit_zero else ""), stop
        return data[pos:stop].decode(), stop  # invalid UTF-8 raises: the reference path replaces it
    return read_str


def _bytes_reader(omit_zero: bool) -> Reader:
    def read_bytes(data: bytes, pos: int, end: int) -> tuple[Any, int]:
        n, pos = _read_len(data, pos, end)
        if not n and omit_zero:
            return _SKIP, pos
        return base64.b64encode(data[pos:pos + n]).decode(), pos + n
    return read_bytes


def _raw_reader(data: bytes, pos: int, end: int) -> tuple[Any, int]:
    n, pos = _read_len(data, pos, end)
    return data[pos:pos + n], pos + n


def _float_reader(double: bool, omit_zero: bool) -> Reader:
    unpack, size = (_DOUBLE, 8) if double else (_FLOAT, 4)

    def read_float(data: bytes, pos: int, end: int) -> tuple[Any, int]:
        if pos + size > end:
            raise Fallback
        (v,) = unpack(data, pos)
        if omit_zero and not v:
            return _SKIP, pos + size
        return convert._go_float(v), pos + size  # noqa: SLF001 - the reference's own rule
    return read_float


# -- message plans -----------------------------------------------------------------------------------

# per field: (field number, JSON key, reader, mode, repeated?) where mode says where the value goes
_SET, _LIST, _MAP, _INLINE, _OMITZERO = 0, 1, 2, 3, 4


class _Plan:
    """How to read one message type: its fields by full tag, and its kept decodings."""

    __slots__ = ("name", "fields", "special", "memo")

    def __init__(self, name: str) -> None:
        self.name = name
        self.fields: dict[int, tuple[int, str, Reader, int]] = {}
        self.special: Callable[[dict[int, Any]], Any] | None = None
        self.memo: memo.Memo | None = None


_plans: dict[str, _Plan] = {}


def _plan(name: str) -> _Plan:
    plan = _plans.get(name)
    if plan is None:
        plan = _plans[name] = _Plan(name)  # registered first: message types can be recursive
        _fill(plan, types.descriptor(name))
    return plan


def _unsupported(data: bytes, pos: int, end: int) -> tuple[Any, int]:
    raise Fallback


def _scalar_reader(fd: FieldDescriptor, omit_zero: bool) -> tuple[Reader, int]:
    """(reader, wire type) of a scalar field."""
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return _str_reader(omit_zero), 2
    if t == FieldDescriptor.TYPE_BYTES:
        return _bytes_reader(omit_zero), 2
    if t == FieldDescriptor.TYPE_BOOL:
        return _bool_reader(omit_zero), 0
    if t == FieldDescriptor.TYPE_INT32:
        return _int_reader(32, omit_zero), 0
    if t == FieldDescriptor.TYPE_INT64:
        return _int_reader(64, omit_zero), 0
    if t == FieldDescriptor.TYPE_DOUBLE:
        return _float_reader(True, omit_zero), 1
    if t == FieldDescriptor.TYPE_FLOAT:
        return _float_reader(False, omit_zero), 5
    return _unsupported, 0  # types the Kubernetes API does not use (enums, zigzag, fixed)


def _message_reader(name: str) -> Reader:
    def read_message(data: bytes, pos: int, end: int) -> tuple[Any, int]:
        n = data[pos]
        pos += 1
        if n >= 0x80:
            n, pos = _varint(data, pos - 1)
        stop = pos + n
        if stop > end:
            raise Fallback
        return _message(_plans.get(name) or _plan(name), data, pos, stop), stop
    return read_message


def _map_reader(fd: FieldDescriptor) -> Reader:
    entry = fd.message_type
    kfd, vfd = entry.fields_by_name["key"], entry.fields_by_name["value"]
    if kfd.type != FieldDescriptor.TYPE_STRING:
        return _unsupported
    if vfd.type == FieldDescriptor.TYPE_MESSAGE:
        read_v, vtag = _message_reader(vfd.message_type.full_name), 0x12
        vname: str | None = vfd.message_type.full_name
    else:
        read_v, wt = _scalar_reader(vfd, False)
        vtag, vname = 0x10 | wt, None
    read_key = _str_reader(False)
    zero: Any = _ZEROS.get(vfd.type, 0)
    if vfd.type == FieldDescriptor.TYPE_STRING:
        return _str_map_entry

    def default_value() -> Any:  # an entry without its value: the value type's zero
        return _message(_plan(vname), b"", 0, 0) if vname else zero

    def read_entry(data: bytes, pos: int, end: int) -> tuple[Any, int]:
        n = data[pos]
        pos += 1
        if n >= 0x80:
            n, pos = _varint(data, pos - 1)
        stop = pos + n
        if stop > end:
            raise Fallback
        key: Any = ""
        value: Any = _SKIP
        if pos < stop and data[pos] == 0x0A:
            key, pos = read_key(data, pos + 1, stop)
        if pos < stop and data[pos] == vtag:
            value, pos = read_v(data, pos + 1, stop)
        if pos != stop:
            raise Fallback  # out of order, repeated or unknown fields in the entry
        return (key, default_value() if value is _SKIP else value), stop
    return read_entry


def _str_map_entry(data: bytes, pos: int, end: int) -> tuple[Any, int]:
    """One entry of a string → string map (labels, annotations, data, selectors), short lengths inline."""
    n = data[pos]
    pos += 1
    if n >= 0x80:
        n, pos = _varint(data, pos - 1)
    stop = pos + n
    if stop > end:
        raise Fallback
    key = value = ""
    if pos < stop and data[pos] == 0x0A:
        n = data[pos + 1]
        if n >= 0x80:
            n, pos = _varint(data, pos + 1)
        else:
            pos += 2
        key = data[pos:pos + n].decode()
        pos += n
    if pos < stop and data[pos] == 0x12:
        n = data[pos + 1]
        if n >= 0x80:
            n, pos = _varint(data, pos + 1)
        else:
            pos += 2
        value = data[pos:pos + n].decode()
        pos += n
    if pos != stop:
        raise Fallback  # out of order, repeated, unknown or overlong fields in the entry
    return (key, value), stop


_ZEROS = {FieldDescriptor.TYPE_STRING: "", FieldDescriptor.TYPE_BYTES: "", FieldDescriptor.TYPE_BOOL: False}


def _fill(plan: _Plan, desc: Descriptor) -> None:
    name = desc.full_name
    special = _special(name)
    if special is not None:
        plan.special = special
        for fd in desc.fields:
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                plan.fields = {}
                plan.special = _special_unsupported
                return
            reader, wt = (_raw_reader, 2) if fd.type == FieldDescriptor.TYPE_BYTES else _scalar_reader(fd, False)
            mode = _LIST if fd.is_repeated else _SET
            plan.fields[(fd.number << 3) | wt] = (fd.number, str(fd.number), reader, mode)
        return
    composite = False
    for fd in desc.fields:
        go = types.go_field(name, fd)
        tag_len = (fd.number << 3) | 2
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            plan.fields[tag_len] = (fd.number, go.json, _map_reader(fd), _MAP)
            composite = True
            continue
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            composite = True
            reader = _message_reader(fd.message_type.full_name)
            if fd.is_repeated:
                mode = _LIST
            elif go.omitzero and not go.pointer:
                mode = _OMITZERO
            elif go.inline:
                mode = _INLINE
            else:
                mode = _SET
            plan.fields[tag_len] = (fd.number, go.json, reader, mode)
            continue
        omit = not fd.is_repeated and go.omitempty and not go.pointer
        reader, wt = _scalar_reader(fd, omit)
        if fd.is_repeated:
            composite = True
            plan.fields[(fd.number << 3) | wt] = (fd.number, go.json, reader, _LIST)
        else:
            plan.fields[(fd.number << 3) | wt] = (fd.number, go.json, reader, _SET)
    if composite and not memo.has_float(desc):
        plan.memo = memo.new(name)


def _message(plan: _Plan, data: bytes, pos: int, end: int) -> Any:
    """The JSON value of the message ``data[pos:end]``."""
    kept = plan.memo
    if kept is not None and _MIN <= end - pos <= _MAX and kept.active():
        key = data[pos:end]
        hit = kept.get(key)
        if hit is not None:
            return orjson.loads(hit)
        value = _read_fields(plan, data, pos, end)
        try:
            kept.put(key, orjson.dumps(value))
        except TypeError:  # not JSON orjson writes (nested too deeply): not kept
            pass
        return value
    return _read_fields(plan, data, pos, end)


def _read_fields(plan: _Plan, data: bytes, pos: int, end: int) -> Any:
    fields = plan.fields
    special = plan.special
    out: dict[Any, Any] = {}
    last = 0
    while pos < end:
        tag = data[pos]
        pos += 1
        if tag >= 0x80:
            tag, pos = _varint(data, pos - 1)
        entry = fields.get(tag)
        if entry is None:
            raise Fallback  # unknown field or wrong wire type
        number, key, reader, mode = entry
        if number <= last:
            if number < last or mode == _SET or mode == _INLINE or mode == _OMITZERO:
                raise Fallback  # out of order, or a singular field twice (merge semantics)
        last = number
        value, pos = reader(data, pos, end)
        if mode == _SET:
            if value is not _SKIP:
                out[key] = value
        elif mode == _LIST:
            lst = out.get(key)
            if lst is None:
                out[key] = [value]
            else:
                lst.append(value)
        elif mode == _MAP:
            m = out.get(key)
            if m is None:
                m = out[key] = {}
            m[value[0]] = value[1]
        elif mode == _INLINE:
            out.update(value)
        elif value is not None and value != {}:  # _OMITZERO
            out[key] = value
    if pos != end:
        raise Fallback
    if special is not None:
        return special(out)
    return out


# -- special shapes (see convert._make_special_to_json) --------------------------------------------------

def _special_unsupported(fields: dict[Any, Any]) -> Any:
    raise Fallback


def _special(name: str) -> Callable[[dict[Any, Any]], Any] | None:
    # fields arrive keyed by their number as text (only specials of scalar fields get here)
    if name in (convert.TIME, convert.MICRO_TIME):
        micro = name == convert.MICRO_TIME

        def time(f: dict[Any, Any]) -> Any:
            s, n = f.get("1", 0), f.get("2", 0)
            return None if not (s or n) else convert._fmt_time(s, n, micro)  # noqa: SLF001
        return time
    if name == convert.DURATION:
        return lambda f: convert.format_duration(f.get("1", 0))
    if name == convert.QUANTITY:
        return lambda f: f.get("1", "")
    if name == convert.INT_OR_STRING:
        return lambda f: f.get("3", "") if f.get("1", 0) == 1 else f.get("2", 0)
    if name in (convert.RAW_EXTENSION, convert.FIELDS_V1, f"{convert._APIEXT}.JSON"):  # noqa: SLF001
        def raw(f: dict[Any, Any]) -> Any:
            b = f.get("1")
            return orjson.loads(b) if b else None
        return raw
    if name.startswith(f"{convert._APIEXT}.JSONSchemaPropsOr"):  # noqa: SLF001
        return _special_unsupported
    if name in types.wrappers():
        return lambda f: f.get("1", [])
    return None


def decode_message(raw: bytes, name: str) -> dict[str, Any]:
    """The JSON object of message ``name`` in ``raw``; raises :class:`Fallback` when the bytes are not
    in Go's canonical form (or anything else is odd about them)."""
    try:
        out = _read_fields(_plans.get(name) or _plan(name), raw, 0, len(raw))  # an object rarely repeats
    except Fallback:
        raise
    except Exception as exc:  # truncation (IndexError), bad UTF-8, bad JSON in a RawExtension...
        raise Fallback from exc
    if not isinstance(out, dict):
        raise Fallback
    return out
