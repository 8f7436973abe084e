"""Generic REST semantics over the revisioned store: create, update, patch, delete.

This is the part of the API server that knows Kubernetes object metadata (uid, generation,
resourceVersion, finalizers, deletion) but nothing about HTTP. Kind-specific behaviour comes
from the pure cores in :mod:`servicenet.api` and from hooks (the service registry).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from servicenet.api import apply, defaults, errors, shape_cache, spec_cache, tolerations, validation
from servicenet.api.errors import ApiStatusError
from servicenet.api.resources import ResourceInfo
from servicenet.api.views import meta as meta_of
from servicenet.store import Compacted, FutureRevision, KeyExists, KeyNotFound, Record, RevisionConflict

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Kinds whose main endpoint ignores status (it has its own subresource).
_STATUS_SUBRESOURCE = "status"
# Kinds whose create ignores a client-sent status (upstream strategies' PrepareForCreate).
_STATUS_RESET_ON_CREATE = frozenset({"services", "deployments", "replicasets", "statefulsets", "ingresses",
                                     "replicationcontrollers", "daemonsets", "jobs", "cronjobs"})
# Kinds whose DELETE without a propagation policy orphans the dependents (upstream keeps this for
# core/v1 ReplicationControllers and batch/v1 Jobs; kubectl always sends Background).
_ORPHAN_BY_DEFAULT = frozenset({"replicationcontrollers", "jobs"})


# Attempts an unconditional write makes before giving up on a conflict (each re-reads the newest
# record; only a suspension between read and write, e.g. an allocation hook, can lose the race).
UNCONDITIONAL_RETRIES = 50


def _is_modified_conflict(exc: ApiStatusError) -> bool:
    return exc.code == 409 and exc.reason == "Conflict" and "has been modified" in exc.message


_now_cache: list[Any] = [-1, ""]  # [whole second, its RFC 3339 rendering]


def now_rfc3339() -> str:
    """The current UTC time to the second; rendered once per second (every write stamps it)."""
    sec = int(time.time())
    if sec != _now_cache[0]:
        _now_cache[1] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sec))
        _now_cache[0] = sec
    return str(_now_cache[1])


_uid_pool: list[str] = []


def new_uid() -> str:
    """A random (version 4) UUID string, like ``str(uuid.uuid4())``, drawing the OS entropy 256
    UIDs at a time: one ``getrandom`` per create is a GIL release and re-acquire under load."""
    if not _uid_pool:
        blob = bytearray(os.urandom(16 * 256))
        for i in range(0, len(blob), 16):
            blob[i + 6] = (blob[i + 6] & 0x0F) | 0x40  # version 4
            blob[i + 8] = (blob[i + 8] & 0x3F) | 0x80  # RFC 4122 variant
        hx = blob.hex()
        _uid_pool.extend(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
                         for h in (hx[j:j + 32] for j in range(0, len(hx), 32)))
    return _uid_pool.pop()


os.register_at_fork(after_in_child=_uid_pool.clear)  # a forked child must not reuse the parent's UIDs


def group_of(info: ResourceInfo) -> str:
    return info.group or "core"


def key_for(info: ResourceInfo, namespace: str | None, name: str) -> str:
    if info.namespaced:
        return f"/registry/{group_of(info)}/{info.plural}/{namespace}/{name}"
    return f"/registry/{group_of(info)}/{info.plural}/{name}"


def prefix_for(info: ResourceInfo, namespace: str | None) -> str:
    if info.namespaced and namespace:
        return f"/registry/{group_of(info)}/{info.plural}/{namespace}/"
    return f"/registry/{group_of(info)}/{info.plural}/"


Hook = Callable[[ResourceInfo, dict[str, Any], "dict[str, Any] | None"], Awaitable[Callable[[], None] | None]]


@dataclass
class WriteOptions:
    field_manager: str | None = None
    field_validation: str = "Strict"  # Strict | Warn | Ignore (the server default upstream is Strict for kubectl)
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)


class Registry:
    """Kubernetes object semantics on top of a :class:`servicenet.store.Store`."""

    def __init__(self, store: Any) -> None:
        self.store = store
        # before-write hooks: (info, new, old) -> optional undo callable, run before the store write
        self.before_create: dict[str, Hook] = {}
        self.before_update: dict[str, Hook] = {}
        self.after_delete: dict[str, Callable[[ResourceInfo, dict[str, Any]], None]] = {}
        # custom resources and admission policies (servicenet.apiserver.crds.Admission): prune/default/validate
        # before the built-in validation, then the validating policies after it
        self.admission: Any = None
        # DefaultTolerationSeconds admission: (not-ready, unreachable) seconds, None = off
        self.default_toleration_seconds: tuple[int | None, int | None] = (
            tolerations.DEFAULT_SECONDS, tolerations.DEFAULT_SECONDS)
        # key -> metadata of the object a create is handing to the store, while it commits: the GC
        # controller reads it for that create's ADDED event instead of decoding the record (gc.py)
        self.committing: dict[str, dict[str, Any]] = {}

    # -- helpers -------------------------------------------------------------------------------------
    def get_record(self, info: ResourceInfo, namespace: str | None, name: str) -> Record:
        rec = self.store.get(key_for(info, namespace, name))
        if rec is None:
            raise errors.not_found(info.plural, info.group, name)
        return rec

    def get_latest(self, info: ResourceInfo, namespace: str | None, name: str) -> Record:
        """The record a write must start from: the committed one or the newest still being committed.

        Reading the committed index here while the store checks against in-flight writes made
        unconditional writes fail with 409 whenever another write to the object was committing."""
        rec = self.store.latest(key_for(info, namespace, name))
        if rec is None:
            raise errors.not_found(info.plural, info.group, name)
        return rec

    def get(self, info: ResourceInfo, namespace: str | None, name: str) -> dict[str, Any]:
        return self.get_record(info, namespace, name).obj()

    def _check_namespace(self, info: ResourceInfo, namespace: str | None, creating: bool) -> None:
        if not info.namespaced:
            return
        ns = self.store.get(f"/registry/core/namespaces/{namespace}")
        if ns is None:
            raise errors.not_found("namespaces", "", namespace or "")
        # decode the namespace only when it may be terminating (its bytes name the field)
        if creating and b'"deletionTimestamp"' in ns.value and meta_of(ns.obj()).get(
                "deletionTimestamp"):
            raise errors.forbidden_error(
                f"{info.plural} \"{{name}}\" is forbidden: unable to create new content in namespace "
                f"{namespace} because it is being terminated", info.plural, info.group)

    def _prepare_meta_create(self, info: ResourceInfo, obj: dict[str, Any], namespace: str | None) -> None:
        md = obj.setdefault("metadata", {})
        if not md.get("name"):
            gen = md.get("generateName")
            if not gen:
                raise errors.invalid_object(info.kind, info.group, "", [
                    errors.required("metadata.name", "name or generateName is required")])
            base = gen[:58]
            md["name"] = base + "".join(random.choice(_NAME_ALPHABET) for _ in range(5))
        if info.namespaced:
            md["namespace"] = namespace
        else:
            md.pop("namespace", None)
        md["uid"] = new_uid()
        md["creationTimestamp"] = now_rfc3339()
        md.pop("resourceVersion", None)
        md.pop("deletionTimestamp", None)
        md.pop("deletionGracePeriodSeconds", None)
        md["generation"] = 1
        obj["apiVersion"] = info.api_version
        obj["kind"] = info.kind

    # -- verbs ---------------------------------------------------------------------------------------
    async def create(self, info: ResourceInfo, namespace: str | None, obj: dict[str, Any],
                     opts: WriteOptions) -> Record | dict[str, Any]:
        self._prepare_meta_create(info, obj, namespace)
        name = obj["metadata"]["name"]
        self._check_namespace(info, namespace, creating=True)
        if info.plural in _STATUS_RESET_ON_CREATE:
            obj.pop("status", None)
        if info.plural == "pods" and not info.group:  # from the spec alone: kept per spec
            # the defaulted spec may be the kept one, shared, with its JSON text noted for
            # validation, managedFields and the store: no step below changes a pod's spec in
            # place (mutate_validate changes only custom resources; the service-account
            # admission goes through spec_cache.admitted_spec)
            spec_cache.pod_create_defaults(obj, self.default_toleration_seconds, self._default_pod)
        else:
            defaults.apply_defaults(info.api_version, info.kind, obj)
            defaults.prepare_for_create(info.api_version, info.kind, obj)
        if self.admission is not None:
            self.admission.mutate_validate(info, obj, None, opts, None)
        errs = validation.validate_create(info, obj)
        if errs:
            raise errors.invalid_object(info.kind, info.group, name, errs)
        if self.admission is not None:
            self.admission.validating(info, obj, None, opts, None)
        key = key_for(info, namespace, name)
        if self.store.latest(key) is not None:
            raise errors.already_exists(info.plural, info.group, name)
        self._managed_fields(info, None, obj, opts, "Update")
        undo = None
        hook = self.before_create.get(info.plural)
        if hook is not None:
            undo = await hook(info, obj, None)
        if opts.dry_run:
            if undo:
                undo()
            return obj
        md = obj["metadata"]
        self.committing[key] = md
        try:
            return await self.store.create(key, obj)
        except BaseException as e:
            if undo:  # the allocation made for this write goes back
                undo()
            if isinstance(e, KeyExists):
                raise errors.already_exists(info.plural, info.group, name) from None
            if _too_deep(e):
                raise errors.bad_request(_TOO_DEEP) from None
            raise
        finally:
            if self.committing.get(key) is md:
                del self.committing[key]

    def _default_pod(self, obj: dict[str, Any]) -> None:
        """A pod create's defaulting: reads and rewrites the spec, sets the status (spec_cache)."""
        defaults.apply_defaults("v1", "Pod", obj)
        defaults.prepare_for_create("v1", "Pod", obj)
        if isinstance(obj.get("spec"), dict):
            tolerations.add_default_tolerations(obj["spec"], *self.default_toleration_seconds)

    def _managed_fields(self, info: ResourceInfo, old: dict[str, Any] | None, new: dict[str, Any],
                        opts: WriteOptions, operation: str) -> None:
        manager = opts.field_manager
        if not manager:
            return
        try:
            if old is None and operation == "Update":  # a create: everything is the creator's
                mf = shape_cache.create_managed_fields(new, manager, api_version=info.api_version, now=now_rfc3339(),
                                                       kind=info.kind)
            else:
                out = apply.update_managed_fields(old, new, manager, operation, api_version=info.api_version,
                                                  now=now_rfc3339(), kind=info.kind)
                mf = meta_of(out).get("managedFields")
            if mf:
                new.setdefault("metadata", {})["managedFields"] = mf
        except ApiStatusError:
            raise
        except Exception:  # managedFields bookkeeping must never fail a write
            pass

    async def update(self, info: ResourceInfo, namespace: str | None, name: str, obj: dict[str, Any],
                     opts: WriteOptions, *, subresource: str | None = None,
                     expected_rv: int | None = None, old_rec: Record | None = None) -> Record | dict[str, Any]:
        """PUT semantics. ``subresource='status'`` replaces only status.

        Without a precondition (no ``expected_rv``, no resourceVersion in the body) a concurrent
        writer never makes this fail: the write is re-based on the newest record and retried."""
        md = meta_of(obj)
        if md.get("name") and md["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({md['name']}) does not match the name on the URL ({name})")
        body_rv = md.get("resourceVersion")
        if expected_rv is None and body_rv not in (None, ""):
            try:
                expected_rv = int(body_rv)
            except ValueError:
                raise errors.bad_request(f"invalid resourceVersion {body_rv!r}") from None
        if expected_rv is not None or old_rec is not None:
            return await self._update_once(info, namespace, name, obj, opts, subresource, expected_rv, old_rec)
        for _ in range(UNCONDITIONAL_RETRIES):
            try:
                return await self._update_once(info, namespace, name, obj, opts, subresource, None, None)
            except ApiStatusError as exc:
                if not _is_modified_conflict(exc):
                    raise
            await asyncio.sleep(0)
        raise errors.conflict(info.plural, info.group, name)

    async def _update_once(self, info: ResourceInfo, namespace: str | None, name: str, obj: dict[str, Any],
                           opts: WriteOptions, subresource: str | None, expected_rv: int | None,
                           old_rec: Record | None) -> Record | dict[str, Any]:
        rec = old_rec or self.get_latest(info, namespace, name)
        old = rec.obj()
        if expected_rv is not None and expected_rv != rec.mod_revision:
            raise errors.conflict(info.plural, info.group, name)
        new = self._merge_for_update(info, old, obj, subresource)
        if subresource is None:
            defaults.apply_defaults(info.api_version, info.kind, new)
            if info.plural == "services":
                defaults.service_prepare_for_update(new, old)
            if self.admission is not None:
                self.admission.mutate_validate(info, new, old, opts, None)
            errs = validation.validate_update(info, new, old)
            if errs:
                raise errors.invalid_object(info.kind, info.group, name, errs)
        elif self.admission is not None:
            self.admission.mutate_validate(info, new, old, opts, subresource)
        if self.admission is not None:
            self.admission.validating(info, new, old, opts, subresource)
        if _spec_changed(old, new):
            new["metadata"]["generation"] = int(old["metadata"].get("generation") or 1) + 1
        self._managed_fields(info, old, new, opts, "Update")
        undo = None
        hook = self.before_update.get(info.plural)
        if hook is not None and subresource is None:
            undo = await hook(info, new, old)
        if opts.dry_run:
            if undo:
                undo()
            return new
        # an object being deleted whose last finalizer went away is removed now
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers") and not (
                info.plural == "pods" and new["metadata"].get("deletionGracePeriodSeconds", 0) > 0
                and (new.get("spec") or {}).get("nodeName")
                and (new.get("status") or {}).get("phase") not in ("Succeeded", "Failed")):
            if undo:
                undo()
            return await self._remove(info, rec, new)
        if _same(old, new):
            return rec  # no-op update: upstream keeps the resourceVersion
        try:
            return await self.store.update(rec.key, new, rec.mod_revision)
        except BaseException as e:
            if undo:  # the allocation made for this write goes back
                undo()
            if isinstance(e, RevisionConflict):
                raise errors.conflict(info.plural, info.group, name) from None
            if isinstance(e, KeyNotFound):
                raise errors.not_found(info.plural, info.group, name) from None
            if _too_deep(e):
                raise errors.bad_request(_TOO_DEEP) from None
            raise

    def _merge_for_update(self, info: ResourceInfo, old: dict[str, Any], obj: dict[str, Any],
                          subresource: str | None) -> dict[str, Any]:
        has_status = _STATUS_SUBRESOURCE in info.subresources
        if subresource == "status":
            new = apply.copy_json(old)  # an orjson round trip: ~10x cheaper than copy.deepcopy
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            # status writers may also touch labels/annotations? upstream: no — keep metadata.
            return new
        new = apply.copy_json(obj)  # deepcopy only for values JSON cannot carry exactly
        new["apiVersion"] = info.api_version
        new["kind"] = info.kind
        nmd = new.setdefault("metadata", {})
        omd = old["metadata"]
        for k in ("uid", "creationTimestamp", "namespace", "name", "generation", "deletionTimestamp",
                  "deletionGracePeriodSeconds"):
            if k in omd:
                nmd[k] = omd[k]
            else:
                nmd.pop(k, None)
        if "managedFields" not in nmd and "managedFields" in omd:
            nmd["managedFields"] = omd["managedFields"]
        nmd.pop("resourceVersion", None)
        if has_status:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        return new

    async def _remove(self, info: ResourceInfo, rec: Record, last: dict[str, Any] | None = None) -> Record:
        try:
            out = await self.store.delete(rec.key, rec.mod_revision)
        except RevisionConflict:
            raise errors.conflict(info.plural, info.group, rec.key.rsplit("/", 1)[-1]) from None
        except KeyNotFound:
            raise errors.not_found(info.plural, info.group, rec.key.rsplit("/", 1)[-1]) from None
        hook = self.after_delete.get(info.plural)
        if hook is not None:
            hook(info, last or rec.obj())
        return out

    async def delete(self, info: ResourceInfo, namespace: str | None, name: str, options: dict[str, Any],
                     dry_run: bool = False) -> tuple[Record | dict[str, Any], bool]:
        """DELETE semantics. Returns (object or record, removed_now)."""
        for _attempt in range(UNCONDITIONAL_RETRIES):
            if _attempt:
                await asyncio.sleep(0)  # let the competing write land before re-reading
            rec = self.get_latest(info, namespace, name)
            obj = rec.obj()
            md = obj["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != md.get("uid"):
                raise errors.conflict(
                    info.plural, info.group, name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {md.get('uid')}")
            if pre.get("resourceVersion") and pre["resourceVersion"] != md.get("resourceVersion"):
                raise errors.conflict(
                    info.plural, info.group, name,
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {md.get('resourceVersion')}")
            if self.admission is not None and _attempt == 0:
                self.admission.validating_delete(info, obj, dry_run)
            policy = options.get("propagationPolicy")
            if policy is None and options.get("orphanDependents") is not None:
                policy = "Orphan" if options["orphanDependents"] else "Background"
            if policy not in (None, "Background", "Foreground", "Orphan"):
                raise errors.invalid_object("DeleteOptions", "", "", [errors.not_supported(
                    "propagationPolicy", policy, ["Foreground", "Background", "Orphan", "nil"])])
            finalizers = list(md.get("finalizers") or [])
            if info.plural in ("deployments", "replicasets", "statefulsets") and policy is None:
                policy = "Background"
            if info.plural in _ORPHAN_BY_DEFAULT and policy is None:
                policy = "Orphan"
            if policy == "Foreground" and "foregroundDeletion" not in finalizers:
                finalizers.append("foregroundDeletion")
            if policy == "Orphan" and "orphan" not in finalizers:
                finalizers.append("orphan")
            grace = self._grace(info, obj, options)
            if info.plural == "namespaces":
                if not md.get("deletionTimestamp"):
                    obj["metadata"]["deletionTimestamp"] = now_rfc3339()
                    obj.setdefault("status", {})["phase"] = "Terminating"
                    if dry_run:
                        return obj, False
                    try:
                        return await self.store.update(rec.key, obj, rec.mod_revision), False
                    except RevisionConflict:
                        continue
                return rec, False
            if finalizers or grace > 0:
                if md.get("deletionTimestamp") and grace >= int(md.get("deletionGracePeriodSeconds") or 0) \
                        and finalizers == list(md.get("finalizers") or []):
                    return rec, False  # already terminating, nothing shortens it
                if not md.get("deletionTimestamp") or grace < int(md.get("deletionGracePeriodSeconds") or 0):
                    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace)
                    md["deletionTimestamp"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
                    md["deletionGracePeriodSeconds"] = grace
                if finalizers:
                    md["finalizers"] = finalizers
                if md.get("generation") is not None:
                    md["generation"] = int(md["generation"]) + 1
                if dry_run:
                    return obj, False
                if grace == 0 and not finalizers:
                    return await self._remove(info, rec, obj), True
                try:
                    return await self.store.update(rec.key, obj, rec.mod_revision), False
                except RevisionConflict:
                    continue
            if dry_run:
                return obj, True
            try:
                return await self._remove(info, rec, obj), True
            except ApiStatusError as exc:
                if exc.code == 409:
                    continue
                raise
        raise errors.conflict(info.plural, info.group, name)

    @staticmethod
    def _grace(info: ResourceInfo, obj: dict[str, Any], options: dict[str, Any]) -> int:
        if info.plural != "pods":
            return 0
        spec = obj.get("spec") or {}
        phase = (obj.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0  # never ran or finished: nothing to wait for
        g = options.get("gracePeriodSeconds")
        if g is None:
            g = spec.get("terminationGracePeriodSeconds", 30)
        return max(0, int(g))

    def list_records(self, info: ResourceInfo, namespace: str | None, *, limit: int | None = None,
                     start_after: str | None = None, revision: int | None = None
                     ) -> tuple[list[Record], int, bool]:
        try:
            return self.store.list(prefix_for(info, namespace), start_after=start_after, limit=limit,
                                   revision=revision)
        except Compacted as exc:
            raise errors.expired(
                f"The provided continue parameter is too old to display a consistent list result. You can start "
                f"a new list without the continue parameter, or use the continue token in this response to "
                f"retrieve the remainder of the results. Continuing with the provided token results in an "
                f"inconsistent list - objects that were created, modified, or deleted between the time the first "
                f"chunk was returned and now may show up in the list. (compacted revision {exc.compact_revision})"
            ) from None
        except FutureRevision as exc:  # e.g. a continue token from another API server a little ahead of this one
            raise errors.ApiStatusError(
                504, "Timeout", f"Too large resource version: {exc.requested}, current: {exc.revision}",
                {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                 "retryAfterSeconds": 1}, {"Retry-After": "1"}) from None


_TOO_DEEP = "the object is nested too deeply to be stored (more than 254 levels of objects and lists)"


def _too_deep(e: BaseException) -> bool:
    """orjson refuses to encode nesting beyond 254 levels; the write did not happen."""
    return isinstance(e, TypeError) and "Recursion limit" in str(e)


def _strip_volatile(o: dict[str, Any]) -> dict[str, Any]:
    c = dict(o)
    md = dict(meta_of(c))
    md.pop("resourceVersion", None)
    md.pop("managedFields", None)
    c["metadata"] = md
    return c


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return orjson.dumps(_strip_volatile(a), option=orjson.OPT_SORT_KEYS) == orjson.dumps(
        _strip_volatile(b), option=orjson.OPT_SORT_KEYS)


def _spec_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    skip = {"metadata", "status", "apiVersion", "kind"}
    ok = {k: v for k, v in old.items() if k not in skip}
    nk = {k: v for k, v in new.items() if k not in skip}
    return orjson.dumps(ok, option=orjson.OPT_SORT_KEYS) != orjson.dumps(nk, option=orjson.OPT_SORT_KEYS)
