"""Validation of built-in kinds with upstream's field paths and messages.

``validate_create(info, obj)`` / ``validate_update(info, new, old)`` return ``FieldError``s; the
API server turns a non-empty list into ``errors.invalid_object(kind, group, name, errs)`` (422).
Objects are expected to be defaulted (``defaults.apply_defaults``) before validation.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from servicenet.api.errors import FieldError, duplicate, forbidden, invalid, not_supported, required
from servicenet.api.resources import ResourceInfo

Obj = dict[str, Any]
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
    if not isinstance(v, str):
        return None
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
    for k, v in labels.items():
        errs += [invalid(path, k, m) for m in is_qualified_name(str(k))]
        errs += [invalid(path, v, m) for m in is_valid_label_value(str(v) if v is not None else "")]
    return errs


def validate_annotations(ann: Any, path: str) -> Errs:
    errs: Errs = []
    if not isinstance(ann, dict):
        return errs
    total = 0
    for k, v in ann.items():
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


def selector_matches(sel: Any, labels: Any) -> bool:
    """LabelSelector (matchLabels + matchExpressions) against a label map."""
    labels = labels if isinstance(labels, dict) else {}
    sel = sel if isinstance(sel, dict) else {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


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
    nm, om = new.get("metadata") or {}, old.get("metadata") or {}
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


def validate_endpointslice(obj: Obj, allow_loopback: bool) -> Errs:
    errs = validate_object_meta(obj, True, is_dns1123_subdomain)
    at = obj.get("addressType") or ""
    if not at:
        errs.append(required("addressType", ""))
    elif at not in ("FQDN", "IPv4", "IPv6"):
        errs.append(not_supported("addressType", at, ["FQDN", "IPv4", "IPv6"]))
    eps = _dicts(obj.get("endpoints"))
    if len(eps) > 1000:
        errs.append(FieldError("TooMany", "endpoints", f"{len(eps)}: must have at most 1000 items"))
    for i, ep in enumerate(eps):
        p = f"endpoints[{i}]"
        addrs = ep.get("addresses") or []
        if not addrs:
            errs.append(required(p + ".addresses", "must contain at least 1 address"))
        elif len(addrs) > 100:
            errs.append(FieldError("TooMany", p + ".addresses", f"{len(addrs)}: must have at most 100 items"))
        for j, a in enumerate(addrs):
            ap = f"{p}.addresses[{j}]"
            ip = _parse_ip(a)
            if at == "IPv4" and (ip is None or ip.version != 4 or not _canonical_v4(a)):
                errs.append(invalid(ap, a, "must be a valid IPv4 address"))
            elif at == "IPv6" and (ip is None or ip.version != 6):
                errs.append(invalid(ap, a, "must be a valid IPv6 address"))
            elif at in ("IPv4", "IPv6"):
                errs += _special_ip(a, ap) + _loopback(a, ap, allow_loopback)
            elif at == "FQDN":
                errs += [invalid(ap, a, m) for m in is_dns1123_subdomain(str(a))]
        if ep.get("hostname"):
            errs += validate_dns1123_label(ep["hostname"], p + ".hostname")
        if ep.get("nodeName"):
            errs += [invalid(p + ".nodeName", ep["nodeName"], m) for m in is_dns1123_subdomain(ep["nodeName"])]
    ports = _dicts(obj.get("ports"))
    if len(ports) > 100:
        errs.append(FieldError("TooMany", "ports", f"{len(ports)}: must have at most 100 items"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        p = f"ports[{i}]"
        name = port.get("name") or ""
        if name:
            errs += validate_dns1123_label(name, p + ".name")
        if name in names:
            errs.append(duplicate(p + ".name", name))
        names.add(name)
        errs += _protocol(port, p + ".protocol")
        if port.get("port") is not None:
            errs += [invalid(p + ".port", port["port"], m) for m in is_valid_port_num(port["port"])]
    return errs


def _canonical_v4(a: str) -> bool:
    return all(part == str(int(part)) for part in a.split(".")) if a.count(".") == 3 else False


def validate_endpoints(obj: Obj, allow_loopback: bool) -> Errs:
    errs = validate_object_meta(obj, True, is_dns1123_subdomain)
    for i, ss in enumerate(_dicts(obj.get("subsets"))):
        sp = f"subsets[{i}]"
        if not ss.get("addresses") and not ss.get("notReadyAddresses"):
            errs.append(required(sp, "must specify `addresses` or `notReadyAddresses`"))
        for key in ("addresses", "notReadyAddresses"):
            for j, a in enumerate(_dicts(ss.get(key))):
                ap = f"{sp}.{key}[{j}].ip"
                ip = a.get("ip")
                if _parse_ip(ip) is None:
                    errs.append(invalid(ap, ip, IP_MSG))
                else:
                    errs += _special_ip(ip, ap) + _loopback(ip, ap, allow_loopback)
                if a.get("hostname"):
                    errs += validate_dns1123_label(a["hostname"], f"{sp}.{key}[{j}].hostname")
        ports = _dicts(ss.get("ports"))
        for j, port in enumerate(ports):
            pp = f"{sp}.ports[{j}]"
            name = port.get("name") or ""
            if len(ports) > 1 and not name:
                errs.append(required(pp + ".name", ""))
            elif name:
                errs += validate_dns1123_label(name, pp + ".name")
            errs += [invalid(pp + ".port", port.get("port"), m) for m in is_valid_port_num(port.get("port"))]
            errs += _protocol(port, pp + ".protocol")
    return errs


# ---------------------------------------------------------------- config, namespaces, nodes, ingress


def _validate_keys(obj: Obj, fields: tuple[str, ...]) -> Errs:
    errs: Errs = []
    seen: dict[str, str] = {}
    for f in fields:
        for k in obj.get(f) or {}:
            errs += [invalid(f"{f}[{k}]", k, m) for m in is_config_map_key(str(k))]
            if k in seen:
                errs.append(invalid(f"{f}[{k}]", k, f"duplicate of key present in {seen[k]}"))
            seen.setdefault(k, f)
    return errs


def validate_configmap(obj: Obj) -> Errs:
    return validate_object_meta(obj, True, is_dns1123_subdomain) + _validate_keys(obj, ("data", "binaryData"))


def validate_secret(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, is_dns1123_subdomain) + _validate_keys(obj, ("data", "stringData"))
    data = {**(obj.get("data") or {}), **(obj.get("stringData") or {})}
    if obj.get("type") == "kubernetes.io/tls":
        for k in ("tls.crt", "tls.key"):
            if k not in data:
                errs.append(required(f"data[{k}]", ""))
    return errs


def _immutable_data(new: Obj, old: Obj, fields: tuple[str, ...]) -> Errs:
    errs: Errs = []
    if old.get("immutable"):
        for f in fields:
            if (new.get(f) or {}) != (old.get(f) or {}):
                errs.append(forbidden(f, "field is immutable when `immutable` is set"))
        if not new.get("immutable"):
            errs.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    return errs


def validate_ingress(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, is_dns1123_subdomain)
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    if not spec.get("rules") and not spec.get("defaultBackend"):
        errs.append(invalid("spec", spec, "either `defaultBackend` or `rules` must be specified"))
    for i, rule in enumerate(_dicts(spec.get("rules"))):
        rp = f"spec.rules[{i}]"
        host = rule.get("host") or ""
        if host:
            h = host[2:] if host.startswith("*.") else host
            errs += [invalid(rp + ".host", host, m) for m in is_dns1123_subdomain(h)]
            if _parse_ip(host) is not None:
                errs.append(invalid(rp + ".host", host, "must be a DNS name, not an IP address"))
        for j, path in enumerate(_dicts((rule.get("http") or {}).get("paths"))):
            pp = f"{rp}.http.paths[{j}]"
            pt = path.get("pathType")
            val = path.get("path") or ""
            if not pt:
                errs.append(required(pp + ".pathType", "pathType must be specified"))
            elif pt not in ("Exact", "ImplementationSpecific", "Prefix"):
                errs.append(not_supported(pp + ".pathType", pt, ["Exact", "ImplementationSpecific", "Prefix"]))
            elif pt in ("Exact", "Prefix") and not val.startswith("/"):
                errs.append(invalid(pp + ".path", val, "must be an absolute path"))
            elif pt == "ImplementationSpecific" and val and not val.startswith("/"):
                errs.append(invalid(pp + ".path", val, "must be an absolute path"))
            errs += _validate_backend(path.get("backend"), pp + ".backend")
    if spec.get("defaultBackend") is not None:
        errs += _validate_backend(spec.get("defaultBackend"), "spec.defaultBackend")
    return errs


def _validate_backend(b: Any, path: str) -> Errs:
    b = b if isinstance(b, dict) else {}
    svc, res = b.get("service"), b.get("resource")
    if svc is None and res is None:
        return [invalid(path, b, "one backend (`service` or `resource`) must be specified")]
    if svc is not None and res is not None:
        return [invalid(path, b, "cannot set both `service` and `resource` backends")]
    errs: Errs = []
    if svc is not None:
        name = svc.get("name") or ""
        if not name:
            errs.append(required(path + ".service.name", ""))
        else:
            errs += [invalid(path + ".service.name", name, m) for m in is_dns1035_label(name)]
        port = svc.get("port") or {}
        if port.get("name") and port.get("number"):
            errs.append(invalid(path + ".service.port", port, "cannot set both port name & port number"))
        elif port.get("name"):
            errs += [invalid(path + ".service.port.name", port["name"], m) for m in is_valid_port_name(port["name"])]
        elif port.get("number") is not None:
            errs += [invalid(path + ".service.port.number", port["number"], m)
                     for m in is_valid_port_num(port["number"])]
        else:
            errs.append(required(path + ".service.port", "port name or number is required"))
    return errs


def validate_namespace(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, is_dns1123_label)
    for i, f in enumerate(((obj.get("spec") or {}).get("finalizers")) or []):
        errs += [invalid(f"spec.finalizers[{i}]", f, m) for m in is_qualified_name(str(f))]
    return errs


def validate_node(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, False, is_dns1123_subdomain)
    spec = obj.get("spec") or {}
    for i, cidr in enumerate(spec.get("podCIDRs") or []):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            errs.append(invalid(f"spec.podCIDRs[{i}]", cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or "
                                                             "2001:db8::/64)"))
    return errs


def validate_create(info: ResourceInfo, obj: Obj, *, allow_loopback_endpoints: bool = True) -> Errs:
    """All errors for creating ``obj`` (already defaulted) of resource ``info``."""
    from servicenet.api import _validation_kinds as _kinds  # per-kind rules, built on the helpers above
    from servicenet.api import _validation_workloads as _more

    errs = _more.validate(info, obj, None)
    return _kinds.validate(info, obj, None, allow_loopback_endpoints) if errs is None else errs


def validate_update(info: ResourceInfo, new: Obj, old: Obj, *, allow_loopback_endpoints: bool = True) -> Errs:
    """All errors for replacing ``old`` by ``new`` (metadata immutability, per-kind update rules)."""
    from servicenet.api import _validation_kinds as _kinds
    from servicenet.api import _validation_workloads as _more

    errs = _more.validate(info, new, old)
    if errs is None:
        errs = _kinds.validate(info, new, old, allow_loopback_endpoints)
    return validate_object_meta_update(new, old) + errs
