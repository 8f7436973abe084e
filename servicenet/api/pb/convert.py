"""Protobuf message ↔ Kubernetes JSON dict, driven by the descriptors and the Go tags.

One conversion plan per message type, built on first use from its descriptor (see :mod:`.types`):
no kind has its own code. The JSON side follows Go's ``encoding/json`` on upstream's types:

* a zero scalar of a non-pointer ``omitempty`` field is left out (Go writes such fields on the protobuf
  wire anyway: ``ServiceSpec.clusterIP = ""``); pointer fields are written whenever present;
* structs are always written (``"status": {}``), inlined structs are merged into their parent;
* ``Time`` is RFC 3339 to the second (``null`` when zero), ``MicroTime`` to the microsecond,
  ``Duration`` a Go duration string, ``Quantity`` a string, ``IntOrString`` a number or a string,
  ``RawExtension``/``FieldsV1``/apiextensions ``JSON`` inline JSON, ``bytes`` standard base64;
* named-slice wrappers (``ExtraValue``) are plain lists.

Going the other way, keys the message does not have are reported (for ``fieldValidation``) and a
``null`` leaves the field unset, except that a non-pointer struct is marked present, as Go writes it.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import datetime as dt
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from servicenet.api.pb import types

_SKIP = object()
_META = types.META
TIME = f"{_META}.Time"
MICRO_TIME = f"{_META}.MicroTime"
DURATION = f"{_META}.Duration"
FIELDS_V1 = f"{_META}.FieldsV1"
RAW_EXTENSION = f"{types.RUNTIME}.RawExtension"
QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_APIEXT = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1"
_IGNORED_KEYS = frozenset({"apiVersion", "kind"})  # TypeMeta: dropped from protobuf messages


class ConversionError(ValueError):
    """A JSON value that does not fit its protobuf field; ``path`` names the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.detail = message

    def under(self, key: str) -> ConversionError:
        """The same error seen from the parent: ``key`` prefixed to its path."""
        sub = self.path
        path = key if not sub else (key + sub if sub.startswith("[") else f"{key}.{sub}")
        return ConversionError(path, self.detail)


# -- scalar shapes -----------------------------------------------------------------------------------

@lru_cache(maxsize=256)  # objects written in the same second share their timestamps
def _fmt_time(seconds: int, nanos: int, micro: bool) -> str:
    t = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)
    if micro:
        return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d\d):(\d\d))$")


@lru_cache(maxsize=256)
def parse_time(s: str) -> tuple[int, int]:
    """RFC 3339 text → (Unix seconds, nanoseconds)."""
    m = _RFC3339.match(s)
    if m is None:
        raise ValueError(f"parsing time {s!r}: not RFC 3339")
    y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
    seconds = calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0))
    if m.group(9):
        off = int(m.group(10)) * 3600 + int(m.group(11)) * 60
        seconds -= off if m.group(9) == "+" else -off
    frac = m.group(7) or ""
    nanos = int(frac.ljust(9, "0")) if frac else 0
    return seconds, nanos


_UNITS = (("h", 3600 * 10**9), ("m", 60 * 10**9), ("s", 10**9), ("ms", 10**6), ("us", 10**3),
          ("µs", 10**3), ("ns", 1))
_DUR_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")


def format_duration(ns: int) -> str:
    """Go's ``time.Duration.String``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 10**9:
        for unit, size in (("ms", 10**6), ("µs", 10**3), ("ns", 1)):
            if ns >= size:
                whole, rest = divmod(ns, size)
                frac = f"{rest:0{len(str(size)) - 1}d}".rstrip("0") if size > 1 else ""
                return f"{sign}{whole}{'.' + frac if frac else ''}{unit}"
    h, rest = divmod(ns, 3600 * 10**9)
    m, rest = divmod(rest, 60 * 10**9)
    s, frac_ns = divmod(rest, 10**9)
    frac = f"{frac_ns:09d}".rstrip("0")
    out = f"{s}{'.' + frac if frac else ''}s"
    if h:
        return f"{sign}{h}h{m}m{out}"
    if m:
        return f"{sign}{m}m{out}"
    return sign + out


def parse_duration(s: str) -> int:
    text = s.strip()
    neg = text.startswith("-")
    text = text.lstrip("+-")
    if text == "0":
        return 0
    pos, total = 0, 0.0
    for m in _DUR_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * dict(_UNITS)[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"time: invalid duration {s!r}")
    return -int(total) if neg else int(total)


# -- proto → JSON --------------------------------------------------------------------------------------

ToJson = Callable[[Any], Any]
_to_plans: dict[str, dict[int, tuple[str, ToJson, bool]]] = {}


_specials: dict[str, ToJson | None] = {}


def _special_to_json(name: str) -> ToJson | None:
    try:
        return _specials[name]
    except KeyError:
        conv = _specials[name] = _make_special_to_json(name)
        return conv


def _make_special_to_json(name: str) -> ToJson | None:
    if name == TIME:
        return lambda m: None if not (m.seconds or m.nanos) else _fmt_time(m.seconds, m.nanos, False)
    if name == MICRO_TIME:
        return lambda m: None if not (m.seconds or m.nanos) else _fmt_time(m.seconds, m.nanos, True)
    if name == DURATION:
        return lambda m: format_duration(m.duration)
    if name == QUANTITY:
        return lambda m: _text(m.string)
    if name == INT_OR_STRING:
        return lambda m: _text(m.strVal) if m.type == 1 else m.intVal
    if name in (RAW_EXTENSION, f"{_APIEXT}.JSON"):
        return lambda m: orjson.loads(m.raw) if m.raw else None
    if name == FIELDS_V1:
        return lambda m: orjson.loads(m.Raw) if m.Raw else None
    if name == f"{_APIEXT}.JSONSchemaPropsOrArray":
        return lambda m: [to_json(s) for s in m.jSONSchemas] if len(m.jSONSchemas) else (
            to_json(m.schema) if m.HasField("schema") else None)
    if name == f"{_APIEXT}.JSONSchemaPropsOrBool":
        return lambda m: to_json(m.schema) if m.HasField("schema") else bool(m.allows)
    if name == f"{_APIEXT}.JSONSchemaPropsOrStringArray":
        return lambda m: list(m.property) if len(m.property) else (
            to_json(m.schema) if m.HasField("schema") else None)
    if name in types.wrappers():
        return lambda m: list(m.items)
    return None


def _value_to_json(fd: FieldDescriptor) -> ToJson:
    """How one element (scalar or message) of field ``fd`` becomes JSON."""
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        name = fd.message_type.full_name
        special = _special_to_json(name)
        if special is not None:
            return special
        return lambda m: to_json(m, name)
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return lambda b: base64.b64encode(b).decode()
    if fd.type == FieldDescriptor.TYPE_STRING:
        return _text
    if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return _go_float  # Go's encoding/json writes a whole float64 without a fraction (CRD ``minimum: 0``)
    return lambda v: v


def _text(v: Any) -> Any:
    """A proto2 string field is not checked for UTF-8 on decode (here as in Go); like Go's JSON
    encoder, invalid bytes become U+FFFD instead of leaking ``bytes`` into the object."""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else v


def _go_float(v: float) -> int | float:
    return int(v) if v.is_integer() and abs(v) < 1e21 else v


def _field_to_json(message: str, fd: FieldDescriptor) -> tuple[str, ToJson, bool]:
    go = types.go_field(message, fd)
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        conv = _value_to_json(fd.message_type.fields_by_name["value"])
        return go.json, lambda m: {_text(k): conv(v) for k, v in m.items()}, False
    conv = _value_to_json(fd)
    if fd.is_repeated:
        return go.json, lambda r: [conv(v) for v in r], False
    if fd.type != FieldDescriptor.TYPE_MESSAGE and go.omitempty and not go.pointer:
        return go.json, lambda v: conv(v) if v else _SKIP, False
    if go.omitzero and not go.pointer:
        def skip_zero(v: Any) -> Any:
            out = conv(v)
            return _SKIP if out is None or out == {} else out
        return go.json, skip_zero, False
    return go.json, conv, go.inline and fd.type == FieldDescriptor.TYPE_MESSAGE


def _to_plan(desc: Descriptor) -> dict[int, tuple[str, ToJson, bool]]:
    plan = _to_plans.get(desc.full_name)
    if plan is None:
        plan = _to_plans[desc.full_name] = {}
        for fd in desc.fields:
            plan[fd.number] = _field_to_json(desc.full_name, fd)
    return plan


def to_json(msg: Any, _name: str | None = None) -> Any:
    """A decoded message as the JSON value upstream's Go types would marshal to."""
    desc = msg.DESCRIPTOR
    special = _special_to_json(desc.full_name) if _name is None else None
    if special is not None:
        return special(msg)
    plan = _to_plans.get(desc.full_name) or _to_plan(desc)
    out: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        key, conv, inline = plan[fd.number]
        v = conv(value)
        if v is _SKIP:
            continue
        if inline:
            out.update(v)
        else:
            out[key] = v
    return out


# -- JSON → proto --------------------------------------------------------------------------------------

# setter(msg, json value, path, unknown paths) fills one field of msg
Setter = Callable[[Any, Any, str, list[str]], None]
_from_plans: dict[str, dict[str, tuple[Setter, str]]] = {}


def _int(v: Any, path: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int | float) or (isinstance(v, float) and not v.is_integer()):
        raise ConversionError(path, f"cannot unmarshal {type(v).__name__} into an integer field")
    return int(v)


def _scalar(fd: FieldDescriptor) -> Callable[[Any, str], Any]:
    t = fd.type
    if t == FieldDescriptor.TYPE_BYTES:
        def to_bytes(v: Any, path: str) -> bytes:
            if not isinstance(v, str):
                raise ConversionError(path, "cannot unmarshal into a base64 byte field: not a string")
            try:
                return base64.b64decode(v, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ConversionError(path, f"illegal base64 data: {exc}") from None
        return to_bytes
    if t == FieldDescriptor.TYPE_STRING:
        def to_str(v: Any, path: str) -> str:
            if not isinstance(v, str):
                raise ConversionError(path, f"cannot unmarshal {type(v).__name__} into a string field")
            return v
        return to_str
    if t == FieldDescriptor.TYPE_BOOL:
        def to_bool(v: Any, path: str) -> bool:
            if not isinstance(v, bool):
                raise ConversionError(path, f"cannot unmarshal {type(v).__name__} into a bool field")
            return v
        return to_bool
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        def to_float(v: Any, path: str) -> float:
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ConversionError(path, f"cannot unmarshal {type(v).__name__} into a number field")
            return float(v)
        return to_float
    return _int


def _fill_special(name: str) -> Callable[[Any, Any, str], None] | None:
    """Fill a special message ``m`` from its JSON form, or None if ``name`` is an ordinary message."""
    if name in (TIME, MICRO_TIME):
        def fill_time(m: Any, v: Any, path: str) -> None:
            if not isinstance(v, str):
                raise ConversionError(path, "a time must be an RFC 3339 string")
            try:
                s, n = parse_time(v)
            except ValueError as exc:
                raise ConversionError(path, str(exc)) from None
            m.seconds = s
            m.nanos = (n // 1000) * 1000 if name == MICRO_TIME else 0
        return fill_time
    if name == DURATION:
        def fill_duration(m: Any, v: Any, path: str) -> None:
            try:
                m.duration = parse_duration(v) if isinstance(v, str) else _int(v, path)
            except ValueError as exc:
                raise ConversionError(path, str(exc)) from None
        return fill_duration
    if name == QUANTITY:
        def fill_quantity(m: Any, v: Any, path: str) -> None:
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                raise ConversionError(path, "quantities must match the regular expression "
                                            "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")
            m.string = v if isinstance(v, str) else str(v)
        return fill_quantity
    if name == INT_OR_STRING:
        def fill_ios(m: Any, v: Any, path: str) -> None:
            if isinstance(v, str):
                m.type, m.strVal = 1, v
            elif isinstance(v, int) and not isinstance(v, bool):
                m.type, m.intVal = 0, v
            else:
                raise ConversionError(path, "an int-or-string must be an integer or a string")
        return fill_ios
    if name in (RAW_EXTENSION, f"{_APIEXT}.JSON"):
        def fill_raw(m: Any, v: Any, path: str) -> None:
            m.raw = orjson.dumps(v)
        return fill_raw
    if name == FIELDS_V1:
        def fill_fields(m: Any, v: Any, path: str) -> None:
            m.Raw = orjson.dumps(v)
        return fill_fields
    if name == f"{_APIEXT}.JSONSchemaPropsOrArray":
        def fill_or_array(m: Any, v: Any, path: str) -> None:
            if isinstance(v, list):
                for i, s in enumerate(v):
                    from_json(s, m.jSONSchemas.add(), f"{path}[{i}]", [])
            else:
                from_json(v, m.schema, path, [])
        return fill_or_array
    if name == f"{_APIEXT}.JSONSchemaPropsOrBool":
        def fill_or_bool(m: Any, v: Any, path: str) -> None:
            if isinstance(v, bool):
                m.allows = v
            else:
                m.allows = True
                from_json(v, m.schema, path, [])
        return fill_or_bool
    if name == f"{_APIEXT}.JSONSchemaPropsOrStringArray":
        def fill_or_strings(m: Any, v: Any, path: str) -> None:
            if isinstance(v, list):
                m.property.extend(v)
            else:
                from_json(v, m.schema, path, [])
        return fill_or_strings
    if name in types.wrappers():
        def fill_wrapper(m: Any, v: Any, path: str) -> None:
            if not isinstance(v, list):
                raise ConversionError(path, "expected a list")
            m.items.extend(v)
        return fill_wrapper
    return None


def _element_filler(fd: FieldDescriptor) -> Callable[[Any, Any, str, list[str]], None]:
    """Fill a message element ``m`` (field, list item or map value) from JSON."""
    name = fd.message_type.full_name
    special = _fill_special(name)
    if special is not None:
        return lambda m, v, path, unknown: special(m, v, path)

    def fill(m: Any, v: Any, path: str, unknown: list[str]) -> None:
        if not isinstance(v, dict):
            raise ConversionError(path, f"expected an object, got {type(v).__name__}")
        from_json(v, m, path, unknown)
        m.SetInParent()
    return fill


def _field_setter(message: str, fd: FieldDescriptor) -> Setter:
    attr = fd.name
    go = types.go_field(message, fd)
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        vfd = fd.message_type.fields_by_name["value"]
        if vfd.type == FieldDescriptor.TYPE_MESSAGE:
            fill_v = _element_filler(vfd)

            def set_msg_map(msg: Any, v: Any, path: str, unknown: list[str]) -> None:
                if not isinstance(v, dict):
                    raise ConversionError(path, "expected an object")
                target = getattr(msg, attr)
                for k, item in v.items():
                    if item is not None:
                        fill_v(target[k], item, f"{path}[{k}]", unknown)
            return set_msg_map
        conv_v = _scalar(vfd)

        def set_map(msg: Any, v: Any, path: str, unknown: list[str]) -> None:
            if not isinstance(v, dict):
                raise ConversionError(path, "expected an object")
            target = getattr(msg, attr)
            for k, item in v.items():
                if item is not None:
                    target[k] = conv_v(item, f"{path}[{k}]")
        return set_map
    if fd.is_repeated:
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            fill_e = _element_filler(fd)

            def set_msg_list(msg: Any, v: Any, path: str, unknown: list[str]) -> None:
                if not isinstance(v, list):
                    raise ConversionError(path, "expected a list")
                target = getattr(msg, attr)
                for i, item in enumerate(v):
                    fill_e(target.add(), item if item is not None else {}, f"{path}[{i}]", unknown)
            return set_msg_list
        conv_e = _scalar(fd)

        def set_list(msg: Any, v: Any, path: str, unknown: list[str]) -> None:
            if not isinstance(v, list):
                raise ConversionError(path, "expected a list")
            getattr(msg, attr).extend([conv_e(item, f"{path}[{i}]") for i, item in enumerate(v)])
        return set_list
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        fill = _element_filler(fd)
        if go.inline:
            def set_inline(msg: Any, v: Any, path: str, unknown: list[str]) -> None:
                fill(getattr(msg, attr), v, path, unknown)
            return set_inline

        def set_msg(msg: Any, v: Any, path: str, unknown: list[str]) -> None:
            fill(getattr(msg, attr), v, path, unknown)
        return set_msg
    conv = _scalar(fd)

    def set_scalar(msg: Any, v: Any, path: str, unknown: list[str]) -> None:
        setattr(msg, attr, conv(v, path))
    return set_scalar


def _from_plan(desc: Descriptor) -> dict[str, tuple[Setter, str]]:
    """JSON key → (setter, name used in paths); inlined structs contribute their keys."""
    plan = _from_plans.get(desc.full_name)
    if plan is not None:
        return plan
    plan = _from_plans[desc.full_name] = {}
    for fd in desc.fields:
        go = types.go_field(desc.full_name, fd)
        if go.inline and fd.type == FieldDescriptor.TYPE_MESSAGE and not fd.is_repeated:
            inner = _from_plan(fd.message_type)
            attr = fd.name
            for key, (setter, _) in inner.items():
                plan[key] = (_via(attr, setter), key)
            continue
        plan[go.json] = (_field_setter(desc.full_name, fd), go.json)
    return plan


def _via(attr: str, setter: Setter) -> Setter:
    def set_in_inline(msg: Any, v: Any, path: str, unknown: list[str]) -> None:
        setter(getattr(msg, attr), v, path, unknown)
    return set_in_inline


def _nulled(desc: Descriptor) -> dict[str, str]:
    """JSON keys whose ``null`` still marks the field present: non-pointer structs (Go writes them)."""
    out: dict[str, str] = {}
    for fd in desc.fields:
        go = types.go_field(desc.full_name, fd)
        if fd.type == FieldDescriptor.TYPE_MESSAGE and not fd.is_repeated and not go.pointer and not go.inline:
            out[go.json] = fd.name
    return out


_null_plans: dict[str, dict[str, str]] = {}


def from_json(obj: dict[str, Any], msg: Any, path: str = "", unknown: list[str] | None = None) -> Any:
    """Fill ``msg`` from a JSON object; keys it has no field for are appended to ``unknown``.

    Raises :class:`ConversionError` for a value of the wrong shape.
    """
    if unknown is None:
        unknown = []
    desc = msg.DESCRIPTOR
    special = _fill_special(desc.full_name)
    if special is not None:
        special(msg, obj, path)
        return msg
    if not isinstance(obj, dict):
        raise ConversionError(path, f"expected an object, got {type(obj).__name__}")
    plan = _from_plans.get(desc.full_name) or _from_plan(desc)
    prefix = f"{path}." if path else ""
    for key, value in obj.items():
        entry = plan.get(key)
        if entry is None:
            if key not in _IGNORED_KEYS:
                unknown.append(prefix + key)
            continue
        if value is None:
            nulls = _null_plans.get(desc.full_name)
            if nulls is None:
                nulls = _null_plans[desc.full_name] = _nulled(desc)
            if key in nulls:
                getattr(msg, nulls[key]).SetInParent()
            continue
        entry[0](msg, value, prefix + key, unknown)
    return msg
