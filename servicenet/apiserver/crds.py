"""Custom resources and validating admission policies in the API server (the I/O shell).

* A controller follows CustomResourceDefinitions in the store: it accepts names (``NamesAccepted``,
  ``Established``), serves each accepted CRD's versions (discovery, REST, OpenAPI v3), and on deletion
  removes every object of the CRD before letting the CRD go (``customresourcecleanup`` finalizer).
* :class:`Admission` is the registry's admission hook: custom objects are pruned, defaulted and
  validated against their schema and CEL rules; every write is then judged by the bound
  ValidatingAdmissionPolicies.

All decisions are made by the pure modules in :mod:`servicenet.api.crd`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import yaml
from aiohttp import web

from servicenet.api import apply, errors, fieldselectors, openapi, resources
from servicenet.api import patch as patchmod
from servicenet.api.crd import celrules, merge, policy, present, served, structural
from servicenet.api.crd import schema as sch
from servicenet.api.crd.structural import CrdVersion
from servicenet.api.errors import ApiStatusError
from servicenet.api.resources import ResourceInfo
from servicenet.api.selectors import label_selector_from_dict
from servicenet.api.wire import meta as meta_of
from servicenet.apiserver.registry import WriteOptions, now_rfc3339, prefix_for
from servicenet.apiserver.responses import _obj, json_response
from servicenet.common import log
from servicenet.store import WatchClosed

_log = log.get("apiserver.crds")
CRD_PREFIX = "/registry/apiextensions.k8s.io/customresourcedefinitions/"
ADMISSION_PREFIX = "/registry/admissionregistration.k8s.io/"
VAP_PREFIX = "/registry/admissionregistration.k8s.io/validatingadmissionpolicies/"
VAPB_PREFIX = "/registry/admissionregistration.k8s.io/validatingadmissionpolicybindings/"
_CRD_GVR = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
_VAP_GVR = ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies")
_VAPB_GVR = ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings")


class CrdManager:
    """State shared by the admission hook, the handlers and the controller."""

    def __init__(self, server: Any) -> None:  # the ApiServer (store, registry)
        self.server = server
        self.versions: dict[tuple[str, str, str], CrdVersion] = {}
        self.policies: dict[str, dict[str, Any]] = {}
        self.bindings: dict[str, dict[str, Any]] = {}
        self.admission = Admission(self)
        self._tasks: list[asyncio.Task[None]] = []
        self._retries: set[asyncio.Task[None]] = set()
        self._retrying: set[str] = set()
        self._openapi_cache: dict[tuple[str, str], bytes] = {}

    @property
    def store(self) -> Any:
        return self.server.store

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._load_policies()
        recs, rev, _ = self.store.list(CRD_PREFIX)
        self._rebuild([r.obj() for r in recs])
        _, prev, _ = self.store.list(ADMISSION_PREFIX)
        self._tasks = [asyncio.create_task(self._follow(CRD_PREFIX, rev, self._on_crd), name="crd-controller"),
                       asyncio.create_task(self._follow(ADMISSION_PREFIX, prev, self._on_policy),
                                           name="admission-policies")]
        for r in recs:
            await self._reconcile_safely(r.key)

    async def stop(self) -> None:
        self._tasks += list(self._retries)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks = []

    async def _follow(self, prefix: str, rev: int, on_change: Any) -> None:
        """Call ``on_change(key)`` for every change under ``prefix`` (``None`` after a resync)."""
        while True:
            w = self.store.watch(prefix, rev)
            try:
                while True:
                    ev = await w.next(timeout=30.0)
                    if ev is not None:
                        rev = ev.revision
                        await on_change(ev.record.key)
            except WatchClosed:
                _, rev, _ = self.store.list(prefix)
                await on_change(None)  # events may have been lost: start over from the current state
            finally:
                w.close()

    async def _on_crd(self, key: str | None) -> None:
        recs = self.store.list(CRD_PREFIX)[0]
        self._rebuild([r.obj() for r in recs])
        for k in [key] if key is not None else [r.key for r in recs]:
            await self._reconcile_safely(k)

    async def _on_policy(self, key: str | None) -> None:
        self._load_policies()

    async def _reconcile_safely(self, key: str) -> None:
        try:
            await self._reconcile(key)
        except ApiStatusError as exc:
            if exc.code not in (404, 409):
                _log.warning("crd reconcile failed", key=key, error=str(exc))
        except Exception:
            _log.exception("crd reconcile failed", key=key)

    # -- state ---------------------------------------------------------------------------------------
    def _load_policies(self) -> None:
        self.policies = {r.obj()["metadata"]["name"]: r.obj() for r in self.store.list(VAP_PREFIX)[0]}
        self.bindings = {r.obj()["metadata"]["name"]: r.obj() for r in self.store.list(VAPB_PREFIX)[0]}

    def _rebuild(self, crds: list[dict[str, Any]]) -> None:
        versions: dict[tuple[str, str, str], CrdVersion] = {}
        groups: dict[str, list[str]] = {}
        for crd in crds:
            acc = (crd.get("status") or {}).get("acceptedNames") or {}
            if not acc.get("plural"):
                continue  # names not accepted (yet): not served
            for cv in structural.served_versions(crd):
                versions[cv.info.gvr] = cv
                groups.setdefault(cv.info.group, [])
                if cv.info.version not in groups[cv.info.group]:
                    groups[cv.info.group].append(cv.info.version)
            spec = crd.get("spec") or {}
            storage = next((v for v in spec.get("versions") or [] if v.get("storage")), None)
            if storage and (storage.get("schema") or {}).get("openAPIV3Schema"):
                root = storage["schema"]["openAPIV3Schema"]
                apply.register_kind(str(acc.get("kind", "")), merge.list_specs(root), merge.atomic_maps(root))
        for cv in versions.values():
            if cv.selectable_fields:
                paths = cv.selectable_fields
                fieldselectors.register_kind_fields(cv.info.kind, frozenset(p.lstrip(".") for p in paths),
                                               lambda o, paths=paths: present.selectable_values(paths, o))
        self.versions = versions
        served.set_versions(versions)
        resources.set_dynamic([cv.info for cv in versions.values()],
                              {g: tuple(structural.sort_versions(vs)) for g, vs in sorted(groups.items())})
        self._openapi_cache.clear()

    def version(self, info: ResourceInfo) -> CrdVersion | None:
        return self.versions.get(info.gvr)

    # -- controller ----------------------------------------------------------------------------------
    async def _reconcile(self, key: str) -> None:
        reg = self.server.registry
        assert reg is not None
        rec = self.store.get(key)
        if rec is None:
            return
        crd = rec.obj()
        info = resources.by_plural(*_CRD_GVR)
        assert info is not None
        name = crd["metadata"]["name"]
        if crd["metadata"].get("deletionTimestamp"):
            await self._cleanup(crd, rec)
            return
        now = now_rfc3339()
        others = [r.obj() for r in self.store.list(CRD_PREFIX)[0] if r.key != key]
        status, reason, message = structural.naming_condition(crd, others)
        changed = structural.set_condition(crd, "NamesAccepted", status, reason, message, now)
        if status == "True":
            names = dict((crd.get("spec") or {}).get("names") or {})
            if crd["status"].get("acceptedNames") != names:
                crd["status"]["acceptedNames"] = names
                changed = True
            changed |= structural.set_condition(crd, "Established", "True", "InitialNamesAccepted",
                                                "the initial names have been accepted", now)
        elif not any(c.get("type") == "Established" and c.get("status") == "True"
                     for c in crd["status"].get("conditions") or []):
            changed |= structural.set_condition(crd, "Established", "False", "NotAccepted",
                                                "not all names are accepted", now)
        if changed:
            await reg.update(info, None, name, crd, WriteOptions(field_validation="Ignore"), subresource="status",
                             expected_rv=rec.mod_revision, old_rec=rec)

    def _retry_later(self, key: str, delay: float = 0.25) -> None:
        """Reconcile ``key`` again soon (a CRD waiting for its objects to go); one retry at a time."""
        if key in self._retrying:
            return
        self._retrying.add(key)

        async def again() -> None:
            await asyncio.sleep(delay)
            self._retrying.discard(key)
            await self._reconcile_safely(key)

        t = asyncio.create_task(again())
        self._retries.add(t)
        t.add_done_callback(self._retries.discard)

    async def _cleanup(self, crd: dict[str, Any], rec: Any) -> None:
        """Delete every object of a CRD being deleted, then drop the cleanup finalizer."""
        reg = self.server.registry
        assert reg is not None
        spec = crd.get("spec") or {}
        acc = (crd.get("status") or {}).get("acceptedNames") or spec.get("names") or {}
        fins = list(crd["metadata"].get("finalizers") or [])
        if structural.CLEANUP_FINALIZER in fins and acc.get("plural"):
            now = now_rfc3339()
            if structural.set_condition(crd, "Terminating", "True", "InstanceDeletionInProgress",
                                        "CustomResource deletion is in progress", now):
                info_crd = resources.by_plural(*_CRD_GVR)
                assert info_crd is not None
                rec = await reg.update(info_crd, None, crd["metadata"]["name"], crd, WriteOptions(),
                                       subresource="status", expected_rv=rec.mod_revision, old_rec=rec)
                crd = rec.obj() if hasattr(rec, "obj") else rec
            storage = next((v["name"] for v in spec.get("versions") or [] if v.get("storage")), "v1")
            info = ResourceInfo(group=spec.get("group", ""), version=storage, kind=acc.get("kind", ""),
                                plural=acc["plural"], singular=acc.get("singular", ""),
                                namespaced=spec.get("scope") == "Namespaced")
            for r in self.store.list(prefix_for(info, None))[0]:
                md = meta_of(r.obj())
                if md.get("deletionTimestamp"):
                    continue  # waiting for its own finalizers
                try:
                    await reg.delete(info, md.get("namespace"), md.get("name", ""), {})
                except ApiStatusError as exc:
                    if exc.code not in (404, 409):
                        raise
            if self.store.list(prefix_for(info, None))[0]:
                self._retry_later(CRD_PREFIX + crd["metadata"]["name"])  # objects with finalizers remain
                return
        rec2 = self.store.get(rec.key if hasattr(rec, "key") else CRD_PREFIX + crd["metadata"]["name"])
        if rec2 is None:
            return
        latest = rec2.obj()
        latest["metadata"]["finalizers"] = [f for f in latest["metadata"].get("finalizers") or []
                                            if f != structural.CLEANUP_FINALIZER]
        if not latest["metadata"]["finalizers"]:
            await self.store.delete(rec2.key, rec2.mod_revision)
        else:
            await self.store.update(rec2.key, latest, rec2.mod_revision)

    # -- OpenAPI v3 ----------------------------------------------------------------------------------
    def openapi_index(self, base: dict[str, Any]) -> dict[str, Any]:
        paths = dict(base.get("paths") or {})
        for g, v in self._own_group_versions():
            doc = self.openapi_document(g, v)
            if doc is not None:
                key = openapi.gv_path(g, v)
                paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash="
                                                   f"{hashlib.sha512(doc).hexdigest().upper()}"}
        return {"paths": paths}

    def _own_group_versions(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for cv in self.versions.values():
            if (cv.info.group, cv.info.version) not in out:
                out.append((cv.info.group, cv.info.version))
        return out

    def openapi_document(self, group: str, version: str) -> bytes | None:
        key = (group, version)
        if key in self._openapi_cache:
            return self._openapi_cache[key]
        if key not in self._own_group_versions():
            return None
        paths: dict[str, Any] = {}
        models: dict[str, Any] = {}
        infos = [r for r in (*resources.all_resources(), *resources.dynamic_resources())
                 if (r.group, r.version) == key]
        for r in infos:
            cv = self.versions.get(r.gvr)
            if cv is None:
                continue
            m = present.models(cv)
            name, list_name = list(m)
            models.update(m)
            paths.update(openapi.paths_for(r, name, list_name))
        roots: set[str] = set()
        openapi._refs(paths, roots)
        openapi._refs(models, roots)
        roots |= {openapi._META + "Status", openapi._META + "WatchEvent"}
        schemas = {**openapi._closure(roots - set(models)), **models}
        doc = {"openapi": openapi.OPENAPI_VERSION, "info": openapi.INFO, "paths": paths,
               "components": {"schemas": dict(sorted(schemas.items()))}}
        body = json.dumps(doc, separators=(",", ":")).encode()
        self._openapi_cache[key] = body
        return body


async def custom_scale(reg: Any, request: web.Request, info: ResourceInfo, namespace: str | None, name: str,
                       read_body: Any) -> web.Response | None:
    """The ``autoscaling/v1`` Scale of a custom resource (its CRD's ``scale`` subresource paths);
    None for built-in kinds."""
    cv = served.version(info)
    if cv is None:
        return None
    rec = reg.get_record(info, namespace, name)
    obj = rec.obj()
    cur = present.scale_of(cv, obj)
    if request.method == "GET":
        return json_response(cur)
    if request.method == "PUT":
        body = await read_body(request)
    elif request.method == "PATCH":
        raw = await request.read()
        ctype = (request.content_type or "").lower()
        if ctype == "application/apply-patch+yaml":
            body = {**cur, **(yaml.safe_load(raw) or {})}
        else:
            body = patchmod.apply_patch(None, cur, raw, ctype)
    else:
        raise errors.method_not_allowed("the server does not allow this method on the requested resource")
    replicas = (body.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid_object("Scale", "autoscaling", name, [errors.invalid(
            "spec.replicas", replicas, "must be greater than or equal to 0")])
    present.set_replicas(cv, obj, replicas)
    out = await reg.update(info, namespace, name, obj, WriteOptions(), expected_rv=rec.mod_revision, old_rec=rec)
    return json_response(present.scale_of(cv, _obj(out)))


class Admission:
    """The registry's admission hook (see ``Registry.admission``)."""

    def __init__(self, mgr: CrdManager) -> None:
        self.mgr = mgr

    # -- mutating + schema validation ----------------------------------------------------------------
    def mutate_validate(self, info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None,
                        opts: WriteOptions, subresource: str | None) -> None:
        gvr = info.gvr
        if gvr == _CRD_GVR:
            self._crd(obj, old, subresource)
            return
        if gvr == _VAP_GVR and subresource is None:
            errs = policy.validate_policy(obj)
            if errs:
                raise errors.invalid_object(info.kind, info.group, obj["metadata"].get("name", ""), errs)
            return
        if gvr == _VAPB_GVR:
            errs = policy.validate_binding(obj)
            if errs:
                raise errors.invalid_object(info.kind, info.group, obj["metadata"].get("name", ""), errs)
            return
        cv = self.mgr.versions.get(gvr)
        if cv is not None:
            self._custom(cv, obj, old, opts, subresource)

    def _crd(self, obj: dict[str, Any], old: dict[str, Any] | None, subresource: str | None) -> None:
        if subresource == "status":
            return
        structural.apply_defaults(obj)
        name = obj["metadata"].get("name", "")
        errs = structural.validate(obj, old)
        if errs:
            raise errors.invalid_object("CustomResourceDefinition", "apiextensions.k8s.io", name, errs)
        storage = next((v.get("name") for v in obj["spec"].get("versions") or [] if v.get("storage")), None)
        status = obj.setdefault("status", {})
        if old is None:
            fins = obj["metadata"].setdefault("finalizers", [])
            if structural.CLEANUP_FINALIZER not in fins:
                fins.append(structural.CLEANUP_FINALIZER)
            obj["status"] = status = {"conditions": [], "acceptedNames": {"plural": "", "kind": ""},
                                      "storedVersions": []}
        stored = status.setdefault("storedVersions", [])
        if storage and storage not in stored:
            stored.append(storage)

    def _custom(self, cv: CrdVersion, obj: dict[str, Any], old: dict[str, Any] | None, opts: WriteOptions,
                subresource: str | None) -> None:
        info = cv.info
        name = meta_of(obj).get("name", "")
        if old is None and cv.terminating:
            raise ApiStatusError(405, "MethodNotAllowed",
                                 "create not allowed while custom resource definition is terminating")
        if old is None and "status" in info.subresources:
            obj.pop("status", None)
        unknown = sch.prune(obj, cv.schema)
        if unknown and opts.field_validation == "Strict":
            raise errors.bad_request(
                f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: strict decoding '
                "error: " + ", ".join(f'unknown field "{u.lstrip(".")}"' for u in unknown))
        if unknown and opts.field_validation == "Warn":
            opts.warnings.extend(f'unknown field "{u.lstrip(".")}"' for u in unknown)
        sch.default(obj, cv.schema)
        errs = sch.validate(obj, cv.schema)
        skipped = sch.blocking(errs)
        errs += [skipped] if skipped is not None else celrules.validate(obj, old, cv.schema)
        if errs:
            raise errors.invalid_object(info.kind, info.group, name, errs)
        if cv.storage_version:
            obj["apiVersion"] = f"{info.group}/{cv.storage_version}"  # stored at the storage version
        if cv.deprecated:
            opts.warnings.append(cv.deprecation_warning or
                                 f"{info.group}/{info.version} {info.kind} is deprecated")

    # -- validating admission policies ---------------------------------------------------------------
    def validating(self, info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None,
                   opts: WriteOptions, subresource: str | None) -> None:
        mgr = self.mgr
        if not mgr.bindings:
            return
        md = meta_of(obj)
        a = policy.Attributes(operation="UPDATE" if old is not None else "CREATE", group=info.group,
                              version=info.version, resource=info.plural, subresource=subresource or "",
                              kind=info.kind, namespace=md.get("namespace") or "", name=md.get("name") or "",
                              obj=obj, old=old, dry_run=opts.dry_run)
        self.judge(a, opts)

    def validating_delete(self, info: ResourceInfo, obj: dict[str, Any], dry_run: bool) -> None:
        if not self.mgr.bindings:
            return
        md = meta_of(obj)
        self.judge(policy.Attributes(operation="DELETE", group=info.group, version=info.version,
                                     resource=info.plural, subresource="", kind=info.kind,
                                     namespace=md.get("namespace") or "", name=md.get("name") or "", obj=None,
                                     old=obj, dry_run=dry_run), None)

    def judge(self, a: policy.Attributes, opts: WriteOptions | None) -> None:
        mgr = self.mgr
        for b in list(mgr.bindings.values()):
            p = mgr.policies.get((b.get("spec") or {}).get("policyName", ""))
            if p is None:
                continue
            for d in policy.evaluate(p, b, a, self._ns_labels, self._params):
                if d.action == "Deny":
                    raise policy.deny_error(d)
                if d.action == "Warn" and opts is not None:
                    opts.warnings.append(policy.warning_text(d))
                if d.action == "Audit":
                    _log.info("validating admission policy audit", policy=d.policy, binding=d.binding,
                              message=d.message, resource=a.resource, name=a.name)

    def _ns_labels(self, ns: str) -> Mapping[str, str] | None:
        rec = self.mgr.store.get(f"/registry/core/namespaces/{ns}")
        if rec is None:
            return None
        return dict(meta_of(rec.obj()).get("labels") or {})

    def _params(self, param_kind: dict[str, Any], ref: dict[str, Any], req_ns: str) -> list[Any] | None:
        info = resources.by_kind(str(param_kind.get("apiVersion", "")), str(param_kind.get("kind", "")))
        if info is None:
            return None
        ns = ref.get("namespace") or (req_ns if info.namespaced else None)
        if ref.get("name"):
            reg = self.mgr.server.registry
            assert reg is not None
            try:
                return [reg.get(info, ns, ref["name"])]
            except ApiStatusError:
                return None
        sel = ref.get("selector")
        if isinstance(sel, dict):
            ls = label_selector_from_dict(sel)
            recs = self.mgr.store.list(prefix_for(info, ns))[0]
            out = [o for o in (r.obj() for r in recs)
                   if ls.matches((meta_of(o).get("labels")) or {})]
            return out or None
        return None
