"""How custom objects are shown: Table rows from ``additionalPrinterColumns``, the OpenAPI v3
models of a CRD version, and the ``autoscaling/v1`` Scale of the scale subresource (pure)."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from typing import Any

from servicenet.api import errors
from servicenet.api.crd.structural import CrdVersion
from servicenet.api.tables import partial_object_metadata
from servicenet.api.timefmt import parse_rfc3339, translate_timestamp_since
from servicenet.api.wire import meta as meta_of

_META = "io.k8s.apimachinery.pkg.apis.meta.v1."

# ---------------------------------------------------------------- JSONPath (the subset CRDs use)

_TOKEN = re.compile(r"""\.([A-Za-z0-9_\-$/]+)|\[\*\]|\[(-?\d+)\]|\[['"]([^'"]+)['"]\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*"""
                    r"""(==|!=)\s*(?:"([^"]*)"|'([^']*)'|(-?\d+(?:\.\d+)?|true|false))\)\]|\.\*""")


class JsonPathError(ValueError):
    pass


def compile_path(expr: str) -> list[tuple[str, Any]]:
    """``.status.conditions[?(@.type=="Ready")].status`` → steps; raises :class:`JsonPathError`."""
    e = expr.strip()
    if e.startswith("{") and e.endswith("}"):
        e = e[1:-1]
    if e.startswith("$"):
        e = e[1:]
    steps: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(e):
        m = _TOKEN.match(e, pos)
        if not m:
            raise JsonPathError(f"unrecognized character in action: {e[pos:]!r}")
        if m.group(1) is not None:
            steps.append(("field", m.group(1)))
        elif m.group(2) is not None:
            steps.append(("index", int(m.group(2))))
        elif m.group(3) is not None:
            steps.append(("field", m.group(3)))
        elif m.group(4) is not None:
            lit: Any = m.group(6) if m.group(6) is not None else m.group(7)
            if lit is None:
                raw = m.group(8)
                lit = {"true": True, "false": False}.get(raw, None)
                if lit is None:
                    lit = float(raw) if "." in raw else int(raw)
            steps.append(("filter", (m.group(4).split("."), m.group(5), lit)))
        else:
            steps.append(("all", None))
        pos = m.end()
    return steps


def find(obj: Any, steps: list[tuple[str, Any]]) -> list[Any]:
    cur = [obj]
    for kind, arg in steps:
        nxt: list[Any] = []
        for v in cur:
            if kind == "field":
                if isinstance(v, dict) and arg in v:
                    nxt.append(v[arg])
            elif kind == "index":
                if isinstance(v, list) and -len(v) <= arg < len(v):
                    nxt.append(v[arg])
            elif kind == "all":
                if isinstance(v, list):
                    nxt.extend(v)
                elif isinstance(v, dict):
                    nxt.extend(v.values())
            elif kind == "filter" and isinstance(v, list):
                path, op, lit = arg
                for e in v:
                    x: Any = e
                    for p in path:
                        x = x.get(p) if isinstance(x, dict) else None
                    if (x == lit) == (op == "=="):
                        nxt.append(e)
        cur = nxt
    return cur


def selectable_values(paths: tuple[str, ...], obj: Any) -> dict[str, str]:
    """``selectableFields`` of one object as field-selector labels (``spec.color`` → its value)."""
    out: dict[str, str] = {}
    for p in paths:
        try:
            found = find(obj, compile_path(p))
        except JsonPathError:
            continue
        v = found[0] if found else None
        label = p.lstrip(".")
        if isinstance(v, bool):
            out[label] = "true" if v else "false"
        elif isinstance(v, int | float | str):
            out[label] = str(v)
        else:
            out[label] = ""
    return out


# ---------------------------------------------------------------- tables


def _name_column() -> dict[str, Any]:
    return {"name": "Name", "type": "string", "format": "name", "priority": 0,
            "description": "Name must be unique within a namespace. Is required when creating resources, although "
                           "some resources may allow a client to request the generation of an appropriate name "
                           "automatically. Name is primarily intended for creation idempotence and configuration "
                           "definition. Cannot be updated. More info: "
                           "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"}


_AGE = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


def columns(cv: CrdVersion) -> list[dict[str, Any]]:
    return list(cv.printer_columns) if cv.printer_columns else [_AGE]


def _cell(col: dict[str, Any], steps: list[tuple[str, Any]] | None, obj: Any, now: datetime) -> Any:
    if steps is None:
        return None
    found = find(obj, steps)
    if not found:
        return None
    v = found[0]
    t = col.get("type")
    if t == "string":
        if isinstance(v, str):
            return v
        if v is None:
            return None
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return str(v)
        return json.dumps(v, separators=(",", ":"))
    if t == "integer":
        if isinstance(v, bool):
            return None
        if isinstance(v, int):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return None
    if t == "number":
        return v if isinstance(v, int | float) and not isinstance(v, bool) else None
    if t == "boolean":
        return v if isinstance(v, bool) else None
    if t == "date":
        if not isinstance(v, str):
            return None
        if parse_rfc3339(v) is None:
            return "<invalid>"
        return translate_timestamp_since(v, now)
    return None


def to_table(cv: CrdVersion, objs: list[dict[str, Any]], *, now: datetime, include_object: str | None,
             resource_version: str, continue_token: str | None) -> dict[str, Any]:
    mode = include_object or "Metadata"
    if mode not in ("None", "Metadata", "Object"):
        raise errors.bad_request(f'includeObject: Unsupported value: "{mode}": supported values: "None", '
                                 '"Metadata", "Object"')
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    cols = columns(cv)
    compiled: list[list[tuple[str, Any]] | None] = []
    for c in cols:
        try:
            compiled.append(compile_path(str(c.get("jsonPath", ""))))
        except JsonPathError:
            compiled.append(None)
    defs = [_name_column()] + [{"name": c.get("name", ""), "type": c.get("type", "string"),
                                "format": c.get("format", ""), "description": c.get("description", ""),
                                "priority": int(c.get("priority") or 0)} for c in cols]
    rows = []
    for o in objs:
        cells = [meta_of(o).get("name", "")]
        cells += [_cell(c, st, o, now) for c, st in zip(cols, compiled, strict=True)]
        row: dict[str, Any] = {"cells": cells}
        if mode == "Metadata":
            row["object"] = partial_object_metadata(o)
        elif mode == "Object":
            row["object"] = o
        else:
            row["object"] = None
        rows.append(row)
    meta: dict[str, Any] = {"resourceVersion": resource_version} if resource_version else {}
    if continue_token:
        meta["continue"] = continue_token
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": defs,
            "rows": rows}


# ---------------------------------------------------------------- scale


def _get_path(obj: Any, path: str) -> Any:
    cur = obj
    for p in path.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = path.strip(".").split(".")
    cur = obj
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = cur[p] = {}
        cur = nxt
    cur[parts[-1]] = value


def scale_of(cv: CrdVersion, obj: dict[str, Any]) -> dict[str, Any]:
    sc = cv.scale or {}
    md = meta_of(obj)
    spec_r = _get_path(obj, sc.get("specReplicasPath", ".spec.replicas"))
    status_r = _get_path(obj, sc.get("statusReplicasPath", ".status.replicas"))
    out: dict[str, Any] = {
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in md},
        "spec": {"replicas": spec_r if isinstance(spec_r, int) else 0},
        "status": {"replicas": status_r if isinstance(status_r, int) else 0},
    }
    if sc.get("labelSelectorPath"):
        sel = _get_path(obj, sc["labelSelectorPath"])
        if isinstance(sel, str):
            out["status"]["selector"] = sel
    return out


def set_replicas(cv: CrdVersion, obj: dict[str, Any], replicas: int) -> None:
    _set_path(obj, (cv.scale or {}).get("specReplicasPath", ".spec.replicas"), replicas)


# ---------------------------------------------------------------- OpenAPI


def model_name(group: str, version: str, kind: str) -> str:
    """``gateway.networking.k8s.io``/v1/Gateway → ``io.k8s.networking.gateway.v1.Gateway``."""
    return ".".join(reversed(group.split("."))) + f".{version}.{kind}"


def models(cv: CrdVersion) -> dict[str, Any]:
    """The object and list models of one served version (``components.schemas`` entries)."""
    r = cv.info
    s = copy.deepcopy(cv.schema)
    s.setdefault("type", "object")
    p = s.setdefault("properties", {})
    p["apiVersion"] = {"type": "string", "description": "APIVersion defines the versioned schema of this "
                       "representation of an object."}
    p["kind"] = {"type": "string", "description": "Kind is a string value representing the REST resource this "
                 "object represents."}
    p["metadata"] = {"$ref": "#/components/schemas/" + _META + "ObjectMeta",
                     "description": "Standard object's metadata."}
    s["x-kubernetes-group-version-kind"] = [{"group": r.group, "kind": r.kind, "version": r.version}]
    name = model_name(r.group, r.version, r.kind)
    lst = {"type": "object", "required": ["items"], "description": f"{r.list_kind} is a list of {r.kind}",
           "properties": {
               "apiVersion": p["apiVersion"], "kind": p["kind"],
               "items": {"type": "array", "description": f"List of {r.plural}.",
                         "items": {"$ref": "#/components/schemas/" + name}},
               "metadata": {"$ref": "#/components/schemas/" + _META + "ListMeta",
                            "description": "Standard list metadata."}},
           "x-kubernetes-group-version-kind": [{"group": r.group, "kind": r.list_kind, "version": r.version}]}
    return {name: s, model_name(r.group, r.version, r.list_kind): lst}


def now_utc() -> datetime:
    return datetime.now(UTC)
