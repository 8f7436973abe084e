"""HTTP handlers for the resource endpoints: REST verbs, subresources, LIST pagination, WATCH."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from typing import Any

import orjson
import yaml
from aiohttp import web

from servicenet.api import apply, errors, shape_cache
from servicenet.api import patch as patchmod
from servicenet.api.crd import served
from servicenet.api.errors import ApiStatusError
from servicenet.api.resources import ResourceInfo, by_plural
from servicenet.api.selectors import label_selector_from_dict, selector_to_string
from servicenet.api.views import meta as meta_of
from servicenet.apiserver import kubelet_proxy, negotiation
from servicenet.apiserver.crds import custom_scale
from servicenet.apiserver.registry import (
    UNCONDITIONAL_RETRIES,
    Registry,
    WriteOptions,
    key_for,
    now_rfc3339,
    prefix_for,
)
from servicenet.apiserver.responses import (
    TRUE,
    _obj,
    as_requested,
    collector_paused,
    json_response,
    record_response,
    render_table,
    send_list,
    view_obj,
    wants_table,
)
from servicenet.apiserver.table_rows import TableRows
from servicenet.apiserver.watchfilter import Selection
from servicenet.apiserver.watchstream import serve_watch
from servicenet.store import KeyNotFound, Record, RevisionConflict, Store


class Target:
    """A parsed resource URL."""

    __slots__ = ("info", "namespace", "name", "subresource")

    def __init__(self, info: ResourceInfo, namespace: str | None, name: str | None, subresource: str | None):
        self.info = info
        self.namespace = namespace
        self.name = name
        self.subresource = subresource


def parse_target(group: str, version: str, rest: list[str]) -> Target | None:
    if not rest:
        return None
    if rest[0] == "namespaces" and len(rest) >= 3:
        inner = by_plural(group, version, rest[2])
        if inner is not None and inner.namespaced:
            ns = rest[1]
            name = rest[3] if len(rest) > 3 else None
            sub = "/".join(rest[4:]) or None
            return Target(inner, ns, name, sub)
        ns_info = by_plural(group, version, "namespaces")
        if ns_info is None or rest[2] not in ns_info.subresources:
            return None  # a kind this server does not serve (upstream: 404, "could not find the requested resource")
    info = by_plural(group, version, rest[0])
    if info is None:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = "/".join(rest[2:]) or None
    return Target(info, None, name, sub)


class ResourceHandlers:
    def __init__(self, registry: Registry, store: Store) -> None:
        self.registry = registry
        self.store = store
        self.table_rows = TableRows()  # Table rows kept between LIST requests

    # -- parsing -------------------------------------------------------------------------------------
    async def read_body(self, request: web.Request) -> dict[str, Any]:
        return negotiation.decode_body(request, await negotiation.read_raw(request))

    def write_options(self, request: web.Request) -> WriteOptions:
        if not request.query_string:  # no parameters: the defaults, without parsing a query
            return WriteOptions(field_manager=_manager_from_ua(request), field_validation="Warn",
                                warnings=negotiation.body_warnings(request))
        q = request.query
        fv = q.get("fieldValidation") or "Warn"
        if fv not in ("Strict", "Warn", "Ignore"):
            raise errors.bad_request(
                f"fieldValidation parameter unsupported: {fv!r}. Supported values: Ignore, Warn, Strict")
        dry = q.getall("dryRun", [])
        if any(d != "All" for d in dry):
            raise errors.bad_request(f"Invalid dry run parameter: {dry}")
        return WriteOptions(field_manager=q.get("fieldManager") or _manager_from_ua(request),
                            field_validation=fv, dry_run=bool(dry), warnings=negotiation.body_warnings(request))

    def check_unknown_fields(self, info: ResourceInfo, obj: dict[str, Any], opts: WriteOptions) -> None:
        if opts.field_validation == "Ignore":
            return
        unknown = shape_cache.unknown_fields(info.api_version, info.kind, obj)
        if not unknown:
            return
        if opts.field_validation == "Strict":
            raise errors.bad_request(
                f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: '
                "strict decoding error: " + ", ".join(f'unknown field "{u.lstrip(".")}"' for u in unknown))
        opts.warnings.extend(f'unknown field "{u.lstrip(".")}"' for u in unknown)

    @staticmethod
    def warning_headers(opts: WriteOptions) -> dict[str, str]:
        if not opts.warnings:
            return {}
        # aiohttp multidict would allow several; one combined header keeps it simple for clients.
        return {"Warning": ", ".join('299 - "' + w.replace('"', '\\"') + '"' for w in opts.warnings)}

    def check_kind(self, info: ResourceInfo, obj: dict[str, Any], target: Target) -> None:
        kind = obj.get("kind")
        av = obj.get("apiVersion")
        if kind and kind != info.kind or av and av != info.api_version:
            raise errors.bad_request(
                f"the API version in the data ({av}) does not match the expected API version ({info.api_version})"
                if av != info.api_version else
                f"the kind in the data ({kind}) does not match the expected kind ({info.kind})")
        ns = meta_of(obj).get("namespace")
        if info.namespaced and ns and target.namespace and ns != target.namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request")

    # -- dispatch ------------------------------------------------------------------------------------
    async def handle(self, request: web.Request, target: Target) -> web.StreamResponse:
        m = request.method
        t = target
        if t.info.namespaced and t.namespace is None and t.name is not None:
            raise errors.not_found(t.info.plural, t.info.group, t.name)
        if t.subresource:
            return await self.handle_subresource(request, t)
        if t.name is None:
            if m == "GET":
                if request.query.get("watch") in TRUE:
                    return await self.watch(request, t)
                return await self.list(request, t)
            if m == "POST":
                return await self.create(request, t)
            if m == "DELETE":
                return await self.delete_collection(request, t)
            raise errors.method_not_allowed("the server does not allow this method on the requested resource")
        if m == "GET":
            rec = self.registry.get_record(t.info, t.namespace, t.name)
            if wants_table(request):
                return json_response(render_table(t.info, [as_requested(t.info, rec).obj()], request,
                                                  str(rec.mod_revision)))
            return record_response(as_requested(t.info, rec))
        if m == "PUT":
            return await self.update(request, t)
        if m == "PATCH":
            return await self.patch(request, t)
        if m == "DELETE":
            return await self.delete(request, t)
        raise errors.method_not_allowed("the server does not allow this method on the requested resource")

    # -- verbs ---------------------------------------------------------------------------------------
    async def create(self, request: web.Request, t: Target) -> web.Response:
        # a pod's spec may come shared from the protobuf decoder: the registry's defaulting
        # replaces it or takes it as its own before anything changes it
        obj = negotiation.decode_body(request, await negotiation.read_raw(request),
                                      share_pod_spec=t.info.plural == "pods" and not t.info.group)
        self.check_kind(t.info, obj, t)
        opts = self.write_options(request)
        if not negotiation.fields_checked(request):
            self.check_unknown_fields(t.info, obj, opts)
        rec = await self.registry.create(t.info, t.namespace, obj, opts)
        shown = as_requested(t.info, rec)
        headers = self.warning_headers(opts)
        if shown is rec:
            answer = negotiation.created_answer(request, obj, rec, 201, headers)
            if answer is not None:
                return answer
        return record_response(shown, 201, headers)

    async def update(self, request: web.Request, t: Target, subresource: str | None = None) -> web.Response:
        assert t.name is not None
        obj = await self.read_body(request)
        self.check_kind(t.info, obj, t)
        opts = self.write_options(request)
        if not negotiation.fields_checked(request):
            self.check_unknown_fields(t.info, obj, opts)
        key = key_for(t.info, t.namespace, t.name)
        if self.store.latest(key) is None and subresource is None:
            # PUT on a missing object creates it for kinds that allow it (upstream AllowCreateOnUpdate);
            # our built-ins do not, except through apply.
            raise errors.not_found(t.info.plural, t.info.group, t.name)
        rec = await self.registry.update(t.info, t.namespace, t.name, obj, opts, subresource=subresource)
        return record_response(as_requested(t.info, rec), 200, self.warning_headers(opts))

    async def patch(self, request: web.Request, t: Target, subresource: str | None = None) -> web.Response:
        assert t.name is not None
        ctype = (request.content_type or "").lower()
        raw = await negotiation.read_raw(request)
        opts = self.write_options(request)
        if ctype == "application/apply-patch+yaml":
            manager = request.query.get("fieldManager")
            if not manager:
                raise errors.bad_request(
                    "PATCH, application/apply-patch+yaml requires the fieldManager parameter to be set")
            force = request.query.get("force") in TRUE
            try:
                applied = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise errors.bad_request(f"error decoding YAML: {exc}") from None
            if not isinstance(applied, dict):
                raise errors.bad_request("the apply patch must be an object")
            self.check_kind(t.info, applied, t)
            self.check_unknown_fields(t.info, applied, opts)
            for attempt in range(UNCONDITIONAL_RETRIES):
                if attempt:
                    await asyncio.sleep(0)
                rec = self.store.latest(key_for(t.info, t.namespace, t.name))
                live = rec.obj() if rec is not None else None
                merged = apply.server_side_apply(t.info, live, applied, manager, force, now_rfc3339())
                if rec is None:
                    if subresource:
                        raise errors.not_found(t.info.plural, t.info.group, t.name)
                    merged.setdefault("metadata", {})["name"] = t.name
                    created = await self.registry.create(t.info, t.namespace, merged,
                                                         WriteOptions(None, opts.field_validation, opts.dry_run))
                    return record_response(as_requested(t.info, created), 201, self.warning_headers(opts))
                try:
                    out = await self.registry.update(
                        t.info, t.namespace, t.name, merged, WriteOptions(None, opts.field_validation, opts.dry_run),
                        subresource=subresource, expected_rv=rec.mod_revision, old_rec=rec)
                    return record_response(as_requested(t.info, out), 200, self.warning_headers(opts))
                except ApiStatusError as exc:
                    if exc.reason == "Conflict" and "modified" in exc.message:
                        continue
                    raise
            raise errors.conflict(t.info.plural, t.info.group, t.name)
        if ctype not in ("application/json-patch+json", "application/merge-patch+json",
                         "application/strategic-merge-patch+json"):
            raise errors.unsupported_media_type(ctype or "<none>")
        for attempt in range(UNCONDITIONAL_RETRIES):
            if attempt:
                await asyncio.sleep(0)
            rec = self.registry.get_latest(t.info, t.namespace, t.name)
            live = rec.obj()
            # without the live resourceVersion, one left in the result was named by the patch: only
            # then is a conflict final; otherwise the patch is re-applied to the newer object
            meta_of(live).pop("resourceVersion", None)
            patched = patchmod.apply_patch(t.info, live, raw, ctype)
            if not isinstance(patched, dict):
                raise errors.bad_request("the patch produced something that is not an object")
            prv = meta_of(patched).get("resourceVersion")
            expected = rec.mod_revision
            if prv and prv != str(rec.mod_revision):
                # the patch itself named a resourceVersion: that is a precondition
                raise errors.conflict(t.info.plural, t.info.group, t.name)
            self.check_unknown_fields(t.info, patched, opts)
            try:
                out = await self.registry.update(t.info, t.namespace, t.name, patched, opts,
                                                 subresource=subresource, expected_rv=expected, old_rec=rec)
                return record_response(as_requested(t.info, out), 200, self.warning_headers(opts))
            except ApiStatusError as exc:
                if exc.reason == "Conflict" and not prv and "modified" in exc.message:
                    continue
                raise
        raise errors.conflict(t.info.plural, t.info.group, t.name)

    async def _delete_options(self, request: web.Request) -> dict[str, Any]:
        raw = await negotiation.read_raw(request)
        opts: dict[str, Any] = negotiation.delete_options(request, raw) if raw else {}
        q = request.query
        if "gracePeriodSeconds" in q:
            opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
        if "propagationPolicy" in q:
            opts["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            opts["orphanDependents"] = q["orphanDependents"] in TRUE
        return opts

    async def delete(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        opts = await self._delete_options(request)
        dry = bool(request.query.getall("dryRun", [])) or "All" in (opts.get("dryRun") or [])
        out, removed = await self.registry.delete(t.info, t.namespace, t.name, opts, dry_run=dry)
        obj = _obj(out)
        if removed and t.info.plural not in ("pods", "services", "namespaces"):
            md = meta_of(obj)
            return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                  "details": {"name": md.get("name"), **({"group": t.info.group} if t.info.group
                                                                         else {}),
                                              "kind": t.info.plural, "uid": md.get("uid")}})
        return record_response(out, 200 if removed or t.info.plural in ("pods", "namespaces") else 202)

    async def delete_collection(self, request: web.Request, t: Target) -> web.Response:
        opts = await self._delete_options(request)
        objs = self.filtered(request, t)[0]
        for o in objs:
            try:
                await self.registry.delete(t.info, t.namespace or o["metadata"].get("namespace"),
                                           o["metadata"]["name"], opts)
            except ApiStatusError as exc:
                if exc.code != 404:
                    raise
        return json_response({"kind": t.info.list_kind or t.info.kind + "List", "apiVersion": t.info.api_version,
                              "metadata": {"resourceVersion": str(self.store.revision)}, "items": objs})

    # -- list ----------------------------------------------------------------------------------------
    def selection(self, request: web.Request, info: ResourceInfo) -> Selection:
        return Selection.parse(request.query.get("labelSelector") or "", request.query.get("fieldSelector") or "",
                               info.kind)

    def filtered(self, request: web.Request, t: Target) -> tuple[list[dict[str, Any]], int]:
        sel = self.selection(request, t.info)
        recs, rev, _ = self.registry.list_records(t.info, t.namespace)
        return [o for o in (r.obj() for r in recs) if sel.matches(o)], rev

    async def list(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        info = t.info
        conv = served.version(info)
        sel = self.selection(request, info)
        limit = int(q["limit"]) if q.get("limit", "").isdigit() and int(q["limit"]) > 0 else None
        start_after: str | None = None
        revision: int | None = None
        if q.get("continue"):
            try:
                tok = orjson.loads(base64.urlsafe_b64decode(q["continue"] + "=="))
                revision = int(tok["rv"])
                start_after = str(tok["start"])
            except Exception:
                raise errors.bad_request("continue key is not valid: illegal base64 data") from None
        elif q.get("resourceVersion") not in (None, "", "0") and q.get("resourceVersionMatch") == "Exact":
            revision = int(q["resourceVersion"])
        selecting = sel.active
        items: list[bytes] = []
        objs: list[dict[str, Any]] = []
        table = wants_table(request)
        cached_rows = table and not selecting and (q.get("includeObject") or "Metadata") == "Metadata" \
            and conv is None  # custom resources: their CRD's printer columns (render_table)
        trecs: list[Record] = []
        more = False
        last_key: str | None = start_after
        served_rev = 0
        cursor = start_after
        with collector_paused(selecting or table):  # decoding: many short-lived, acyclic objects
            while True:
                batch = None if limit is None else max(limit - len(items), 1) * (4 if selecting else 1)
                recs, served_rev, more = self.registry.list_records(info, t.namespace, limit=batch,
                                                                    start_after=cursor, revision=revision)
                if revision is None:
                    revision = served_rev
                for r in recs:
                    cursor = r.key
                    if conv is not None:
                        r = as_requested(info, r)  # a custom resource as its version shows it
                    if cached_rows:  # rendered from the row cache: no decoding here
                        trecs.append(r)
                    elif selecting or table:
                        o = view_obj(r)
                        if selecting and not sel.matches(o):
                            continue
                        if table:
                            objs.append(o)
                    items.append(r.value)
                    last_key = r.key
                    if limit is not None and len(items) >= limit:
                        break
                if limit is None or len(items) >= limit or not more:
                    if limit is not None and len(items) >= limit and cursor != last_key:
                        more = True
                    break
            meta: dict[str, Any] = {"resourceVersion": str(served_rev)}
            if limit is not None and more and last_key is not None:
                tok = orjson.dumps({"v": "meta.k8s.io/v1", "rv": served_rev, "start": last_key})
                meta["continue"] = base64.urlsafe_b64encode(tok).decode().rstrip("=")
                if not selecting:
                    meta["remainingItemCount"] = self.store.count(prefix_for(info, t.namespace), start_after=last_key)
            if cached_rows:
                return json_response(self.table_rows.table_json(
                    info.kind, trecs, now=dt.datetime.now(dt.UTC), resource_version=meta["resourceVersion"],
                    continue_token=meta.get("continue")))
            if table:
                resp = json_response(render_table(info, objs, request, meta["resourceVersion"], meta.get("continue")))
                objs.clear()  # free the decoded objects before the collector runs again
                return resp
        head = orjson.dumps({"kind": info.list_kind or info.kind + "List", "apiVersion": info.api_version,
                             "metadata": meta})
        return await send_list(request, head[:-1] + b',"items":[', items, b"]}")

    # -- watch ---------------------------------------------------------------------------------------
    async def watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        return await serve_watch(self.store, request, t.info, t.namespace, self.selection(request, t.info))

    # -- subresources --------------------------------------------------------------------------------
    async def handle_subresource(self, request: web.Request, t: Target) -> web.StreamResponse:
        sub = t.subresource or ""
        info = t.info
        m = request.method
        assert t.name is not None
        if sub not in info.subresources:
            raise errors.unserved()
        if sub == "status":
            if m == "GET":
                return record_response(as_requested(info, self.registry.get_record(info, t.namespace, t.name)))
            if m == "PUT":
                return await self.update(request, t, subresource="status")
            if m == "PATCH":
                return await self.patch(request, t, subresource="status")
        elif sub == "scale":
            custom = await custom_scale(self.registry, request, info, t.namespace, t.name, self.read_body)
            return custom if custom is not None else await self.scale(request, t)
        elif sub == "binding" and m == "POST":
            return await self.bind(request, t)
        elif sub == "finalize" and m == "PUT":
            return await self.finalize(request, t)
        elif sub in ("log", "exec", "attach", "portforward", "proxy"):
            return await kubelet_proxy.node_proxy(self.registry, self.store, request, info, t.namespace, t.name, sub)
        raise errors.method_not_allowed("the server does not allow this method on the requested resource")

    def _scale_of(self, info: ResourceInfo, obj: dict[str, Any]) -> dict[str, Any]:
        md = obj["metadata"]
        sel = (obj.get("spec") or {}).get("selector") or {}
        if info.kind == "ReplicationController":  # a plain label map
            sel = {"matchLabels": sel}
        try:
            sel_str = selector_to_string(label_selector_from_dict(sel))
        except Exception:
            sel_str = ",".join(f"{k}={v}" for k, v in (sel.get("matchLabels") or {}).items())
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": md["name"], "namespace": md.get("namespace"), "uid": md.get("uid"),
                             "resourceVersion": md.get("resourceVersion"),
                             "creationTimestamp": md.get("creationTimestamp")},
                "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0), "selector": sel_str}}

    async def scale(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        if request.method == "GET":
            return json_response(self._scale_of(t.info, self.registry.get_record(t.info, t.namespace, t.name).obj()))
        if request.method not in ("PUT", "PATCH"):
            raise errors.method_not_allowed("the server does not allow this method on the requested resource")
        raw = await request.read()
        ctype = (request.content_type or "").lower()
        for attempt in range(UNCONDITIONAL_RETRIES):
            if attempt:
                await asyncio.sleep(0)
            rec = self.registry.get_latest(t.info, t.namespace, t.name)
            obj = rec.obj()
            cur = self._scale_of(t.info, obj)
            if request.method == "PUT":
                try:
                    body = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise errors.bad_request("the object provided is unrecognized (must be of type JSON)") from None
            elif ctype == "application/apply-patch+yaml":
                body = {**cur, **(yaml.safe_load(raw) or {})}
            else:
                body = patchmod.apply_patch(None, cur, raw, ctype)
            if not isinstance(body, dict):
                raise errors.bad_request("the object provided is unrecognized (must be of type JSON object)")
            replicas = (body.get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                raise errors.invalid_object("Scale", "autoscaling", t.name, [errors.invalid(
                    "spec.replicas", replicas, "must be greater than or equal to 0")])
            brv = meta_of(body).get("resourceVersion") if request.method == "PUT" else None
            if brv and brv != str(rec.mod_revision):
                raise errors.conflict(t.info.plural, t.info.group, t.name)
            obj["spec"]["replicas"] = replicas
            try:
                out = await self.registry.update(t.info, t.namespace, t.name, obj, self.write_options(request),
                                                 expected_rv=rec.mod_revision, old_rec=rec)
            except ApiStatusError as exc:
                if not brv and exc.reason == "Conflict" and "modified" in exc.message:
                    continue
                raise
            return json_response(self._scale_of(t.info, _obj(out)))
        raise errors.conflict(t.info.plural, t.info.group, t.name)

    async def bind(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        body = await self.read_body(request)
        node = ((body.get("target") or {}).get("name")) or ""
        if not node:
            raise errors.invalid_object("Binding", "", t.name, [errors.required("target.name")])
        for attempt in range(UNCONDITIONAL_RETRIES):
            if attempt:
                await asyncio.sleep(0)
            rec = self.registry.get_latest(t.info, t.namespace, t.name)
            pod = rec.obj()
            if (pod.get("spec") or {}).get("nodeName"):
                raise errors.conflict("pods/binding", "", t.name, f"pod {t.name} is already assigned to node "
                                                                  f"\"{pod['spec']['nodeName']}\"")
            pod["spec"]["nodeName"] = node
            conds = [c for c in (pod.setdefault("status", {}).get("conditions") or [])
                     if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": now_rfc3339()})
            pod["status"]["conditions"] = conds
            try:
                await self.store.update(rec.key, pod, rec.mod_revision)
                return json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                                      "code": 201}, 201)
            except RevisionConflict:
                continue
            except KeyNotFound:  # deleted while we bound it
                raise errors.not_found(t.info.plural, t.info.group, t.name) from None
        raise errors.conflict("pods/binding", "", t.name)

    async def finalize(self, request: web.Request, t: Target) -> web.Response:
        assert t.name is not None
        body = await self.read_body(request)
        rec = self.registry.get_latest(t.info, t.namespace, t.name)
        obj = rec.obj()
        obj.setdefault("spec", {})["finalizers"] = list((body.get("spec") or {}).get("finalizers") or [])
        md = obj["metadata"]
        if md.get("deletionTimestamp") and not obj["spec"]["finalizers"] and not md.get("finalizers"):
            out = await self.store.delete(rec.key, rec.mod_revision)
            return record_response(out)
        return record_response(await self.store.update(rec.key, obj, rec.mod_revision))


def _manager_from_ua(request: web.Request) -> str | None:
    ua = request.headers.get("User-Agent", "")
    if not ua:
        return None
    return ua.split("/", 1)[0][:128] or None

