"""Shared validation helpers: upstream's string checks and messages, Go-literal rendering, and the
metadata/label/selector validators every kind uses (private; use ``servicenet.api.validation``).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable
from typing import Any

from servicenet.api.errors import FieldError, forbidden, invalid, not_supported, required
from servicenet.api.views import Obj
from servicenet.api.wire import meta as meta_of

Errs = list[FieldError]

# ---------------------------------------------------------------- string validators (return messages)

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"
CONFIG_KEY_FMT = "[-._a-zA-Z0-9]+"

_QUALIFIED_NAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                       "with an alphanumeric character")
IP_MSG = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """Upstream's RegexError (including its doubled space between examples)."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    out = msg + " (e.g. "
    for i, ex in enumerate(examples):
        if i > 0:
            out += " or "
        out += f"'{ex}', "
    return out + f"regex used for validation is '{fmt}')"


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


_PATTERNS: dict[str, re.Pattern[str]] = {}
# strings already found valid, per validator (bounded): names, label keys and values repeat a lot
_VALID_CACHE_MAX = 8192
_VALID: dict[str, set[str]] = {"qn": set(), "lv": set(), "l1123": set(), "s1123": set()}


def _full(fmt: str, s: str) -> bool:
    pat = _PATTERNS.get(fmt)
    if pat is None:
        pat = _PATTERNS[fmt] = re.compile(fmt)
    return pat.fullmatch(s) is not None


def _remember_valid(which: str, v: str, errs: list[str]) -> list[str]:
    if not errs:
        known = _VALID[which]
        if len(known) >= _VALID_CACHE_MAX:
            known.clear()
        known.add(v)
    return errs


def is_dns1123_label(v: str) -> list[str]:
    if v in _VALID["l1123"]:
        return []
    return _remember_valid("l1123", v, _is_dns1123_label(v))


def _is_dns1123_label(v: str) -> list[str]:
    errs = []
    if len(v) > 63:
        errs.append(max_len_error(63))
    if not _full(DNS1123_LABEL_FMT, v):
        errs.append(regex_error("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
                                "or '-', and must start and end with an alphanumeric character",
                                DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errs


def is_dns1123_subdomain(v: str) -> list[str]:
    if v in _VALID["s1123"]:
        return []
    return _remember_valid("s1123", v, _is_dns1123_subdomain(v))


def _is_dns1123_subdomain(v: str) -> list[str]:
    errs = []
    if len(v) > 253:
        errs.append(max_len_error(253))
    if not _full(DNS1123_SUBDOMAIN_FMT, v):
        errs.append(regex_error("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                                "characters, '-' or '.', and must start and end with an alphanumeric character",
                                DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def is_dns1035_label(v: str) -> list[str]:
    errs = []
    if len(v) > 63:
        errs.append(max_len_error(63))
    if not _full(DNS1035_LABEL_FMT, v):
        errs.append(regex_error("a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
                                "start with an alphabetic character, and end with an alphanumeric character",
                                DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errs


def is_qualified_name(v: str) -> list[str]:
    if v in _VALID["qn"]:
        return []
    return _remember_valid("qn", v, _is_qualified_name(v))


def _is_qualified_name(v: str) -> list[str]:
    errs: list[str] = []
    parts = v.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += ["prefix part " + m for m in is_dns1123_subdomain(prefix)]
    else:
        return ["a qualified name " + regex_error(_QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name",
                                                  "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if name and not _full(QUALIFIED_NAME_FMT, name):
        errs.append("name part " + regex_error(_QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, "MyName", "my.name",
                                               "123-abc"))
    return errs


def is_valid_label_value(v: str) -> list[str]:
    if v in _VALID["lv"]:
        return []
    return _remember_valid("lv", v, _is_valid_label_value(v))


def _is_valid_label_value(v: str) -> list[str]:
    errs = []
    if len(v) > 63:
        errs.append(max_len_error(63))
    if not _full(LABEL_VALUE_FMT, v):
        errs.append(regex_error("a valid label must be an empty string or consist of alphanumeric characters, "
                                "'-', '_' or '.', and must start and end with an alphanumeric character",
                                LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def is_valid_port_num(p: Any) -> list[str]:
    if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= 65535:
        return ["must be between 1 and 65535, inclusive"]
    return []


def is_valid_port_name(p: str) -> list[str]:
    errs = []
    if len(p) > 15:
        errs.append(max_len_error(15))
    if not _full("[-a-z0-9]+", p):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not re.search("[a-z]", p):
        errs.append("must contain at least one letter (a-z)")
    if "--" in p:
        errs.append("must not contain consecutive hyphens")
    if p and (p[0] == "-" or p[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def is_config_map_key(k: str) -> list[str]:
    errs = []
    if len(k) > 253:
        errs.append(max_len_error(253))
    if not _full(CONFIG_KEY_FMT, k):
        errs.append(regex_error("a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                                CONFIG_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if k == ".":
        errs.append("must not be '.'")
    elif k == "..":
        errs.append("must not be '..'")
    elif k.startswith(".."):
        errs.append("must not start with '..'")
    return errs


def _parse_ip(v: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    return _parse_ip_str(v) if isinstance(v, str) else None


@functools.lru_cache(maxsize=16384)  # every endpoint address of every slice/Endpoints write; values are immutable
def _parse_ip_str(v: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(v)
    except ValueError:
        return None


# ---------------------------------------------------------------- Go-style value rendering


class GoLiteral:
    """A value upstream prints with Go's ``%#v`` (maps, structs); ``errors._render`` uses ``str()``."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoLiteral) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def _go_str(s: Any) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def go_string_map(m: Any) -> GoLiteral:
    if not m:
        return GoLiteral("map[string]string(nil)")
    return GoLiteral("map[string]string{" + ", ".join(f"{_go_str(k)}:{_go_str(v)}" for k, v in sorted(m.items()))
                     + "}")


def go_label_selector(sel: Any, pointer: bool = False) -> GoLiteral:
    sel = sel if isinstance(sel, dict) else {}
    ml = go_string_map(sel.get("matchLabels")).text
    exprs = sel.get("matchExpressions") or []
    if exprs:
        items = []
        for e in exprs:
            vals = e.get("values")
            vs = "[]string{" + ", ".join(_go_str(x) for x in vals) + "}" if vals else "[]string(nil)"
            items.append(f"v1.LabelSelectorRequirement{{Key:{_go_str(e.get('key', ''))}, "
                         f"Operator:{_go_str(e.get('operator', ''))}, Values:{vs}}}")
        me = "[]v1.LabelSelectorRequirement{" + ", ".join(items) + "}"
    else:
        me = "[]v1.LabelSelectorRequirement(nil)"
    return GoLiteral(("&" if pointer else "") + f"v1.LabelSelector{{MatchLabels:{ml}, MatchExpressions:{me}}}")


# ---------------------------------------------------------------- shared validators (return FieldErrors)


def validate_dns1123_label(v: str, path: str) -> Errs:
    return [invalid(path, v, m) for m in is_dns1123_label(v)]


def validate_labels(labels: Any, path: str) -> Errs:
    errs: Errs = []
    if not isinstance(labels, dict):
        return errs
    names, values = _VALID["qn"], _VALID["lv"]
    for k, v in labels.items():
        if type(k) is str and type(v) is str and k in names and v in values:
            continue  # both seen valid before: what the two checks below would find
        errs += [invalid(path, k, m) for m in is_qualified_name(str(k))]
        errs += [invalid(path, v, m) for m in is_valid_label_value(str(v) if v is not None else "")]
    return errs


def validate_annotations(ann: Any, path: str) -> Errs:
    errs: Errs = []
    if not isinstance(ann, dict):
        return errs
    total = 0
    names = _VALID["qn"]
    for k, v in ann.items():
        if type(k) is str and type(v) is str and k.lower() in names:  # seen valid before
            total += len(k) + len(v)
            continue
        errs += [invalid(path, k, m) for m in is_qualified_name(str(k).lower())]
        total += len(str(k)) + len(str(v))
    if total > 256 * 1024:
        errs.append(FieldError("TooLong", path, "may not be more than 262144 bytes"))
    return errs


def validate_label_selector(sel: Any, path: str) -> Errs:
    errs: Errs = []
    if not isinstance(sel, dict):
        return errs
    for i, e in enumerate(sel.get("matchExpressions") or []):
        p = f"{path}.matchExpressions[{i}]"
        op = e.get("operator", "")
        vals = e.get("values") or []
        if op in ("In", "NotIn"):
            if not vals:
                errs.append(required(p + ".values", "must be specified when `operator` is 'In' or 'NotIn'"))
        elif op in ("Exists", "DoesNotExist"):
            if vals:
                errs.append(forbidden(p + ".values",
                                      "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
        else:
            errs.append(invalid(p + ".operator", op, "not a valid selector operator"))
        errs += [invalid(p + ".key", e.get("key", ""), m) for m in is_qualified_name(str(e.get("key", "")))]
        for j, v in enumerate(vals):
            errs += [invalid(f"{p}.values[{j}]", v, m) for m in is_valid_label_value(str(v))]
    errs += validate_labels(sel.get("matchLabels"), path + ".matchLabels")
    return errs



NameFn = Callable[[str], list[str]]


def _mask_trailing_dash(name: str) -> str:
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


def validate_object_meta(obj: Obj, namespaced: bool, name_fn: NameFn, path: str = "metadata") -> Errs:
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    errs: Errs = []
    gen = meta.get("generateName") or ""
    if gen:
        errs += [invalid(path + ".generateName", gen, m) for m in name_fn(_mask_trailing_dash(gen))]
    name = meta.get("name") or ""
    if not name:
        errs.append(required(path + ".name", "name or generateName is required"))
    else:
        errs += [invalid(path + ".name", name, m) for m in name_fn(name)]
    ns = meta.get("namespace") or ""
    if namespaced:
        if not ns:
            errs.append(required(path + ".namespace", ""))
        else:
            errs += [invalid(path + ".namespace", ns, m) for m in is_dns1123_label(ns)]
    elif ns:
        errs.append(forbidden(path + ".namespace", "not allowed on this type"))
    errs += validate_labels(meta.get("labels"), path + ".labels")
    errs += validate_annotations(meta.get("annotations"), path + ".annotations")
    for i, f in enumerate(meta.get("finalizers") or []):
        errs += [invalid(f"{path}.finalizers[{i}]", f, m) for m in is_qualified_name(str(f))]
    return errs


def immutable(new: Any, old: Any, path: str) -> Errs:
    if new != old:
        return [invalid(path, new, "field is immutable")]
    return []


def validate_object_meta_update(new: Obj, old: Obj) -> Errs:
    nm, om = meta_of(new), meta_of(old)
    errs: Errs = []
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        if om.get(key) and nm.get(key) != om.get(key):
            errs.append(invalid(f"metadata.{key}", nm.get(key, ""), "field is immutable"))
    return errs


def _non_negative(v: Any, path: str) -> Errs:
    if isinstance(v, int) and not isinstance(v, bool) and v < 0:
        return [invalid(path, v, "must be greater than or equal to 0")]
    return []


def _protocol(p: Obj, path: str) -> Errs:
    proto = p.get("protocol") or ""
    if not proto:
        return [required(path, "")]
    if proto not in ("SCTP", "TCP", "UDP"):
        return [not_supported(path, proto, ["SCTP", "TCP", "UDP"])]
    return []


def _dicts(v: Any) -> list[Obj]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _special_ip(ip: Any, path: str) -> Errs:
    """Upstream's ValidateNonSpecialIP (loopback checked only when asked)."""
    a = _parse_ip(ip)
    if a is None:
        return []
    if a.is_unspecified:
        return [invalid(path, ip, f"may not be unspecified ({a})")]
    if a.is_link_local:
        return [invalid(path, ip, "may not be in the link-local range (169.254.0.0/16, fe80::/10)")]
    if a.is_multicast and (a.version == 4 and str(a).startswith("224.0.0.")
                           or a.version == 6 and str(a).startswith("ff02:")):
        return [invalid(path, ip, "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")]
    return []


def _loopback(ip: Any, path: str, allow: bool) -> Errs:
    a = _parse_ip(ip)
    if a is not None and a.is_loopback and not allow:
        return [invalid(path, ip, "may not be in the loopback range (127.0.0.0/8, ::1/128)")]
    return []


# ---------------------------------------------------------------- discovery / endpoints
