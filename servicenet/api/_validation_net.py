"""Validation of the networking and config kinds: EndpointSlice, Endpoints, ConfigMap, Secret,
Ingress, Namespace, Node (private; use ``servicenet.api.validation``)."""

from __future__ import annotations

import ipaddress
from typing import Any

from servicenet.api._validation_base import (
    IP_MSG,
    Errs,
    Obj,
    _dicts,
    _loopback,
    _parse_ip,
    _protocol,
    _special_ip,
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_port_name,
    is_valid_port_num,
    validate_dns1123_label,
    validate_object_meta,
)
from servicenet.api.errors import FieldError, duplicate, forbidden, invalid, not_supported, required


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
