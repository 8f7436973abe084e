"""One structural schema (a CRD version's ``openAPIV3Schema``) applied to a custom object (pure).

Order on every write, as upstream: :func:`prune` (unknown fields and non-nullable ``null`` leave),
:func:`default`, then :func:`validate`. ``apiVersion``, ``kind`` and ``metadata`` at the root (and in
``x-kubernetes-embedded-resource`` nodes) are never pruned; ``metadata`` is ObjectMeta, validated
elsewhere. Field paths are rendered as upstream's ``field.Path`` (``spec.rules[0].matches[1]``,
``spec.labels[app]``).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import ipaddress
import math
import re
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from servicenet.api import errors
from servicenet.api.errors import FieldError

Schema = dict[str, Any]
_META_KEYS = ("apiVersion", "kind", "metadata")

PRESERVE = "x-kubernetes-preserve-unknown-fields"
EMBEDDED = "x-kubernetes-embedded-resource"
INT_OR_STRING = "x-kubernetes-int-or-string"
LIST_TYPE = "x-kubernetes-list-type"
LIST_MAP_KEYS = "x-kubernetes-list-map-keys"
MAP_TYPE = "x-kubernetes-map-type"
VALIDATIONS = "x-kubernetes-validations"


def child_path(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def index_path(path: str, i: int | str) -> str:
    return f"{path}[{i}]"


def props(s: Schema) -> dict[str, Schema]:
    p = s.get("properties")
    return p if isinstance(p, dict) else {}


def addl(s: Schema) -> Schema | None:
    a = s.get("additionalProperties")
    return a if isinstance(a, dict) else None


def items(s: Schema) -> Schema | None:
    it = s.get("items")
    return it if isinstance(it, dict) else None


# ---------------------------------------------------------------- pruning


def prune(obj: dict[str, Any], root: Schema) -> list[str]:
    """Remove fields ``root`` does not declare (and ``null`` on non-nullable fields without a default).
    Returns the removed unknown paths, upstream-style (``.spec.foo``), for fieldValidation."""
    unknown: list[str] = []
    if root.get(PRESERVE):
        _prune_nulls_only(obj, root)
        return unknown
    ps = props(root)
    for k in list(obj):
        if k in _META_KEYS:
            if k == "metadata" and not isinstance(obj[k], dict) and obj[k] is not None:
                continue  # validation reports it
            continue
        if k not in ps:
            unknown.append("." + k)
            del obj[k]
        else:
            _prune(obj, k, ps[k], "." + k, unknown)
    return unknown


def _prune_nulls_only(value: Any, s: Schema) -> None:
    if isinstance(value, dict):
        ps = props(s)
        for k in list(value):
            if k in ps:
                _prune(value, k, ps[k], "", None)


def _prune(parent: dict[str, Any], key: str, s: Schema, path: str, unknown: list[str] | None) -> None:
    v = parent[key]
    if v is None:
        if not s.get("nullable") and "default" not in s:
            del parent[key]
        return
    _prune_value(v, s, path, unknown)


def _prune_value(v: Any, s: Schema, path: str, unknown: list[str] | None) -> None:
    if isinstance(v, dict):
        ps = props(s)
        ap = addl(s)
        preserve = bool(s.get(PRESERVE)) or s.get("additionalProperties") is True
        embedded = bool(s.get(EMBEDDED))
        for k in list(v):
            if embedded and k in _META_KEYS:
                continue
            if k in ps:
                _prune(v, k, ps[k], f"{path}.{k}", unknown)
            elif ap is not None:
                if v[k] is None and not ap.get("nullable"):
                    continue  # validation reports a null map value
                _prune_value(v[k], ap, f"{path}.{k}", unknown)
            elif not preserve:
                if unknown is not None:
                    unknown.append(f"{path}.{k}")
                del v[k]
    elif isinstance(v, list):
        it = items(s)
        if it is not None:
            for i, e in enumerate(v):
                _prune_value(e, it, f"{path}[{i}]", unknown)


# ---------------------------------------------------------------- defaulting


def default(obj: Any, s: Schema) -> bool:
    """Fill missing fields that have a ``default`` where their parent exists (recursively).
    Returns whether anything was filled."""
    changed = False
    if isinstance(obj, dict):
        ps = props(s)
        for k, ps_k in ps.items():
            if "default" in ps_k and (k not in obj or (obj[k] is None and not ps_k.get("nullable"))):
                obj[k] = copy.deepcopy(ps_k["default"])
                changed = True
        for k, v in obj.items():
            if k in ps:
                changed |= default(v, ps[k])
        ap = addl(s)
        if ap is not None:
            for k, v in obj.items():
                if k not in ps:
                    changed |= default(v, ap)
    elif isinstance(obj, list):
        it = items(s)
        if it is not None:
            for e in obj:
                changed |= default(e, it)
    return changed


# ---------------------------------------------------------------- validation


def _type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def _is_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    return isinstance(v, int) or (isinstance(v, float) and math.isfinite(v) and v.is_integer())


def _type_ok(t: str, v: Any) -> bool:
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "integer":
        return _is_int(v)
    if t == "number":
        return isinstance(v, int | float) and not isinstance(v, bool)
    if t == "boolean":
        return isinstance(v, bool)
    return True


def _render_data(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v + '"'
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return _type_name(v)
    return str(v)


@lru_cache(maxsize=1024)
def _regex(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


_HOSTNAME = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}"
                       r"[a-zA-Z0-9])?)*$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_MAC = re.compile(r"^(?:[0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$")
_DURATION = re.compile(r"^(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h|d|w))+$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$")


def _ok_ip(v: str, version: int | None) -> bool:
    try:
        ip = ipaddress.ip_address(v)
    except ValueError:
        return False
    return version is None or ip.version == version


def _ok_cidr(v: str) -> bool:
    try:
        ipaddress.ip_network(v, strict=False)
    except ValueError:
        return False
    return "/" in v


def _ok_uuid(v: str) -> bool:
    try:
        uuid.UUID(v)
    except ValueError:
        return False
    return len(v) == 36


def _ok_byte(v: str) -> bool:
    try:
        base64.b64decode(v, validate=True)
    except ValueError:
        return False
    return True


def _ok_date(v: str) -> bool:
    try:
        dt.date.fromisoformat(v)
    except ValueError:
        return False
    return len(v) == 10


#: string formats checked (upstream's kube-openapi registry); any other format is not checked.
FORMATS: dict[str, Callable[[str], bool]] = {
    "hostname": lambda v: bool(_HOSTNAME.match(v)) and len(v) <= 253,
    "ipv4": lambda v: _ok_ip(v, 4),
    "ipv6": lambda v: _ok_ip(v, 6),
    "cidr": _ok_cidr,
    "mac": lambda v: bool(_MAC.match(v)),
    "uuid": _ok_uuid, "uuid3": _ok_uuid, "uuid4": _ok_uuid, "uuid5": _ok_uuid,
    "email": lambda v: bool(_EMAIL.match(v)),
    "byte": _ok_byte,
    "date": _ok_date,
    "date-time": lambda v: bool(_DATETIME.match(v)),
    "datetime": lambda v: bool(_DATETIME.match(v)),
    "duration": lambda v: bool(_DURATION.match(v)),
    "uri": lambda v: bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", v)),
}


def validate(obj: dict[str, Any], root: Schema) -> list[FieldError]:
    """Every schema error of ``obj`` (already pruned and defaulted) against ``root``."""
    out: list[FieldError] = []
    body = {k: v for k, v in obj.items() if k not in _META_KEYS}
    trimmed = dict(root)
    trimmed["properties"] = {k: v for k, v in props(root).items() if k not in _META_KEYS}
    trimmed["required"] = [r for r in root.get("required") or [] if r not in _META_KEYS]
    for r in root.get("required") or []:
        if r in ("apiVersion", "kind") and r not in obj:
            out.append(errors.required(r, ""))
    _validate(body, trimmed, "", out)
    return out


def _validate(v: Any, s: Schema, path: str, out: list[FieldError]) -> None:
    disp = path or "<root>"
    if v is None:
        if s.get("nullable"):
            return
        t = s.get("type")
        if t:
            out.append(_type_invalid(disp, "null", f"{disp} in body must be of type {t}: \"null\""))
        return
    if s.get(INT_OR_STRING):
        if not (_is_int(v) or isinstance(v, str)):
            out.append(_type_invalid(disp, _type_name(v),
                                     f"{disp} in body must be of type integer,string: {_render_data(v)}"))
            return
    else:
        t = s.get("type")
        if t and not _type_ok(t, v):
            out.append(_type_invalid(disp, _type_name(v), f"{disp} in body must be of type {t}: {_render_data(v)}"))
            return
    before = len(out)
    if isinstance(v, str):
        _validate_string(v, s, disp, out)
    elif isinstance(v, int | float) and not isinstance(v, bool):
        _validate_number(v, s, disp, out)
    elif isinstance(v, list):
        _validate_array(v, s, path, disp, out)
    elif isinstance(v, dict):
        _validate_object(v, s, path, disp, out)
    if "enum" in s and isinstance(s["enum"], list) and v not in s["enum"]:
        out.append(errors.not_supported(disp, v, [e if isinstance(e, str) else _render_data(e) for e in s["enum"]]))
    if len(out) == before:
        _validate_junctors(v, s, path, out)


def _type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("TypeInvalid", path, detail, value, True)


#: error kinds after which CEL rules are not run (the object's shape is not what the rules expect)
BLOCKING = frozenset({"NotSupported", "Required", "TooLong", "TooMany", "TypeInvalid"})


def blocking(errs: list[FieldError]) -> FieldError | None:
    """Upstream's note that CEL rules were skipped, when ``errs`` holds a blocking error."""
    if any(e.kind in BLOCKING for e in errs):
        return errors.invalid("<nil>", "null", "some validation rules were not checked because the object was "
                              "invalid; correct the existing errors to complete validation")
    return None


def _validate_string(v: str, s: Schema, disp: str, out: list[FieldError]) -> None:
    mx = s.get("maxLength")
    if isinstance(mx, int) and len(v) > mx:
        out.append(FieldError("TooLong", disp, f"may not be more than {mx} bytes", v, True))
    mn = s.get("minLength")
    if isinstance(mn, int) and len(v) < mn:
        out.append(errors.invalid(disp, v, f"{disp} in body should be at least {mn} chars long"))
    pat = s.get("pattern")
    if isinstance(pat, str):
        rx = _regex(pat)
        if rx is not None and not rx.search(v):
            out.append(errors.invalid(disp, v, f"{disp} in body should match '{pat}'"))
    fmt = s.get("format")
    check = FORMATS.get(fmt) if isinstance(fmt, str) else None
    if check is not None and not check(v):
        out.append(errors.invalid(disp, v, f"{disp} in body must be of type {fmt}: \"{v}\""))


def _validate_number(v: float, s: Schema, disp: str, out: list[FieldError]) -> None:
    mx = s.get("maximum")
    if isinstance(mx, int | float):
        if s.get("exclusiveMaximum") and v >= mx:
            out.append(errors.invalid(disp, v, f"{disp} in body should be less than {mx}"))
        elif v > mx:
            out.append(errors.invalid(disp, v, f"{disp} in body should be less than or equal to {mx}"))
    mn = s.get("minimum")
    if isinstance(mn, int | float):
        if s.get("exclusiveMinimum") and v <= mn:
            out.append(errors.invalid(disp, v, f"{disp} in body should be greater than {mn}"))
        elif v < mn:
            out.append(errors.invalid(disp, v, f"{disp} in body should be greater than or equal to {mn}"))
    mo = s.get("multipleOf")
    if isinstance(mo, int | float) and mo > 0 and not math.isclose(v / mo, round(v / mo)):
        out.append(errors.invalid(disp, v, f"{disp} in body should be a multiple of {mo}"))


def map_key(elem: Any, keys: list[str], s: Schema) -> tuple[Any, ...] | None:
    if not isinstance(elem, dict):
        return None
    it_props = props(items(s) or {})
    out = []
    for k in keys:
        if k in elem:
            out.append(elem[k])
        elif "default" in it_props.get(k, {}):
            out.append(it_props[k]["default"])
        else:
            out.append(None)
    return tuple(_hashable(x) for x in out)


def _hashable(x: Any) -> Any:
    if isinstance(x, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in x.items()))
    if isinstance(x, list):
        return tuple(_hashable(v) for v in x)
    return x


def _validate_array(v: list[Any], s: Schema, path: str, disp: str, out: list[FieldError]) -> None:
    mx = s.get("maxItems")
    if isinstance(mx, int) and len(v) > mx:
        out.append(FieldError("TooMany", disp, f"must have at most {mx} items", len(v), True))
    mn = s.get("minItems")
    if isinstance(mn, int) and len(v) < mn:
        out.append(errors.invalid(disp, len(v), f"{disp} in body should have at least {mn} items"))
    it = items(s)
    if it is not None:
        for i, e in enumerate(v):
            _validate(e, it, index_path(path, i), out)
    lt = s.get(LIST_TYPE)
    if lt == "set":
        seen: set[Any] = set()
        for i, e in enumerate(v):
            h = _hashable(e)
            if h in seen:
                out.append(errors.duplicate(index_path(path, i), e))
            seen.add(h)
    elif lt == "map":
        keys = [k for k in s.get(LIST_MAP_KEYS) or [] if isinstance(k, str)]
        seen_k: set[Any] = set()
        for i, e in enumerate(v):
            key = map_key(e, keys, s)
            if key is None:
                continue
            if key in seen_k:
                out.append(errors.duplicate(index_path(path, i), {k: e.get(k) for k in keys if k in e}))
            seen_k.add(key)


def _validate_object(v: dict[str, Any], s: Schema, path: str, disp: str, out: list[FieldError]) -> None:
    for r in s.get("required") or []:
        if r not in v:
            out.append(errors.required(child_path(path, r), ""))
    mx = s.get("maxProperties")
    if isinstance(mx, int) and len(v) > mx:
        out.append(FieldError("TooMany", disp, f"must have at most {mx} items", len(v), True))
    mn = s.get("minProperties")
    if isinstance(mn, int) and len(v) < mn:
        out.append(errors.invalid(disp, len(v), f"{disp} in body should have at least {mn} properties"))
    ps = props(s)
    ap = addl(s)
    embedded = bool(s.get(EMBEDDED))
    for k, e in v.items():
        if embedded and k in _META_KEYS:
            continue
        if k in ps:
            _validate(e, ps[k], child_path(path, k), out)
        elif ap is not None:
            _validate(e, ap, index_path(path, k), out)
    if embedded:
        for k in ("apiVersion", "kind"):
            if not isinstance(v.get(k), str) or not v.get(k):
                out.append(errors.required(child_path(path, k), ""))


def _errs(v: Any, s: Schema, path: str) -> list[FieldError]:
    o: list[FieldError] = []
    _validate(v, s, path, o)
    return o


def _validate_junctors(v: Any, s: Schema, path: str, out: list[FieldError]) -> None:
    disp = path or "<root>"
    for sub in s.get("allOf") or []:
        if isinstance(sub, dict):
            out.extend(_errs(v, sub, path))
    any_of = [x for x in s.get("anyOf") or [] if isinstance(x, dict)]
    if any_of and all(_errs(v, sub, path) for sub in any_of):
        out.append(errors.invalid(disp, _render_value(v), "must validate at least one schema (anyOf)"))
    one_of = [x for x in s.get("oneOf") or [] if isinstance(x, dict)]
    if one_of:
        ok = sum(1 for sub in one_of if not _errs(v, sub, path))
        if ok != 1:
            out.append(errors.invalid(disp, _render_value(v), "must validate one and only one schema (oneOf)"
                                      if ok == 0 else "must validate one and only one schema (oneOf). Found "
                                      f"{ok} valid alternatives"))
    n = s.get("not")
    if isinstance(n, dict) and not _errs(v, n, path):
        out.append(errors.invalid(disp, _render_value(v), "must not validate the schema (not)"))


def _render_value(v: Any) -> Any:
    return _type_name(v) if isinstance(v, dict | list) else v
