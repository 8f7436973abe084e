"""Server-side apply and ``metadata.managedFields`` bookkeeping (pure).

A simplified structured-merge-diff: field sets are Python sets of paths, a path being a tuple
of FieldsV1 path elements (``f:spec``, ``k:{"port":80,"protocol":"TCP"}``, ``v:"x"``).  List
types and keys come from ``smp.LIST_SCHEMA`` (``listType=map`` / ``set`` / atomic).

* ``server_side_apply`` merges an apply configuration into the live object, removes fields this
  manager applied before and no longer applies (unless someone else owns them), and reports
  conflicts with other managers as 409 ``Conflict`` with ``FieldManagerConflict`` causes unless
  ``force`` (then ownership moves to the applier).
* ``update_managed_fields`` records what a PUT/PATCH/POST changed under an ``Update`` manager
  (``kubectl-create``, ``kubectl-client-side-apply``, ``kubectl-patch``…), taking ownership away
  from others, as upstream does for non-apply writes.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from servicenet.api import smp
from servicenet.api.errors import ApiStatusError, bad_request
from servicenet.api.patch import kind_of
from servicenet.api.smp import ListSpec, list_spec
from servicenet.api.views import meta as meta_of

__all__ = [
    "fields_to_set",
    "path_string",
    "server_side_apply",
    "set_to_fields",
    "update_managed_fields",
]

Path = tuple[str, ...]
FieldSet = set[Path]

# metadata the field manager never tracks (upstream strips these before computing sets)
_STRIPPED: frozenset[Path] = frozenset({
    ("f:apiVersion",), ("f:kind",), ("f:metadata", "f:name"), ("f:metadata", "f:namespace"),
    ("f:metadata", "f:creationTimestamp"), ("f:metadata", "f:selfLink"), ("f:metadata", "f:uid"),
    ("f:metadata", "f:generation"), ("f:metadata", "f:managedFields"), ("f:metadata", "f:resourceVersion"),
    ("f:metadata", "f:deletionTimestamp"), ("f:metadata", "f:deletionGracePeriodSeconds"),
    ("f:metadata", "f:generateName"),
})
_MAP_FIELDS = frozenset(["labels", "annotations", "data", "binaryData", "stringData", "nodeSelector",
                         "matchLabels", "limits", "requests", "capacity", "allocatable", "selector"])
_ATOMIC_MAPS: dict[str, frozenset[tuple[str, ...]]] = {
    "Service": frozenset([("spec", "selector")]),
    **{k: frozenset([("spec", "selector")]) for k in ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job")},
}
_KEY_DEFAULTS = {"protocol": "TCP"}
_NO_PATHS: frozenset[tuple[str, ...]] = frozenset()
_STRIPPED_HEADS: frozenset[str] = frozenset(s[0] for s in _STRIPPED)
# every prefix length of a stripped path: ``p`` is at or under a stripped path iff one of its
# prefixes of these lengths is a member
_STRIPPED_LENS: tuple[int, ...] = tuple(sorted({len(s) for s in _STRIPPED}))
# FieldsV1 member order: fields, keyed elements, set values, indices, anything else
_PE_ORDER: dict[str, int] = {"f": 0, "k": 1, "v": 2, "i": 3}


_PLAIN = (str, int, bool)


def _dumps(v: Any) -> str:
    # orjson writes exactly what json.dumps does here for strings, booleans and 64-bit integers
    # (the usual list keys: names, ports, protocols); anything else takes the json module's path
    t = type(v)
    if t is dict:
        if all(type(x) in _PLAIN and (type(x) is not int or -(2**63) <= x < 2**64) for x in v.values()):
            return orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode()
    elif t is str:
        return orjson.dumps(v).decode()
    return json.dumps(v, separators=(",", ":"), sort_keys=True, ensure_ascii=False)


def _elem_key(spec: ListSpec, elem: Any) -> str | None:
    if not isinstance(elem, dict):
        return None
    key: dict[str, Any] = {}
    for k in spec.keys:
        if k in elem and elem[k] is not None:
            key[k] = elem[k]
        elif k in _KEY_DEFAULTS:
            key[k] = _KEY_DEFAULTS[k]
    return "k:" + _dumps(key) if key else None


def register_kind(kind: str, lists: Mapping[tuple[str, ...], ListSpec], atomic: frozenset[tuple[str, ...]]) -> None:
    """Merge a custom kind by its schema's list types and atomic maps (CRDs; built-in kinds are kept)."""
    if kind in smp.LIST_SCHEMA and kind not in _REGISTERED:
        return
    _REGISTERED.add(kind)
    smp.LIST_SCHEMA[kind] = {**smp._META, **lists}
    _ATOMIC_MAPS[kind] = atomic


_REGISTERED: set[str] = set()


def _is_atomic_map(kind: str, names: tuple[str, ...]) -> bool:
    return names in _ATOMIC_MAPS.get(kind, _NO_PATHS)


def _children(kind: str, value: Any, names: tuple[str, ...]) -> Iterator[tuple[str, Any, tuple[str, ...], bool]]:
    """Yield ``(path element, child value, field-name path, is keyed element)`` of a composite."""
    if isinstance(value, dict):
        if _is_atomic_map(kind, names):
            return
        for k, v in value.items():
            if v is not None:
                yield "f:" + k, v, (*names, k), False
    elif isinstance(value, list):
        spec = list_spec(kind, names)
        if spec is None or spec.ssa == "atomic":
            return
        for e in value:
            if spec.ssa == "set":
                yield "v:" + _dumps(e), e, names, False
            else:
                pe = _elem_key(spec, e)
                if pe is not None:
                    yield pe, e, names, True


def _is_composite(kind: str, value: Any, names: tuple[str, ...]) -> bool:
    if isinstance(value, dict):
        return bool(value) and not _is_atomic_map(kind, names)
    if isinstance(value, list):
        spec = list_spec(kind, names)
        return bool(value) and spec is not None and spec.ssa != "atomic"
    return False


def _is_container(kind: str, value: Any, names: tuple[str, ...]) -> bool:
    """A map or non-atomic list, even when empty (diffs recurse into it)."""
    if isinstance(value, dict):
        return not _is_atomic_map(kind, names)
    if isinstance(value, list):
        spec = list_spec(kind, names)
        return spec is not None and spec.ssa != "atomic"
    return False


def _apply_set(kind: str, value: Any, path: Path = (), names: tuple[str, ...] = ()) -> FieldSet:
    """Upstream ``ToFieldSet`` of an apply configuration: leaves plus keyed list elements."""
    out: FieldSet = set()
    for pe, v, sub_names, keyed in _children(kind, value, names):
        p = (*path, pe)
        if keyed:
            out.add(p)
        if _is_composite(kind, v, sub_names):
            out |= _apply_set(kind, v, p, sub_names)
        else:
            out.add(p)
    return out


def _all_paths(kind: str, value: Any, path: Path, names: tuple[str, ...]) -> FieldSet:
    """Every path at or below an added node.

    Leaves, lists, map-typed fields and keyed list elements are members themselves; non-empty
    structs are not (upstream diffs against a typed zero object where structs already exist).
    """
    out: FieldSet = set()
    _all_paths_into(kind, value, path, names, out)
    return out


def _all_paths_into(kind: str, value: Any, path: Path, names: tuple[str, ...], out: FieldSet) -> None:
    if isinstance(value, dict):
        atomic = _is_atomic_map(kind, names)
        if not (path and value and names and path[-1].startswith("f:") and names[-1] not in _MAP_FIELDS
                and not atomic):
            out.add(path)
        if atomic:
            return
        for k, v in value.items():
            if v is not None:
                _all_paths_into(kind, v, (*path, "f:" + k), (*names, k), out)
        return
    out.add(path)
    if isinstance(value, list):
        for pe, v, sub_names, _ in _children(kind, value, names):
            _all_paths_into(kind, v, (*path, pe), sub_names, out)


def _diff(kind: str, old: Any, new: Any, path: Path = (), names: tuple[str, ...] = ()) -> tuple[FieldSet, FieldSet]:
    """(added-or-changed paths, removed paths) from ``old`` to ``new``."""
    changed: FieldSet = set()
    removed: FieldSet = set()
    old_children = {pe: (v, n) for pe, v, n, _ in _children(kind, old, names)}
    new_children = {pe: (v, n) for pe, v, n, _ in _children(kind, new, names)}
    for pe, (nv, n) in new_children.items():
        p = (*path, pe)
        if pe not in old_children:
            _all_paths_into(kind, nv, p, n, changed)
            continue
        ov = old_children[pe][0]
        if ov == nv:  # an equal subtree holds no change (the walk below compares leaves with == too)
            continue
        if _is_container(kind, nv, n) and _is_container(kind, ov, n) and type(nv) is type(ov):
            c, r = _diff(kind, ov, nv, p, n)
            changed |= c
            removed |= r
        elif ov != nv:
            changed.add(p)
    for pe, (ov, n) in old_children.items():
        if pe not in new_children:
            _all_paths_into(kind, ov, (*path, pe), n, removed)
    return changed, removed


# ---------------------------------------------------------------------------------------------
# FieldsV1 <-> sets


def set_to_fields(s: FieldSet) -> dict[str, Any]:
    """Render a path set as a FieldsV1 object (``.`` marks a member that also has children)."""
    tree: dict[str, Any] = {}
    for p in s:
        node = tree
        for pe in p:
            node = node.setdefault(pe, {})
    return _finish(tree, (), s)


def _finish(node: dict[str, Any], path: Path, members: FieldSet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if not node:
        return out
    if path in members:
        out["."] = {}
    for pe in (sorted(node, key=_pe_sort) if len(node) > 1 else node):
        out[pe] = _finish(node[pe], (*path, pe), members)
    return out


def _pe_sort(pe: str) -> tuple[int, str]:
    return (_PE_ORDER.get(pe[:1], 4), pe)


def _sort_key(p: Path) -> tuple[tuple[int, str], ...]:
    return tuple(_pe_sort(pe) for pe in p)


def fields_to_set(fields: Mapping[str, Any] | None) -> FieldSet:
    out: FieldSet = set()
    _walk_fields(fields or {}, (), out)
    return out


def _walk_fields(node: Mapping[str, Any], path: Path, out: FieldSet) -> None:
    # a module function, not a closure calling itself: such a closure is a reference cycle (the
    # function, its cell) holding ``out``, so every field set of every write (a managedFields entry
    # each, on every update) would be left for the cyclic collector instead of freed at once
    for k, v in node.items():
        if k == ".":
            out.add(path)
        elif not v:
            out.add((*path, k))
        else:
            _walk_fields(v, (*path, k), out)


def path_string(p: Path) -> str:
    """``.spec.ports[port=80,protocol="TCP"].targetPort`` (upstream ``fieldpath.Path.String``)."""
    out = ""
    for pe in p:
        if pe.startswith("f:"):
            out += "." + pe[2:]
        elif pe.startswith("k:"):
            key = json.loads(pe[2:])
            out += "[" + ",".join(f"{k}={_dumps(key[k])}" for k in sorted(key)) + "]"
        elif pe.startswith("v:"):
            out += "[=" + pe[2:] + "]"
        else:
            out += f"[{pe[2:]}]"
    return out


# ---------------------------------------------------------------------------------------------
# object navigation


def _get(kind: str, obj: Any, p: Path) -> tuple[bool, Any]:
    cur, names = obj, ()
    for pe in p:
        found = False
        for cpe, v, n, _ in _children(kind, cur, names):
            if cpe == pe:
                cur, names, found = v, n, True
                break
        if not found:
            return False, None
    return True, cur


def _delete(kind: str, obj: Any, p: Path) -> None:
    ok, parent = _get(kind, obj, p[:-1])
    if not ok:
        return
    parent_names: tuple[str, ...] = tuple(pe[2:] for pe in p[:-1] if pe.startswith("f:"))
    last = p[-1]
    if isinstance(parent, dict) and last.startswith("f:"):
        parent.pop(last[2:], None)
    elif isinstance(parent, list):
        for i, (cpe, _, _, _) in enumerate(_children(kind, parent, parent_names)):
            if cpe == last:
                del parent[i]
                return


def _merge(kind: str, live: Any, applied: Any, names: tuple[str, ...] = ()) -> Any:
    if isinstance(live, dict) and isinstance(applied, dict) and not _is_atomic_map(kind, names):
        out = dict(live)
        for k, v in applied.items():
            if v is None:
                continue
            out[k] = _merge(kind, live.get(k), v, (*names, k)) if k in live else copy.deepcopy(v)
        return out
    if isinstance(live, list) and isinstance(applied, list):
        spec = list_spec(kind, names)
        if spec is not None and spec.ssa == "set":
            return live + [copy.deepcopy(x) for x in applied if x not in live]
        if spec is not None and spec.ssa == "map":
            out_list = list(live)
            for e in applied:
                key = _elem_key(spec, e)
                idx = next((i for i, x in enumerate(out_list) if key is not None and _elem_key(spec, x) == key), -1)
                if idx >= 0:
                    out_list[idx] = _merge(kind, out_list[idx], e, names)
                else:
                    out_list.append(copy.deepcopy(e))
            return out_list
    return copy.deepcopy(applied)


# ---------------------------------------------------------------------------------------------
# managedFields


def _entries(obj: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    return [dict(e) for e in meta_of(obj).get("managedFields") or []]


def _entry_id(e: Mapping[str, Any]) -> tuple[str, str, str, str]:
    op = e.get("operation", "")
    return (e.get("manager", ""), op, e.get("subresource", "") or "",
            "" if op == "Apply" else e.get("apiVersion", ""))


def _manager_label(e: Mapping[str, Any]) -> str:
    s = json.dumps(e.get("manager", ""))
    if e.get("subresource"):
        s += f' with subresource {json.dumps(e["subresource"])}'
    if e.get("operation") == "Update":
        s += f" using {e.get('apiVersion', '')}"
    return s


def _render(entries: list[tuple[dict[str, Any], FieldSet]]) -> list[dict[str, Any]]:
    out = []
    for e, s in entries:
        s = {p for p in s if p not in _STRIPPED}
        if not s:
            continue
        rec = {"manager": e.get("manager", ""), "operation": e.get("operation", ""),
               "apiVersion": e.get("apiVersion", ""), "time": e.get("time", ""), "fieldsType": "FieldsV1",
               "fieldsV1": set_to_fields(s)}
        if e.get("subresource"):
            rec["subresource"] = e["subresource"]
        out.append(rec)
    out.sort(key=lambda r: (r["operation"], r["time"] or "", r["manager"], r["apiVersion"], r.get("subresource", "")))
    return out


def _with_managed(obj: dict[str, Any], managed: list[dict[str, Any]]) -> dict[str, Any]:
    md = dict(meta_of(obj))
    if managed:
        md["managedFields"] = managed
    else:
        md.pop("managedFields", None)
    obj["metadata"] = md
    return obj


def update_managed_fields(live_before: Mapping[str, Any] | None, live_after: Mapping[str, Any], manager: str,
                          operation: str = "Update", *, api_version: str | None = None, now: str = "",
                          subresource: str = "", kind: str | None = None, reuse: bool = True) -> dict[str, Any]:
    """Return ``live_after`` with managedFields updated for a non-apply write by ``manager``.

    Fields the write added or changed move to ``manager``; removed fields leave every manager.
    ``live_after``'s own ``managedFields`` (if the client sent some) are ignored in favour of
    ``live_before``'s.

    A write that only changes values ``manager`` already owns (a Lease renew, a pod's Ready flip
    by its kubelet) moves no field and leaves every entry's time as it was, so ``live_before``'s
    managedFields are the answer as stored (they were rendered by this module, or by
    :mod:`servicenet.api.managed_create`, which renders the same); ``reuse=False`` renders them
    again anyway (the tests compare the two).
    """
    k = kind or kind_of(live_after.get("kind", ""))
    zero = {"metadata": {}, "spec": {}, "status": {}}
    before = dict(live_before) if live_before is not None else zero
    after = copy_json(live_after)
    strip = ({"metadata": {**meta_of(before), "managedFields": None}},
             {"metadata": {**meta_of(after), "managedFields": None}})
    changed, removed = _diff(k, {**before, **strip[0]}, {**after, **strip[1]})
    changed = {p for p in changed if not _under_stripped(p)}
    entries = [(e, fields_to_set(e.get("fieldsV1"))) for e in _entries(live_before)]
    me = {"manager": manager, "operation": operation, "apiVersion": api_version or after.get("apiVersion", ""),
          "time": now}
    if subresource:
        me["subresource"] = subresource
    my_id = _entry_id(me)
    result: list[tuple[dict[str, Any], FieldSet]] = []
    mine: FieldSet = set()
    mine_time = now
    moved = False  # did any entry's set change?
    ids: set[tuple[str, str, str, str]] = set()
    for e, s in entries:
        ids.add(_entry_id(e))
        if _entry_id(e) == my_id:
            mine = s - removed
            moved = moved or len(mine) != len(s)
            mine_time = e.get("time", now)
            continue
        rest = s - changed - removed
        moved = moved or len(rest) != len(s)
        result.append((e, rest))
    new_mine = mine | changed
    if new_mine != mine or not mine:
        me["time"] = now
    else:
        me["time"] = mine_time
    if reuse and mine and not moved and new_mine == mine and len(ids) == len(entries):
        return _with_managed(after, orjson.loads(orjson.dumps(meta_of(live_before)["managedFields"])))
    result.append((me, new_mine))
    return _with_managed(after, _render(result))


def _under_stripped(p: Path) -> bool:
    if not p or p[0] not in _STRIPPED_HEADS:
        return False
    return any(p[:n] in _STRIPPED for n in _STRIPPED_LENS if len(p) >= n)


def copy_json(value: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of a JSON-shaped object: an orjson round-trip when it reproduces ``value``
    exactly (same types and values), else ``copy.deepcopy`` (tuples, NaN, subclasses, big ints)."""
    try:
        out = orjson.loads(orjson.dumps(value, option=orjson.OPT_PASSTHROUGH_SUBCLASS))
    except (orjson.JSONEncodeError, orjson.JSONDecodeError):
        return copy.deepcopy(dict(value))
    if type(value) is dict and out == value:
        return out  # type: ignore[no-any-return]
    return copy.deepcopy(dict(value))


def server_side_apply(kind_info: Any, live: Mapping[str, Any] | None, applied: Mapping[str, Any], manager: str,
                      force: bool, now: str) -> dict[str, Any]:
    """Merge ``applied`` (the apply configuration) into ``live`` (``None`` = create).

    Returns the merged object with ``metadata.managedFields`` updated; raises 409 Conflict
    (causes ``FieldManagerConflict``) when another manager owns a field whose value would change
    and ``force`` is false; 400 when ``manager`` is empty or the body is not an object.
    """
    if not manager:
        raise bad_request("PATCH, application/apply-patch+yaml requests must specify a fieldManager")
    if not isinstance(applied, Mapping):
        raise bad_request("apply patch body must be an object")
    kind = kind_of(kind_info) or str(applied.get("kind", ""))
    cfg = copy.deepcopy(dict(applied))
    cfg_md = dict(meta_of(cfg))
    cfg_md.pop("managedFields", None)
    cfg["metadata"] = cfg_md
    applied_set = {p for p in _apply_set(kind, cfg) if p not in _STRIPPED}
    base = copy.deepcopy(dict(live)) if live is not None else {}
    entries = [(e, fields_to_set(e.get("fieldsV1"))) for e in _entries(live)]
    me = {"manager": manager, "operation": "Apply", "apiVersion": cfg.get("apiVersion", ""), "time": now}
    my_id = _entry_id(me)
    previous: FieldSet = set()
    others: list[tuple[dict[str, Any], FieldSet]] = []
    for e, s in entries:
        if _entry_id(e) == my_id:
            previous = s
        else:
            others.append((e, s))

    merged = _merge(kind, base, cfg)

    # conflicts: fields another manager owns whose value this apply changes
    conflicts: list[tuple[dict[str, Any], Path]] = []
    if live is not None:
        for e, s in others:
            for p in sorted(applied_set & s, key=_sort_key):
                had, old = _get(kind, base, p)
                has, new = _get(kind, merged, p)
                if had != has or (not p[-1].startswith("k:") and old != new):
                    conflicts.append((e, p))
    if conflicts and not force:
        raise _conflict_error(conflicts)
    if conflicts:
        taken = {p for _, p in conflicts}
        others = [(e, s - taken) for e, s in others]

    # fields this manager applied before and no longer applies are removed unless owned elsewhere
    owned_elsewhere: FieldSet = set().union(*[s for _, s in others]) if others else set()
    deleted: list[Path] = []
    for p in sorted(previous - applied_set, key=len):
        if any(p[:len(d)] == d for d in deleted):
            continue
        if any(q[:len(p)] == p for q in owned_elsewhere | applied_set):
            continue
        _delete(kind, merged, p)
        deleted.append(p)

    md = dict(meta_of(merged))
    for k in ("name", "namespace"):
        if k not in md and k in cfg_md:
            md[k] = cfg_md[k]
    merged["metadata"] = md
    return _with_managed(merged, _render([*others, (me, applied_set)]))


def _conflict_error(conflicts: list[tuple[dict[str, Any], Path]]) -> ApiStatusError:
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {_manager_label(e)}",
               "field": path_string(p)} for e, p in conflicts]
    if len(conflicts) == 1:
        e, p = conflicts[0]
        msg = f"Apply failed with 1 conflict: conflict with {_manager_label(e)}: {path_string(p)}"
    else:
        by_mgr: dict[str, list[str]] = {}
        for e, p in conflicts:
            by_mgr.setdefault(_manager_label(e), []).append(path_string(p))
        lines: list[str] = []
        for label in sorted(by_mgr):
            lines.append(f"conflicts with {label}:")
            lines.extend(f"- {x}" for x in by_mgr[label])
        msg = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiStatusError(409, "Conflict", msg, {"causes": causes})
