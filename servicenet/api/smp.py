"""Kubernetes strategic merge patch (``application/strategic-merge-patch+json``) — pure.

Semantics follow ``apimachinery/pkg/util/strategicpatch`` as used by the API server
(``MergeParallelList`` and ``IgnoreUnmatchedNulls`` on):

* maps merge recursively, ``null`` deletes a key;
* lists tagged ``patchStrategy:"merge"`` merge by ``patchMergeKey`` (or as a set for scalars),
  every other list is replaced wholesale;
* directives: ``$patch: replace|delete`` (in maps and list elements), ``$retainKeys``,
  ``$setElementOrder/<list>``, ``$deleteFromPrimitiveList/<list>``.

The per-kind list schema (``LIST_SCHEMA``) also carries the server-side-apply list types
(``listType``/``listMapKeys``) so ``apply.py`` shares one table.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from servicenet.api.errors import ApiStatusError

__all__ = ["ListSpec", "LIST_SCHEMA", "SmpError", "list_spec", "strategic_merge_patch"]


@dataclass(frozen=True, slots=True)
class ListSpec:
    """How one list field patches: SMP strategy/merge key and SSA list type/keys."""

    strategy: str  # SMP: "merge" | "replace"
    merge_key: str = ""
    ssa: str = "atomic"  # SSA: "atomic" | "map" | "set"
    keys: tuple[str, ...] = ()


def _m(key: str, *ssa_keys: str) -> ListSpec:
    return ListSpec("merge", key, "map", ssa_keys or (key,))


_SET = ListSpec("merge", "", "set")
_ATOMIC = ListSpec("replace")

_CONTAINER: dict[tuple[str, ...], ListSpec] = {
    ("ports",): _m("containerPort", "containerPort", "protocol"),
    ("env",): _m("name"),
    ("volumeMounts",): _m("mountPath"),
    ("volumeDevices",): _m("devicePath"),
    ("resizePolicy",): ListSpec("replace"),
}

_POD_SPEC: dict[tuple[str, ...], ListSpec] = {
    ("volumes",): _m("name"),
    ("imagePullSecrets",): _m("name"),
    ("hostAliases",): _m("ip"),
    ("topologySpreadConstraints",): _m("topologyKey", "topologyKey", "whenUnsatisfiable"),
    ("schedulingGates",): _m("name"),
    ("resourceClaims",): _m("name"),
}
for _c in ("containers", "initContainers", "ephemeralContainers"):
    _POD_SPEC[(_c,)] = _m("name")
    for _p, _s in _CONTAINER.items():
        _POD_SPEC[(_c, *_p)] = _s

_CONDITIONS = _m("type")

_META: dict[tuple[str, ...], ListSpec] = {
    ("metadata", "finalizers"): _SET,
    ("metadata", "ownerReferences"): _m("uid"),
}


def _prefixed(prefix: tuple[str, ...], table: Mapping[tuple[str, ...], ListSpec]) -> dict[tuple[str, ...], ListSpec]:
    return {(*prefix, *k): v for k, v in table.items()}


def _workload(template: tuple[str, ...]) -> dict[tuple[str, ...], ListSpec]:
    out = dict(_META)
    out.update(_prefixed((*template, "spec"), _POD_SPEC))
    out.update(_prefixed((*template, "metadata"), {("finalizers",): _SET, ("ownerReferences",): _m("uid")}))
    out[("status", "conditions")] = _CONDITIONS
    return out


LIST_SCHEMA: dict[str, dict[tuple[str, ...], ListSpec]] = {
    "Pod": {
        **_META,
        **_prefixed(("spec",), _POD_SPEC),
        ("status", "conditions"): _CONDITIONS,
        ("status", "podIPs"): _m("ip"),
        ("status", "hostIPs"): _m("ip"),
    },
    "PodTemplate": {**_META, **_prefixed(("template", "spec"), _POD_SPEC)},
    "Deployment": _workload(("spec", "template")),
    "ReplicaSet": _workload(("spec", "template")),
    "StatefulSet": _workload(("spec", "template")),
    "DaemonSet": _workload(("spec", "template")),
    "Job": _workload(("spec", "template")),
    "CronJob": _workload(("spec", "jobTemplate", "spec", "template")),
    "Service": {**_META, ("spec", "ports"): _m("port", "port", "protocol"), ("status", "conditions"): _CONDITIONS},
    "Node": {**_META, ("spec", "podCIDRs"): _SET, ("status", "conditions"): _CONDITIONS,
             ("status", "addresses"): _m("type")},
    "Namespace": {**_META, ("status", "conditions"): _CONDITIONS},
}


def list_spec(kind: str, path: tuple[str, ...]) -> ListSpec | None:
    """The schema of the list at ``path`` (field names only, no indices); ``None`` = atomic."""
    table = LIST_SCHEMA.get(kind)
    if table is None:
        return _META.get(path)
    return table.get(path)


# ---------------------------------------------------------------------------------------------


class SmpError(ApiStatusError):
    """A malformed strategic merge patch (answered as 400 BadRequest)."""

    def __init__(self, message: str, code: int = 400, reason: str = "BadRequest") -> None:
        super().__init__(code, reason, message)


_DIRECTIVE = "$patch"
_RETAIN = "$retainKeys"
_ORDER = "$setElementOrder/"
_DELETE_PRIM = "$deleteFromPrimitiveList/"


def strategic_merge_patch(kind: str, original: Mapping[str, Any], patch: Any) -> dict[str, Any]:
    """Apply ``patch`` (already JSON-decoded) to ``original``; returns a new dict."""
    if not isinstance(patch, dict):
        raise SmpError("json: cannot unmarshal into Go value of type map[string]interface {}")
    merged = _merge_map(copy.deepcopy(dict(original)), copy.deepcopy(patch), kind, ())
    return _strip(merged)


def _strip(v: Any) -> Any:
    """Drop directive keys left behind in newly added elements (the typed decode ignores them)."""
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items()
                if not (k == _DIRECTIVE or k == _RETAIN or k.startswith(_ORDER) or k.startswith(_DELETE_PRIM))}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def _discard_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        for k in [k for k, x in v.items() if x is None]:
            del v[k]
        for x in v.values():
            _discard_nulls(x)
    elif isinstance(v, list):
        for x in v:
            _discard_nulls(x)
    return v


def _merge_map(original: dict[str, Any] | None, patch: dict[str, Any], kind: str,
               path: tuple[str, ...]) -> dict[str, Any]:
    if _DIRECTIVE in patch:
        d = patch[_DIRECTIVE]
        if d == "replace":
            del patch[_DIRECTIVE]
            return _discard_nulls(patch)
        if d == "delete":
            return {}
        raise SmpError(f"unknown patch type: {d} in map: {patch}")
    if original is None:
        original = {}
    if _RETAIN in patch:
        keep = patch.pop(_RETAIN)
        if not isinstance(keep, list):
            raise SmpError("invalid patch format for $retainKeys: must be a list of keys")
        for k in [k for k in original if k not in keep]:
            del original[k]
    _merge_ordered_lists(original, patch, kind, path)
    for k, pv in list(patch.items()):
        is_delete_list = False
        if k.startswith(_DELETE_PRIM):
            k = k[len(_DELETE_PRIM):]
            is_delete_list = True
        if pv is None and not is_delete_list:
            original.pop(k, None)
            continue
        if k not in original:
            if not is_delete_list:
                original[k] = _discard_nulls(pv)
            continue
        ov = original[k]
        if type(ov) is not type(pv) or not isinstance(pv, dict | list):
            if not is_delete_list:
                original[k] = _discard_nulls(pv)
            continue
        sub = (*path, k)
        if isinstance(pv, dict):
            original[k] = _merge_map(ov, pv, kind, sub)
        else:
            spec = list_spec(kind, sub)
            if spec is not None and spec.strategy == "merge":
                original[k] = _merge_list(ov, pv, kind, sub, spec.merge_key, is_delete_list)
            elif not is_delete_list:
                original[k] = pv
    return original


def _merge_ordered_lists(original: dict[str, Any], patch: dict[str, Any], kind: str,
                         path: tuple[str, ...]) -> None:
    for key in [k for k in patch if k.startswith(_ORDER)]:
        order = patch.pop(key)
        field = key[len(_ORDER):]
        if not isinstance(order, list):
            raise SmpError("invalid patch format for $setElementOrder list: must be a list")
        ov = original.get(field) or []
        pv = patch.pop(field, None) or []
        if not isinstance(ov, list) or not isinstance(pv, list):
            raise SmpError(f"invalid value for {field}: expected a list")
        spec = list_spec(kind, (*path, field))
        mk = spec.merge_key if spec else ""
        _validate_order(pv, order, mk)
        if not ov and not pv:
            continue
        if not ov:
            merged = pv
        elif not pv:
            merged = ov
        elif spec is not None and spec.strategy == "merge":
            merged = _merge_list(ov, pv, kind, (*path, field), mk, False)
        else:
            merged = pv
        kind_is_map = any(isinstance(x, dict) for x in (*ov, *pv))
        in_patch, server_only = _partition(merged, order, mk if kind_is_map else "")
        original[field] = _normalize(in_patch, server_only, order, ov, mk if kind_is_map else "")


def _validate_order(patch_list: list[Any], order: list[Any], mk: str) -> None:
    """Every non-directive patch element must appear in the order list, in the same order."""
    def key(x: Any) -> Any:
        return x.get(mk) if mk and isinstance(x, dict) else x

    order_keys = [key(x) for x in order]
    pos = -1
    for x in patch_list:
        if isinstance(x, dict) and _DIRECTIVE in x:
            continue
        k = key(x)
        if k not in order_keys:
            raise SmpError("invalid patch format for $setElementOrder list: element not found in order list")
        i = order_keys.index(k)
        if i < pos:
            raise SmpError("invalid patch format for $setElementOrder list: order does not match the patch list")
        pos = i


def _merge_list(original: list[Any], patch: list[Any], kind: str, path: tuple[str, ...], mk: str,
                is_delete_list: bool) -> list[Any]:
    if not original and not patch:
        return original
    elems = [*original, *patch]
    is_map = isinstance(elems[0], dict)
    if any(isinstance(x, list) for x in elems):
        raise SmpError("strategic merge patch format is not supported: lists of lists", 422, "Invalid")
    if any(isinstance(x, dict) != is_map for x in elems):
        raise SmpError("mismatched types in list: maps and scalars")
    if not is_map:
        if is_delete_list:
            drop = set(map(_hashable, patch))
            return [x for x in original if _hashable(x) not in drop]
        merged: list[Any] = []
        seen: set[Any] = set()
        for x in elems:
            h = _hashable(x)
            if h not in seen:
                seen.add(h)
                merged.append(x)
        mk_local = ""
        order_src = patch
    else:
        if not mk:
            raise SmpError(f"cannot merge lists without merge key for {'.'.join(path)}")
        original, patch = _special_elements(original, patch, mk)
        merged = list(original)
        for pe in patch:
            if mk not in pe:
                raise SmpError(f"map: {_go_map(pe)} does not contain declared merge key: {mk}")
            idx = next((i for i, oe in enumerate(merged) if isinstance(oe, dict) and oe.get(mk) == pe[mk]), -1)
            if idx >= 0:
                merged[idx] = _merge_map(merged[idx], pe, kind, path)
            else:
                merged.append(pe)
        mk_local = mk
        order_src = patch
    in_patch, server_only = _partition(merged, order_src, mk_local)
    return _normalize(in_patch, server_only, order_src, original, mk_local)


def _special_elements(original: list[Any], patch: list[Any], mk: str) -> tuple[list[Any], list[Any]]:
    plain: list[Any] = []
    replace = False
    for pe in patch:
        if _DIRECTIVE not in pe:
            plain.append(pe)
            continue
        d = pe[_DIRECTIVE]
        if d == "delete":
            if mk not in pe:
                raise SmpError(f"map: {_go_map(pe)} does not contain declared merge key: {mk}")
            original = [oe for oe in original if not (isinstance(oe, dict) and oe.get(mk) == pe[mk])]
        elif d == "replace":
            replace = True
        elif d == "merge":
            raise SmpError("merging lists cannot yet be specified in the patch")
        else:
            raise SmpError(f"unknown patch type: {d} in map: {_go_map(pe)}")
    if replace:
        return plain, []
    return original, plain


def _hashable(x: Any) -> Any:
    return (type(x).__name__, x) if not isinstance(x, dict | list) else repr(x)


def _key_of(x: Any, mk: str) -> Any:
    if mk:
        return _hashable(x.get(mk)) if isinstance(x, dict) else None
    return _hashable(x)


def _partition(merged: list[Any], present: list[Any], mk: str) -> tuple[list[Any], list[Any]]:
    keys = {_key_of(x, mk) for x in present}
    in_patch = [x for x in merged if _key_of(x, mk) in keys]
    server_only = [x for x in merged if _key_of(x, mk) not in keys]
    return in_patch, server_only


def _index(items: list[Any], x: Any, mk: str) -> int:
    k = _key_of(x, mk)
    for i, it in enumerate(items):
        if _key_of(it, mk) == k:
            return i
    return -1


def _normalize(in_patch: list[Any], server_only: list[Any], patch_order: list[Any], server_order: list[Any],
               mk: str) -> list[Any]:
    """Sort patch items by the patch order, server-only items by live order, then interleave."""
    left = sorted(server_only, key=lambda x: _index(server_order, x, mk))
    right = sorted(in_patch, key=lambda x: _index(patch_order, x, mk))
    out: list[Any] = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li, ri = _index(server_order, left[i], mk), _index(server_order, right[j], mk)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out


def _go_map(m: Mapping[str, Any]) -> str:
    """Rough rendering of a Go ``map[string]interface{}`` for error messages."""
    return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(m.items())) + "]"
