"""The CustomResourceDefinition object: defaulting, validation, naming, served resources (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from servicenet.api import errors
from servicenet.api.crd import celrules
from servicenet.api.crd import schema as sch
from servicenet.api.errors import FieldError
from servicenet.api.resources import ALL_VERBS, ResourceInfo, SubresourceInfo
from servicenet.api.wire import meta as meta_of

GROUP = "apiextensions.k8s.io"
CLEANUP_FINALIZER = "customresourcecleanup.apiextensions.k8s.io"
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUB = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_FORBIDDEN_KEYS = ("definitions", "dependencies", "deprecated", "discriminator", "id", "patternProperties",
                   "readOnly", "writeOnly", "xml", "$ref", "$schema")
_PRINTER_TYPES = ("integer", "number", "string", "boolean", "date")
_SCALE = SubresourceInfo("scale", "Scale", ("get", "patch", "update"), "autoscaling", "v1")


# ---------------------------------------------------------------- defaulting


def apply_defaults(crd: dict[str, Any]) -> None:
    spec = crd.setdefault("spec", {})
    if not isinstance(spec, dict):
        return
    names = spec.get("names")
    if isinstance(names, dict):
        if names.get("kind") and not names.get("listKind"):
            names["listKind"] = f"{names['kind']}List"
        if names.get("kind") and not names.get("singular"):
            names["singular"] = str(names["kind"]).lower()
    conv = spec.setdefault("conversion", {})
    if isinstance(conv, dict):
        conv.setdefault("strategy", "None")
    crd.setdefault("status", {}).setdefault("acceptedNames", {"kind": "", "plural": ""})
    crd["status"].setdefault("storedVersions", [])


# ---------------------------------------------------------------- validation


def validate(crd: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
    out: list[FieldError] = []
    md = meta_of(crd)
    spec = crd.get("spec")
    if not isinstance(spec, dict):
        return [errors.required("spec", "")]
    group = spec.get("group")
    names = spec.get("names") if isinstance(spec.get("names"), dict) else {}
    plural = names.get("plural") or ""
    if not group:
        out.append(errors.required("spec.group", ""))
    elif not isinstance(group, str) or "." not in group or not _DNS1123_SUB.match(group):
        out.append(errors.invalid("spec.group", group, "should be a domain with at least one dot"))
    if md.get("name") != f"{plural}.{group}":
        out.append(errors.invalid("metadata.name", md.get("name"), 'must be spec.names.plural+"."+spec.group'))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        out.append(errors.required("spec.scope", "") if not scope else
                   errors.not_supported("spec.scope", scope, ["Cluster", "Namespaced"]))
    for fld in ("plural", "singular", "kind", "listKind"):
        val = names.get(fld)
        if not val:
            out.append(errors.required(f"spec.names.{fld}", ""))
        elif fld in ("plural", "singular") and not _DNS1123_LABEL.match(str(val)):
            out.append(errors.invalid(f"spec.names.{fld}", val,
                                      "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                                      "characters or '-', and must start and end with an alphanumeric character"))
    for i, sn in enumerate(names.get("shortNames") or []):
        if not isinstance(sn, str) or not _DNS1123_LABEL.match(sn):
            out.append(errors.invalid(f"spec.names.shortNames[{i}]", sn,
                                      "a lowercase RFC 1123 label must consist of lower case alphanumeric "
                                      "characters or '-', and must start and end with an alphanumeric character"))
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        out.append(errors.invalid("spec.versions", versions, "must have exactly one version marked as storage "
                                  "version"))
        return out
    storage = [v for v in versions if isinstance(v, dict) and v.get("storage") is True]
    if len(storage) != 1:
        out.append(errors.invalid("spec.versions", "[...]", "must have exactly one version marked as storage "
                                  "version"))
    seen: set[str] = set()
    for i, v in enumerate(versions):
        p = f"spec.versions[{i}]"
        if not isinstance(v, dict):
            out.append(errors.invalid(p, v, "must be an object"))
            continue
        name = v.get("name")
        if not isinstance(name, str) or not _DNS1035.match(name):
            out.append(errors.invalid(f"{p}.name", name, "a DNS-1035 label must consist of lower case "
                                      "alphanumeric characters or '-', start with an alphabetic character, and "
                                      "end with an alphanumeric character"))
        elif name in seen:
            out.append(errors.invalid("spec.versions", name, "must appear only once"))
        seen.add(str(name))
        if not isinstance(v.get("served"), bool):
            out.append(errors.required(f"{p}.served", ""))
        root = ((v.get("schema") or {}).get("openAPIV3Schema")) if isinstance(v.get("schema"), dict) else None
        if not isinstance(root, dict):
            out.append(errors.required(f"{p}.schema.openAPIV3Schema", "schemas are required"))
        else:
            out += structural_errors(root, f"{p}.schema.openAPIV3Schema")
        out += _subresource_errors(v.get("subresources"), f"{p}.subresources")
        for j, c in enumerate(v.get("additionalPrinterColumns") or []):
            cp = f"{p}.additionalPrinterColumns[{j}]"
            if not isinstance(c, dict):
                continue
            if not c.get("name"):
                out.append(errors.required(f"{cp}.name", ""))
            if c.get("type") not in _PRINTER_TYPES:
                out.append(errors.not_supported(f"{cp}.type", c.get("type"), list(_PRINTER_TYPES)))
            if not c.get("jsonPath"):
                out.append(errors.required(f"{cp}.jsonPath", ""))
    if any(isinstance(v, dict) and v.get("served") for v in versions) is False:
        out.append(errors.invalid("spec.versions", "[...]", "must have at least one served version"))
    conv = spec.get("conversion") or {}
    if isinstance(conv, dict) and conv.get("strategy") != "None":
        # conversion webhooks are not implemented: refuse rather than serve versions unconverted
        out.append(errors.not_supported("spec.conversion.strategy", conv.get("strategy"), ["None"]))
    if old is not None:
        ospec = old.get("spec") or {}
        if ospec.get("scope") != spec.get("scope"):
            out.append(errors.invalid("spec.scope", spec.get("scope"), "field is immutable"))
        stored = (old.get("status") or {}).get("storedVersions") or []
        names_now = {v.get("name") for v in versions if isinstance(v, dict)}
        for sv in stored:
            if sv not in names_now:
                out.append(errors.invalid("status.storedVersions[0]", sv,
                                          "must appear in spec.versions"))
    return out


def _subresource_errors(subs: Any, p: str) -> list[FieldError]:
    out: list[FieldError] = []
    if not isinstance(subs, dict):
        return out
    scale = subs.get("scale")
    if isinstance(scale, dict):
        spr = scale.get("specReplicasPath")
        if not spr:
            out.append(errors.required(f"{p}.scale.specReplicasPath", ""))
        elif not str(spr).startswith(".spec."):
            out.append(errors.invalid(f"{p}.scale.specReplicasPath", spr, "should be a json path under .spec"))
        srp = scale.get("statusReplicasPath")
        if not srp:
            out.append(errors.required(f"{p}.scale.statusReplicasPath", ""))
        elif not str(srp).startswith(".status."):
            out.append(errors.invalid(f"{p}.scale.statusReplicasPath", srp, "should be a json path under .status"))
    return out


def structural_errors(root: sch.Schema, path: str) -> list[FieldError]:
    out: list[FieldError] = []
    if not root.get("type") and not root.get(sch.PRESERVE) and not root.get(sch.INT_OR_STRING):
        out.append(errors.required(f"{path}.type", "must not be empty at the root"))
    elif root.get("type") and root.get("type") != "object":
        out.append(errors.invalid(f"{path}.type", root.get("type"), "must be object at the root"))
    _structural(root, path, out, top=True)
    meta = sch.props(root).get("metadata")
    if isinstance(meta, dict):
        for k in sch.props(meta):
            if k not in ("name", "generateName"):
                out.append(errors.forbidden(f"{path}.properties[metadata].properties[{k}]",
                                            "must not be specified"))
    return out


def _structural(s: Any, path: str, out: list[FieldError], top: bool = False, in_junctor: bool = False) -> None:
    if not isinstance(s, dict):
        out.append(errors.invalid(path, s, "must be an object"))
        return
    for k in _FORBIDDEN_KEYS:
        if k in s:
            out.append(errors.forbidden(f"{path}.{k}", f"{k} is not supported"))
    if s.get("uniqueItems") is True:
        out.append(errors.forbidden(f"{path}.uniqueItems", "uniqueItems cannot be set to true since the runtime "
                                    "complexity becomes quadratic"))
    if s.get("additionalProperties") is False:
        out.append(errors.forbidden(f"{path}.additionalProperties", "additionalProperties cannot be set to false"))
    if "additionalProperties" in s and "properties" in s and s.get("additionalProperties") is not False:
        out.append(errors.forbidden(f"{path}.additionalProperties",
                                    "additionalProperties and properties are mutual exclusive"))
    if in_junctor:
        for k in ("description", "type", "default", "additionalProperties", "nullable"):
            if k in s:
                out.append(errors.forbidden(f"{path}.{k}", "must be empty to be structural"))
    lt = s.get(sch.LIST_TYPE)
    if lt is not None:
        if lt not in ("atomic", "set", "map"):
            out.append(errors.not_supported(f"{path}.x-kubernetes-list-type", lt, ["atomic", "set", "map"]))
        elif s.get("type") != "array":
            out.append(errors.invalid(f"{path}.x-kubernetes-list-type", lt, "must only be used if type == array"))
        elif lt == "map":
            keys = s.get(sch.LIST_MAP_KEYS)
            if not keys:
                out.append(errors.required(f"{path}.x-kubernetes-list-map-keys",
                                           "must not be empty if x-kubernetes-list-type is map"))
    mt = s.get(sch.MAP_TYPE)
    if mt is not None and mt not in ("atomic", "granular"):
        out.append(errors.not_supported(f"{path}.x-kubernetes-map-type", mt, ["atomic", "granular"]))
    for j, rule in enumerate(s.get(sch.VALIDATIONS) or []):
        rp = f"{path}.x-kubernetes-validations[{j}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str) or not rule.get("rule"):
            out.append(errors.required(f"{rp}.rule", ""))
            continue
        try:
            celrules.compile_expr(rule["rule"])
        except celrules.CelCompileError as exc:
            out.append(errors.invalid(f"{rp}.rule", rule["rule"], f"compilation failed: {exc}"))
        msg = rule.get("message")
        if isinstance(msg, str) and ("\n" in msg):
            out.append(errors.invalid(f"{rp}.message", msg, "message must not contain line breaks"))
        me = rule.get("messageExpression")
        if isinstance(me, str) and me:
            try:
                celrules.compile_expr(me)
            except celrules.CelCompileError as exc:
                out.append(errors.invalid(f"{rp}.messageExpression", me, f"compilation failed: {exc}"))
        if rule.get("reason") not in (None, "FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired",
                                      "FieldValueDuplicate"):
            out.append(errors.not_supported(f"{rp}.reason", rule.get("reason"), [
                "FieldValueDuplicate", "FieldValueForbidden", "FieldValueInvalid", "FieldValueRequired"]))
    for name, child in sch.props(s).items():
        if isinstance(child, dict) and not in_junctor and not child.get("type") and not child.get(sch.PRESERVE) \
                and not child.get(sch.INT_OR_STRING):
            out.append(errors.required(f"{path}.properties[{name}].type", "must not be empty for specified object "
                                       "fields"))
        _structural(child, f"{path}.properties[{name}]", out, in_junctor=in_junctor)
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        if not in_junctor and not ap.get("type") and not ap.get(sch.PRESERVE) and not ap.get(sch.INT_OR_STRING):
            out.append(errors.required(f"{path}.additionalProperties.type", "must not be empty for specified "
                                       "additionalProperties fields"))
        _structural(ap, f"{path}.additionalProperties", out, in_junctor=in_junctor)
    it = s.get("items")
    if isinstance(it, dict):
        if not in_junctor and not it.get("type") and not it.get(sch.PRESERVE) and not it.get(sch.INT_OR_STRING):
            out.append(errors.required(f"{path}.items.type", "must not be empty for specified array items"))
        _structural(it, f"{path}.items", out, in_junctor=in_junctor)
    elif it is not None:
        out.append(errors.forbidden(f"{path}.items", "items must be a schema object and not an array"))
    for j in ("allOf", "anyOf", "oneOf"):
        for k, sub in enumerate(s.get(j) or []):
            if _int_or_string_pattern(s, j):
                continue
            _structural(sub, f"{path}.{j}[{k}]", out, in_junctor=True)
    if isinstance(s.get("not"), dict):
        _structural(s["not"], f"{path}.not", out, in_junctor=True)
    if s.get("type") == "array" and not isinstance(it, dict) and not in_junctor:
        out.append(errors.required(f"{path}.items", "must be specified"))


def _int_or_string_pattern(s: sch.Schema, junctor: str) -> bool:
    return bool(s.get(sch.INT_OR_STRING)) and junctor == "anyOf"


# ---------------------------------------------------------------- served resources


@dataclass(frozen=True)
class CrdVersion:
    """One served version of a CRD, everything a request for it needs."""

    info: ResourceInfo
    schema: sch.Schema
    printer_columns: tuple[dict[str, Any], ...]
    scale: dict[str, Any] | None
    storage_version: str
    crd_name: str
    selectable_fields: tuple[str, ...] = ()
    deprecated: bool = False
    deprecation_warning: str = ""
    multi_version: bool = False  # objects may be stored at another version: reads rewrite apiVersion
    terminating: bool = False  # the CRD is being deleted: no new objects
    extra: dict[str, Any] = field(default_factory=dict)


def _version_key(v: str) -> tuple[int, int, int, str]:
    """Kube-aware version priority: GA > beta > alpha > others, higher numbers first."""
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", v)
    if not m:
        return (3, 0, 0, v)
    major = int(m.group(1))
    if m.group(2) is None:
        return (0, -major, 0, v)
    return (1 if m.group(2) == "beta" else 2, -major, -int(m.group(3)), v)


def sort_versions(names: list[str]) -> list[str]:
    return sorted(names, key=_version_key)


def served_versions(crd: dict[str, Any]) -> list[CrdVersion]:
    spec = crd.get("spec") or {}
    names = (crd.get("status") or {}).get("acceptedNames") or {}
    if not names.get("plural"):
        names = spec.get("names") or {}
    group = spec.get("group", "")
    namespaced = spec.get("scope") == "Namespaced"
    storage = next((v.get("name") for v in spec.get("versions") or [] if v.get("storage")), "")
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served"):
            continue
        subs_spec = v.get("subresources") or {}
        subs: list[SubresourceInfo] = []
        if isinstance(subs_spec.get("scale"), dict):
            subs.append(_SCALE)
        if "status" in subs_spec:
            subs.append(SubresourceInfo("status", names.get("kind", ""), ("get", "patch", "update")))
        info = ResourceInfo(group=group, version=v["name"], kind=names.get("kind", ""), plural=names.get("plural", ""),
                            singular=names.get("singular") or str(names.get("kind", "")).lower(),
                            namespaced=namespaced, short_names=tuple(names.get("shortNames") or ()),
                            categories=tuple(names.get("categories") or ()), verbs=ALL_VERBS,
                            subresources=tuple(s.name for s in subs),
                            list_kind=names.get("listKind") or f"{names.get('kind', '')}List",
                            subresource_info=tuple(subs))
        root = (v.get("schema") or {}).get("openAPIV3Schema") or {"type": "object",
                                                                  sch.PRESERVE: True}
        out.append(CrdVersion(info=info, schema=root,
                              printer_columns=tuple(v.get("additionalPrinterColumns") or ()),
                              scale=subs_spec.get("scale") if isinstance(subs_spec.get("scale"), dict) else None,
                              storage_version=storage, crd_name=meta_of(crd).get("name", ""),
                              selectable_fields=tuple(f.get("jsonPath", "") for f in v.get("selectableFields") or ()),
                              deprecated=bool(v.get("deprecated")),
                              deprecation_warning=v.get("deprecationWarning") or "",
                              terminating=bool(meta_of(crd).get("deletionTimestamp")),
                              multi_version=len(spec.get("versions") or []) > 1
                              or (crd.get("status") or {}).get("storedVersions", [v["name"]]) != [v["name"]]))
    return out


# ---------------------------------------------------------------- names and conditions


def naming_condition(crd: dict[str, Any], others: list[dict[str, Any]],
                     builtin_names: set[tuple[str, str]] | None = None) -> tuple[str, str, str]:
    """(status, reason, message) of ``NamesAccepted`` given the group's other CRDs."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    plural, singular, kind = names.get("plural"), names.get("singular"), names.get("kind")
    short = set(names.get("shortNames") or [])
    for o in others:
        if (o.get("spec") or {}).get("group") != group:
            continue
        acc = (o.get("status") or {}).get("acceptedNames") or {}
        if not acc.get("plural"):
            continue
        if acc.get("plural") == plural or acc.get("singular") == plural:
            return "False", "PluralConflict", f'"{plural}" is already in use'
        if acc.get("plural") == singular or acc.get("singular") == singular:
            return "False", "SingularConflict", f'"{singular}" is already in use'
        taken = set(acc.get("shortNames") or []) | {acc.get("plural"), acc.get("singular")}
        clash = sorted(short & taken)
        if clash:
            return "False", "ShortNamesConflict", f'"{clash[0]}" is already in use'
        if acc.get("kind") == kind:
            return "False", "KindConflict", f'"{kind}" is already in use'
        if acc.get("listKind") == names.get("listKind"):
            return "False", "ListKindConflict", f'"{names.get("listKind")}" is already in use'
    return "True", "NoConflicts", "no conflicts found"


def set_condition(crd: dict[str, Any], ctype: str, status: str, reason: str, message: str, now: str) -> bool:
    """Set one status condition; True when it changed (the transition time moves only on a status change)."""
    conds = crd.setdefault("status", {}).setdefault("conditions", [])
    for c in conds:
        if c.get("type") == ctype:
            if (c.get("status"), c.get("reason"), c.get("message")) == (status, reason, message):
                return False
            if c.get("status") != status:
                c["lastTransitionTime"] = now
            c.update(status=status, reason=reason, message=message)
            return True
    conds.append({"type": ctype, "status": status, "lastTransitionTime": now, "reason": reason,
                  "message": message})
    return True
