"""OpenAPI v3 documents: the ``/openapi/v3`` index and one document per group/version.

Built from ``schema.json`` (see ``schema.py``) and the resource registry. Every POST/PUT/PATCH
operation lists the ``fieldValidation`` query parameter, which is what makes kubectl send
``fieldValidation=Strict`` instead of validating client-side against ``/openapi/v2``.

PATCH request bodies deliberately do **not** list ``application/strategic-merge-patch+json``:
the schemas carry no ``x-kubernetes-patch-merge-key``/``-strategy`` extensions, so kubectl must
not compute strategic patches from them (it falls back to its compiled-in types instead).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

from servicenet.api import schema
from servicenet.api.resources import ResourceInfo, all_resources, group_versions

OPENAPI_VERSION = "3.0.0"
INFO = {"title": "Kubernetes", "version": "v1.32.0"}  # the API level servicenet speaks
_PREFIX = "#/components/schemas/"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."
_GROUP_TAG = {"": "core", "apps": "apps", "batch": "batch", "coordination.k8s.io": "coordination",
              "discovery.k8s.io": "discovery",
              "networking.k8s.io": "networking", "admissionregistration.k8s.io": "admissionregistration",
              "apiextensions.k8s.io": "apiextensions"}

_EXTRA_SCHEMAS: dict[str, Any] = {
    _META + "Patch": {"type": "object",
                      "description": "The body of a PATCH request; its format is given by the Content-Type."},
}


def gv_path(group: str, version: str) -> str:
    """``api/v1`` or ``apis/<group>/<version>`` (the index key)."""
    return f"apis/{group}/{version}" if group else f"api/{version}"


# ---------------------------------------------------------------- parameters


def _q(name: str, typ: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "description": description, "schema": {"type": typ, "uniqueItems": True}}


_PRETTY = _q("pretty", "string", "If 'true', the output is pretty printed.")
_NAME = {"name": "name", "in": "path", "description": "name of the object", "required": True,
         "schema": {"type": "string", "uniqueItems": True}}
_NAMESPACE = {"name": "namespace", "in": "path", "description": "object name and auth scope, such as for teams "
              "and projects", "required": True, "schema": {"type": "string", "uniqueItems": True}}
_DRY_RUN = _q("dryRun", "string", "When present, modifications are not persisted. Valid value: All.")
_FIELD_MANAGER = _q("fieldManager", "string", "Name of the actor making the change (used by field management).")
_FIELD_VALIDATION = _q("fieldValidation", "string",
                       "What to do with unknown or duplicate fields in the request body: Ignore, Warn (default) "
                       "or Strict (reject the request).")
_FORCE = _q("force", "boolean", "Server-side apply: take ownership of conflicting fields.")
_LIST = [
    _q("allowWatchBookmarks", "boolean", "Ask for BOOKMARK events on watches."),
    _q("continue", "string", "Continuation token from a previous paginated list."),
    _q("fieldSelector", "string", "Restrict the result by fields (=, ==, != on supported fields)."),
    _q("labelSelector", "string", "Restrict the result by labels."),
    _q("limit", "integer", "Maximum number of items to return; more are reachable through `continue`."),
    _q("resourceVersion", "string", "Resource version constraint for the read or the start of a watch."),
    _q("resourceVersionMatch", "string", "How resourceVersion is applied to a list: Exact or NotOlderThan."),
    _q("sendInitialEvents", "boolean", "Watch: start with synthetic events for the current state."),
    _q("timeoutSeconds", "integer", "Limit on the duration of the list/watch call."),
    _q("watch", "boolean", "Stream add, update and delete notifications instead of returning a list."),
]
_DELETE = [
    _DRY_RUN,
    _q("gracePeriodSeconds", "integer", "Seconds before the object is deleted; 0 deletes immediately."),
    _q("orphanDependents", "boolean", "Deprecated; use propagationPolicy."),
    _q("propagationPolicy", "string", "Garbage collection of dependents: Orphan, Background or Foreground."),
]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _PREFIX + name}


def _body(name: str, content_types: tuple[str, ...] = ("*/*",)) -> dict[str, Any]:
    return {"content": {ct: {"schema": _ref(name)} for ct in content_types}, "required": True}


def _responses(name: str, codes: tuple[str, ...] = ("200",)) -> dict[str, Any]:
    text = {"200": "OK", "201": "Created", "202": "Accepted"}
    out: dict[str, Any] = {}
    for c in codes:
        out[c] = {"description": text[c], "content": {
            ct: {"schema": _ref(name)} for ct in ("application/json", "application/yaml",
                                                  "application/vnd.kubernetes.protobuf")}}
    out["401"] = {"description": "Unauthorized"}
    return out


def _op_id(verb: str, r: ResourceInfo, namespaced: bool, suffix: str = "", all_ns: bool = False,
           collection: bool = False) -> str:
    """Upstream-style operationId: ``replaceCoreV1NamespacedServiceStatus``, ``deleteAppsV1CollectionNamespacedDeployment``."""
    tag = _GROUP_TAG.get(r.group, r.group).capitalize() + r.version.capitalize()
    if collection:
        tag += "Collection"
    scope = "Namespaced" if namespaced else ""
    if all_ns:
        return f"{verb}{tag}{r.kind}ForAllNamespaces"
    return f"{verb}{tag}{scope}{r.kind}{suffix}"


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "version": version, "kind": kind}


def _op(verb: str, action: str, r: ResourceInfo, op_id: str, params: list[dict[str, Any]],
        responses: dict[str, Any], body: dict[str, Any] | None = None,
        gvk: dict[str, str] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"tags": [_GROUP_TAG.get(r.group, r.group) + "_" + r.version],
                          "description": f"{verb} {r.kind}", "operationId": op_id}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    op["responses"] = responses
    op["x-kubernetes-action"] = action
    op["x-kubernetes-group-version-kind"] = gvk or _gvk(r.group, r.version, r.kind)
    return op


def _patch_body() -> dict[str, Any]:
    return _body(_META + "Patch", ("application/json-patch+json", "application/merge-patch+json",
                                   "application/apply-patch+yaml"))


def _write_ops(r: ResourceInfo, model: str, suffix: str, gvk: dict[str, str] | None = None) -> dict[str, Any]:
    """get/put/patch on one object (or one subresource of it)."""
    ns = r.namespaced
    return {
        "get": _op("read", "get", r, _op_id("read", r, ns, suffix), [], _responses(model), gvk=gvk),
        "put": _op("replace", "put", r, _op_id("replace", r, ns, suffix),
                   [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION], _responses(model, ("200", "201")),
                   _body(model), gvk=gvk),
        "patch": _op("patch", "patch", r, _op_id("patch", r, ns, suffix),
                     [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION, _FORCE], _responses(model, ("200", "201")),
                     _patch_body(), gvk=gvk),
    }


def paths_for(r: ResourceInfo, model: str, list_model: str) -> dict[str, Any]:
    """The paths of one resource whose models are named ``model``/``list_model`` (custom resources)."""
    return _paths_for(r, model, list_model)


def _paths_for(r: ResourceInfo, model: str | None = None, list_model: str | None = None) -> dict[str, Any]:
    base = f"/{gv_path(r.group, r.version)}"
    coll = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
    scope_params = [_NAMESPACE, _PRETTY] if r.namespaced else [_PRETTY]
    model = model or schema.definition_name(r.api_version, r.kind) or ""
    list_model = list_model or schema.definition_name(r.api_version, r.list_kind) or ""
    status = _META + "Status"
    ns = r.namespaced
    paths: dict[str, Any] = {}
    c: dict[str, Any] = {
        "get": _op("list", "list", r, _op_id("list", r, ns), list(_LIST), _responses(list_model)),
        "post": _op("create", "post", r, _op_id("create", r, ns),
                    [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION], _responses(model, ("200", "201", "202")),
                    _body(model)),
    }
    if "deletecollection" in r.verbs:
        c["delete"] = _op("delete collection of", "deletecollection", r, _op_id("delete", r, ns, collection=True),
                          [*_LIST, *_DELETE], _responses(status), _body(_META + "DeleteOptions"))
    c["parameters"] = scope_params
    paths[coll] = c
    item = _write_ops(r, model, "")
    item["delete"] = _op("delete", "delete", r, _op_id("delete", r, ns), list(_DELETE),
                         _responses(model, ("200", "202")), _body(_META + "DeleteOptions"))
    item["parameters"] = [_NAME, *scope_params]
    paths[coll + "/{name}"] = item
    for s in r.subresource_info:
        if s.name == "status":
            p = _write_ops(r, model, "Status")
        elif s.name == "scale":
            scale = schema.definition_name("autoscaling/v1", "Scale") or ""
            p = _write_ops(r, scale, "Scale", gvk=_gvk("autoscaling", "v1", "Scale"))
        elif s.name == "log":
            p = {"get": _op("read log of", "get", r, _op_id("read", r, ns, "Log"), [
                _q("container", "string", "The container to stream logs of."),
                _q("follow", "boolean", "Follow the log stream."),
                _q("previous", "boolean", "Logs of the previous container instance."),
                _q("sinceSeconds", "integer", "Only logs newer than this many seconds."),
                _q("tailLines", "integer", "Only this many lines from the end."),
                _q("timestamps", "boolean", "Prefix every line with its timestamp.")],
                {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
                 "401": {"description": "Unauthorized"}})}
        else:
            continue
        p["parameters"] = [_NAME, *scope_params]
        paths[f"{coll}/{{name}}/{s.name}"] = p
    if r.namespaced:
        paths[f"{base}/{r.plural}"] = {
            "get": _op("list", "list", r, _op_id("list", r, ns, all_ns=True), list(_LIST), _responses(list_model)),
            "parameters": [_PRETTY],
        }
    return paths


# ---------------------------------------------------------------- schemas


def _convert(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            out[k] = _PREFIX + v if k == "$ref" and isinstance(v, str) and not v.startswith("#") else _convert(v)
        return out
    if isinstance(node, list):
        return [_convert(x) for x in node]
    return node


def _refs(node: Any, acc: set[str]) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                acc.add(v.removeprefix(_PREFIX))
            else:
                _refs(v, acc)
    elif isinstance(node, list):
        for x in node:
            _refs(x, acc)


def _closure(roots: set[str]) -> dict[str, Any]:
    defs = {**schema.definitions(), **_EXTRA_SCHEMAS}
    todo, seen = list(roots), set()
    while todo:
        n = todo.pop()
        if n in seen or n not in defs:
            continue
        seen.add(n)
        acc: set[str] = set()
        _refs(defs[n], acc)
        todo += list(acc - seen)
    return {n: _convert(defs[n]) for n in sorted(seen)}


@lru_cache(maxsize=16)
def _document_cached(group: str, version: str) -> str:
    paths: dict[str, Any] = {}
    for r in all_resources():
        if (r.group, r.version) == (group, version):
            paths.update(_paths_for(r))
    if not paths:
        return ""
    roots: set[str] = set()
    _refs(paths, roots)
    roots |= {_META + "Status", _META + "WatchEvent"}
    doc = {"openapi": OPENAPI_VERSION, "info": INFO, "paths": paths,
           "components": {"schemas": _closure(roots)}}
    return json.dumps(doc, separators=(",", ":"), sort_keys=False)


def document(group: str, version: str) -> dict[str, Any] | None:
    """The OpenAPI v3 document of one group/version (``GET /openapi/v3/api/v1``); None if not served."""
    text = _document_cached(group, version)
    return json.loads(text) if text else None


def document_bytes(group: str, version: str) -> bytes | None:
    """The same document, serialised once (serve it with ``Content-Type: application/json``)."""
    text = _document_cached(group, version)
    return text.encode() if text else None


def document_hash(group: str, version: str) -> str:
    """Stable content hash used in the index's ``?hash=`` and as ETag (upper-case SHA-512 hex)."""
    data = document_bytes(group, version) or b""
    return hashlib.sha512(data).hexdigest().upper()


def index() -> dict[str, Any]:
    """``GET /openapi/v3``."""
    paths = {}
    for g, v in group_versions():
        key = gv_path(g, v)
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={document_hash(g, v)}"}
    return {"paths": paths}


def lookup(path: str) -> tuple[str, str] | None:
    """Map a request path (``/openapi/v3/apis/apps/v1``) to its (group, version), or None."""
    p = path.removeprefix("/openapi/v3/").strip("/")
    for g, v in group_versions():
        if p == gv_path(g, v):
            return g, v
    return None


def v3_index() -> dict[str, Any]:
    """Alias of :func:`index` (the API server's name for it)."""
    return index()


def v3_document(path: str) -> bytes | None:
    """The serialised document for an index key (``api/v1``, ``apis/apps/v1``); None if unknown."""
    gv = lookup(path.split("?", 1)[0])
    return document_bytes(*gv) if gv else None
