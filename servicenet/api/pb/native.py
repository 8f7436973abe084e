"""The protobuf codec's fast paths in C (``_cpb``, built from ``_cpb.c`` by ``pip install``), when built.

The C module walks tables; this module fills them, one per message type on first use, from the plans
of the pure-Python fast paths (:mod:`.decode`, :mod:`.encode`): the same tags, JSON keys, modes, slots,
inlined structs and nulls, with each field's reader or writer picked from its descriptor. So the two
cannot disagree about the mapping, and no kind has code of its own.

The pure-Python paths stay the reference and the fallback:

* :func:`decode_message` answers what :func:`.decode.decode_message` answers: when the C loop meets
  anything but Go's canonical bytes it raises :class:`.decode.Fallback` and the Python fast path runs
  (which in turn falls back to the message-object reference in :mod:`.wire`);
* :func:`encode_message` answers what :func:`.encode.encode_message` answers: when a value does not
  fit, the Python encoder runs again and raises its descriptive :class:`.convert.ConversionError`.

``SERVICENET_PB_NATIVE=0`` in a servicenet process's environment turns the C paths off (A/B
measurements; servicenet.cli reads it).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from servicenet.api.pb import convert, decode, encode, types

try:
    from servicenet.api.pb import _cpb  # type: ignore[attr-defined]
except ImportError:  # not built (no C compiler at install time): the pure-Python paths serve
    _cpb = None

#: the C module is importable
BUILT = _cpb is not None
#: the C paths are in use when built; a process started with SERVICENET_PB_NATIVE=0 turns them off
#: through ``wire.use_native(False)`` (the CLI reads the environment: this core does no I/O)
ENABLED = BUILT

# reader, mode and special kinds: the enums at the top of _cpb.c
R_UNSUPPORTED, R_INT32, R_INT64, R_BOOL, R_STR, R_BYTES, R_RAW, R_DOUBLE, R_FLOAT, R_MSG, R_MAP_SS, R_MAP = range(12)
(S_NONE, S_TIME, S_MICRO_TIME, S_DURATION, S_QUANTITY, S_INT_OR_STRING, S_RAW, S_WRAPPER,
 S_UNSUPPORTED) = range(9)
E_NONE, E_STR, E_BYTES, E_BOOL, E_DOUBLE, E_FLOAT, E_INT, E_MSG, E_MAP_SS, E_MAP, E_INLINE = range(11)
P_PLAIN, P_QUANTITY, P_INT_OR_STRING, P_CALL, P_TIME, P_RAW = range(6)

_T = FieldDescriptor
_SCALAR_READERS = {_T.TYPE_STRING: R_STR, _T.TYPE_BYTES: R_BYTES, _T.TYPE_BOOL: R_BOOL, _T.TYPE_INT32: R_INT32,
                   _T.TYPE_INT64: R_INT64, _T.TYPE_DOUBLE: R_DOUBLE, _T.TYPE_FLOAT: R_FLOAT}
_WIRE = {R_STR: 2, R_BYTES: 2, R_RAW: 2, R_BOOL: 0, R_INT32: 0, R_INT64: 0, R_DOUBLE: 1, R_FLOAT: 5,
         R_UNSUPPORTED: 0}
_RAW_NAMES = (convert.RAW_EXTENSION, convert.FIELDS_V1, f"{convert._APIEXT}.JSON")  # noqa: SLF001


def _b64decode(v: str) -> bytes:
    return base64.b64decode(v, validate=True)


if _cpb is not None:
    _cpb.configure(decode.Fallback, convert._fmt_time, convert.format_duration,  # noqa: SLF001
                   convert._go_float, orjson.loads, _b64decode, orjson.dumps)  # noqa: SLF001


# -- decoding ----------------------------------------------------------------------------------------

_dec: dict[str, Any] = {}


def _special_kind(name: str) -> int:
    """The C loop's kind for a message decode.py treats as a special JSON shape (same tests, same order)."""
    if name == convert.TIME:
        return S_TIME
    if name == convert.MICRO_TIME:
        return S_MICRO_TIME
    if name == convert.DURATION:
        return S_DURATION
    if name == convert.QUANTITY:
        return S_QUANTITY
    if name == convert.INT_OR_STRING:
        return S_INT_OR_STRING
    if name in _RAW_NAMES:
        return S_RAW
    if name.startswith(f"{convert._APIEXT}.JSONSchemaPropsOr"):  # noqa: SLF001
        return S_UNSUPPORTED
    if name in types.wrappers():
        return S_WRAPPER
    return S_NONE


def _scalar_reader(fd: FieldDescriptor) -> int:
    return _SCALAR_READERS.get(fd.type, R_UNSUPPORTED)


def _kept_plan(kept: dict[str, Any], name: str, make: Callable[[], Any], fill: Callable[[Any, str], None]) -> Any:
    """The C plan of message ``name``, made once: registered before it is filled (types can be recursive)."""
    plan = kept.get(name)
    if plan is None:
        plan = kept[name] = make()
        fill(plan, name)
    return plan


def _dec_plan(name: str) -> Any:
    assert _cpb is not None
    return _kept_plan(_dec, name, _cpb.DecPlan, _dec_fill)


def _dec_fill(plan: Any, name: str) -> None:
    py = decode._plan(name)  # noqa: SLF001 - the reference's table: tags, keys and modes
    desc: Descriptor = types.descriptor(name)
    special = S_NONE
    if py.special is decode._special_unsupported:  # noqa: SLF001
        special = S_UNSUPPORTED
    elif py.special is not None:
        special = _special_kind(name)
        if special == S_NONE:
            raise RuntimeError(f"{name}: a special shape the C decoder does not know")
    rows = []
    for tag, (number, key, reader, mode) in py.fields.items():
        fd = desc.fields_by_number[number]
        omit, sub, vreader, vtag, zero = False, None, R_UNSUPPORTED, 0, None
        if special != S_NONE:
            kind = R_RAW if reader is decode._raw_reader else _scalar_reader(fd)  # noqa: SLF001
        elif mode == decode._MAP:  # noqa: SLF001
            kfd, vfd = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
            if reader is decode._str_map_entry:  # noqa: SLF001
                kind = R_MAP_SS
            elif reader is decode._unsupported:  # noqa: SLF001
                kind = R_UNSUPPORTED
            else:
                assert kfd.type == _T.TYPE_STRING
                kind = R_MAP
                if vfd.type == _T.TYPE_MESSAGE:
                    vreader, vtag, sub = R_MSG, 0x12, _dec_plan(vfd.message_type.full_name)
                else:
                    vreader = _scalar_reader(vfd)
                    vtag = 0x10 | _WIRE[vreader]
                    zero = decode._ZEROS.get(vfd.type, 0)  # noqa: SLF001
        elif fd.type == _T.TYPE_MESSAGE:
            kind, sub = R_MSG, _dec_plan(fd.message_type.full_name)
        else:
            kind = _scalar_reader(fd)
            go = types.go_field(name, fd)
            omit = not fd.is_repeated and go.omitempty and not go.pointer
        if kind not in (R_MSG, R_MAP, R_MAP_SS) and tag & 7 != _WIRE[kind]:
            raise RuntimeError(f"{name}.{fd.name}: tag {tag} does not match its reader")
        rows.append((tag, number, key, kind, mode, omit, sub, vreader, vtag, zero))
    plan.fill(special, rows)


def decode_native(raw: bytes, name: str) -> dict[str, Any]:
    """The C loop alone: the JSON object of message ``name`` in ``raw``, or :class:`.decode.Fallback`."""
    assert _cpb is not None
    out: dict[str, Any] = _cpb.decode(_dec.get(name) or _dec_plan(name), raw)
    return out


def decode_message(raw: bytes, name: str) -> dict[str, Any]:
    """:func:`.decode.decode_message`'s answer, from C when the bytes are Go's canonical form."""
    assert _cpb is not None
    try:
        out: dict[str, Any] = _cpb.decode(_dec.get(name) or _dec_plan(name), raw)
        return out
    except decode.Fallback:
        return decode.decode_message(raw, name)


def split_envelope(body: bytes) -> tuple[str, str, bytes] | None:
    """``(apiVersion, kind, raw)`` of an envelope as Go writes it (typeMeta with a kind, raw, empty
    content encoding and type), else None: the message-object path in :mod:`.wire` decides."""
    assert _cpb is not None
    out: tuple[str, str, bytes] | None = _cpb.split_envelope(body)
    return out


# -- encoding ----------------------------------------------------------------------------------------

_enc: dict[str, Any] = {}


def _scalar_val(fd: FieldDescriptor, number: int) -> tuple[int, int, bytes, None, None]:
    """The value spec of a scalar field written as field ``number`` (encode._scalar_encoder's cases)."""
    t = fd.type
    if t == _T.TYPE_STRING:
        return (E_STR, 0, encode._tag(number, 2), None, None)  # noqa: SLF001
    if t == _T.TYPE_BYTES:
        return (E_BYTES, 0, encode._tag(number, 2), None, None)  # noqa: SLF001
    if t == _T.TYPE_BOOL:
        return (E_BOOL, 0, encode._tag(number, 0), None, None)  # noqa: SLF001
    if t == _T.TYPE_DOUBLE:
        return (E_DOUBLE, 0, encode._tag(number, 1), None, None)  # noqa: SLF001
    if t == _T.TYPE_FLOAT:
        return (E_FLOAT, 0, encode._tag(number, 5), None, None)  # noqa: SLF001
    return (E_INT, 0, encode._tag(number, 0), None, None)  # noqa: SLF001 - every other type: a varint


def _message_val(desc: Descriptor, number: int) -> tuple[int, int, bytes, Any, Any]:
    """The value spec of a message written as field ``number`` (encode._message_payload's cases)."""
    name = desc.full_name
    tag = encode._tag(number, 2)  # noqa: SLF001
    pay = encode._special_payload(name)  # noqa: SLF001
    if pay is None:
        return (E_MSG, P_PLAIN, tag, _enc_plan(name), None)
    shape = {convert.QUANTITY: P_QUANTITY, convert.INT_OR_STRING: P_INT_OR_STRING, convert.TIME: P_TIME,
             **dict.fromkeys(_RAW_NAMES, P_RAW)}.get(name, P_CALL)
    return (E_MSG, shape, tag, None, pay)


def _enc_plan(name: str) -> Any:
    assert _cpb is not None
    return _kept_plan(_enc, name, _cpb.EncPlan, _enc_fill)


def _enc_fill(plan: Any, name: str) -> None:
    py = encode._plan(name)  # noqa: SLF001 - the reference's table: keys, slots, nulls, inlined structs
    fields = sorted(types.descriptor(name).fields, key=lambda f: f.number)
    keys: dict[str, int] = {}
    rows: list[tuple[Any, ...]] = []
    by_slot: dict[int, int] = {}
    for key, (slot, enc) in py.keys.items():
        if enc is None:  # a key of an inlined struct
            keys[key] = len(rows)
            rows.append((slot, False, (E_INLINE, 0, b"", None, None), None, None, None))
            continue
        if slot in by_slot:
            keys[key] = by_slot[slot]
            continue
        fd = fields[slot]
        mkey = mval = None
        repeated = fd.is_repeated
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            kfd, vfd = fd.message_type.fields_by_name["key"], fd.message_type.fields_by_name["value"]
            tag = encode._tag(fd.number, 2)  # noqa: SLF001
            if kfd.type == vfd.type == _T.TYPE_STRING:
                val: tuple[Any, ...] = (E_MAP_SS, 0, tag, None, None)
            else:
                val = (E_MAP, 0, tag, None, None)
            mkey = _scalar_val(kfd, 1)
            mval = _message_val(vfd.message_type, 2) if vfd.type == _T.TYPE_MESSAGE else _scalar_val(vfd, 2)
            repeated = False
        elif fd.type == _T.TYPE_MESSAGE:
            val = _message_val(fd.message_type, fd.number)
        else:
            val = _scalar_val(fd, fd.number)
        by_slot[slot] = keys[key] = len(rows)
        rows.append((slot, repeated, val, mkey, mval, py.nulls.get(key)))
    inlines = [(slot, tag, _enc_plan(sub)) for slot, (tag, sub) in py.inlines.items()]
    plan.fill(keys, py.size, rows, inlines)


def encode_native(obj: dict[str, Any], name: str) -> bytes:
    """The C loop alone: ``obj`` as message ``name``, or :class:`.decode.Fallback` when a value does not fit."""
    assert _cpb is not None
    out: bytes = _cpb.encode(_enc.get(name) or _enc_plan(name), obj)
    return out


def encode_message(obj: dict[str, Any], name: str) -> bytes:
    """:func:`.encode.encode_message`'s answer (and its errors), from C when every value fits."""
    assert _cpb is not None
    try:
        out: bytes = _cpb.encode(_enc.get(name) or _enc_plan(name), obj)
        return out
    except decode.Fallback:
        return encode.encode_message(obj, name)
