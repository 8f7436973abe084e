"""Validation of the RBAC kinds (upstream ``pkg/apis/rbac/validation``): names are path segments,
rules need verbs, Roles carry no nonResourceURLs, subjects have a known kind, ``roleRef`` is immutable."""

from __future__ import annotations

from servicenet.api.errors import FieldError, invalid, not_supported, required
from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of

Errs = list[FieldError]
KINDS = ("Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")


def path_segment_name(name: str) -> list[str]:
    if name in (".", ".."):
        return [f'may not be \'{name}\'']
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def _meta(obj: Obj, namespaced: bool) -> Errs:
    md = meta_of(obj)
    name = md.get("name") or ""
    errs: Errs = [] if name else [required("metadata.name", "name or generateName is required")]
    errs += [invalid("metadata.name", name, m) for m in path_segment_name(name)]
    if namespaced and not md.get("namespace"):
        errs.append(required("metadata.namespace"))
    return errs


def _rules(obj: Obj, namespaced: bool) -> Errs:
    errs: Errs = []
    for i, r in enumerate(obj.get("rules") or []):
        p = f"rules[{i}]"
        if not r.get("verbs"):
            errs.append(required(p + ".verbs", "verbs must contain at least one value"))
        if r.get("nonResourceURLs"):
            if namespaced:
                errs.append(invalid(p + ".nonResourceURLs", r["nonResourceURLs"],
                                    "namespaced rules cannot apply to non-resource URLs"))
            elif r.get("apiGroups") or r.get("resources") or r.get("resourceNames"):
                errs.append(invalid(p + ".nonResourceURLs", r["nonResourceURLs"],
                                    "rules cannot apply to both regular resources and non-resource URLs"))
            continue
        if not r.get("apiGroups"):
            errs.append(required(p + ".apiGroups", "resource rules must supply at least one api group"))
        if not r.get("resources"):
            errs.append(required(p + ".resources", "resource rules must supply at least one resource"))
    return errs


def _binding(obj: Obj, old: Obj | None, namespaced: bool) -> Errs:
    errs: Errs = []
    ref = obj.get("roleRef") or {}
    if ref.get("apiGroup") != "rbac.authorization.k8s.io":
        errs.append(not_supported("roleRef.apiGroup", ref.get("apiGroup", ""), ["rbac.authorization.k8s.io"]))
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]
    if ref.get("kind") not in kinds:
        errs.append(not_supported("roleRef.kind", ref.get("kind", ""), kinds))
    if not ref.get("name"):
        errs.append(required("roleRef.name"))
    if old is not None and (old.get("roleRef") or {}) != ref:
        errs.append(invalid("roleRef", ref, "cannot change roleRef"))
    for i, s in enumerate(obj.get("subjects") or []):
        p = f"subjects[{i}]"
        if not s.get("name"):
            errs.append(required(p + ".name"))
        kind = s.get("kind")
        if kind not in ("User", "Group", "ServiceAccount"):
            errs.append(not_supported(p + ".kind", kind or "", ["ServiceAccount", "User", "Group"]))
        elif kind == "ServiceAccount" and not namespaced and not s.get("namespace"):
            errs.append(required(p + ".namespace"))
    return errs


def validate(kind: str, obj: Obj, old: Obj | None) -> Errs:
    namespaced = kind in ("Role", "RoleBinding")
    errs = _meta(obj, namespaced)
    if kind.endswith("Binding"):
        return errs + _binding(obj, old, namespaced)
    return errs + _rules(obj, namespaced)
