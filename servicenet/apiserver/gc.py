"""Garbage collection (ownerReferences) and namespace deletion, driven by the store's own watch.

Upstream runs these in kube-controller-manager; here they live next to the store so that they
see every change in revision order: an owner's ADDED always precedes its dependents'.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from servicenet.api.errors import ApiStatusError
from servicenet.api.resources import ResourceInfo, all_resources, dynamic_generation, dynamic_resources
from servicenet.api.views import meta as meta_of
from servicenet.apiserver.registry import Registry, WriteOptions
from servicenet.apiserver.responses import metadata_view
from servicenet.common import log
from servicenet.common.component import cancel_all
from servicenet.store import Compacted, Event, WatchClosed

_log = log.get("gc")


def _info_index() -> dict[tuple[str, str], ResourceInfo]:
    """Built-in and custom (CRD) resources by (group, plural)."""
    out = {(r.group or "core", r.plural): r for r in dynamic_resources()}
    out.update({(r.group or "core", r.plural): r for r in all_resources()})
    return out


def parse_key(key: str) -> tuple[str, str, str | None, str]:
    """``/registry/<group>/<plural>/[<ns>/]<name>`` → (group, plural, namespace, name)."""
    parts = key.split("/")
    if len(parts) == 6:
        return parts[2], parts[3], parts[4], parts[5]
    return parts[2], parts[3], None, parts[4]


class GarbageCollector:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store
        self._infos = (dynamic_generation(), _info_index())
        self.uid_key: dict[str, str] = {}
        self.key_uid: dict[str, str] = {}
        self.dependents: dict[str, set[str]] = {}  # owner uid → dependent keys
        self.owner_refs: dict[str, list[str]] = {}  # dependent key → owner uids
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._rev = 0  # the last revision seen by the watch

    @property
    def infos(self) -> dict[tuple[str, str], ResourceInfo]:
        gen, idx = self._infos
        if gen != dynamic_generation():  # CRDs came or went
            self._infos = (dynamic_generation(), _info_index())
        return self._infos[1]

    # -- bookkeeping (pure) --------------------------------------------------------------------------
    def _track(self, key: str, obj: dict[str, Any]) -> None:
        md = meta_of(obj)
        uid = md.get("uid")
        if uid:
            self.uid_key[uid] = key
            self.key_uid[key] = uid
        old = self.owner_refs.pop(key, [])
        for o in old:
            s = self.dependents.get(o)
            if s is not None:
                s.discard(key)
                if not s:
                    del self.dependents[o]
        refs = [r.get("uid") for r in md.get("ownerReferences") or [] if r.get("uid")]
        if refs:
            self.owner_refs[key] = refs
            for o in refs:
                self.dependents.setdefault(o, set()).add(key)

    def _untrack(self, key: str) -> None:
        uid = self.key_uid.pop(key, None)
        if uid is not None:
            self.uid_key.pop(uid, None)
        for o in self.owner_refs.pop(key, []):
            s = self.dependents.get(o)
            if s is not None:
                s.discard(key)
                if not s:
                    del self.dependents[o]

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        rev = self._relist()
        self._tasks = [asyncio.create_task(self._watch(rev), name="gc-watch"),
                       asyncio.create_task(self._work(), name="gc-work")]

    def _relist(self) -> int:
        """Track every object from a fresh list (what it knew is dropped); the list's revision."""
        self.uid_key.clear()
        self.key_uid.clear()
        self.dependents.clear()
        self.owner_refs.clear()
        recs, rev, _ = self.store.list("/registry/")
        for r in recs:
            self._track(r.key, r.obj())
        for r in recs:
            self._consider(r.key, r.obj())
        return rev

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks = []

    async def _watch(self, rev: int) -> None:
        self._rev = rev
        while True:
            try:
                w = self.store.watch("/registry/", self._rev)
            except Compacted:  # fell behind a compaction (e.g. the etcd watch cache was reset): list again
                _log.warning("gc watch compacted, listing again", revision=self._rev)
                self._rev = self._relist()
                continue
            # every change in the cluster passes here: the fan-out hands each batch to _take while
            # this task waits, instead of waking it once per event (its work never awaits)
            w.set_sink(self._take)
            try:
                async for ev in w:
                    self._on_events((ev,))
            except WatchClosed:
                pass
            finally:
                w.close()
            await asyncio.sleep(0.05)

    def _take(self, events: Sequence[Event]) -> bool:
        self._on_events(events)
        return True

    def _on_events(self, events: Sequence[Event]) -> None:
        for ev in events:
            if ev.revision > self._rev:  # (a batch a failing sink handed back is not seen twice)
                self._on_event(ev)
                self._rev = ev.revision

    def _on_event(self, ev: Event) -> None:
        key = ev.record.key
        if ev.type == "DELETED":
            uid = self.key_uid.get(key)
            self._untrack(key)
            if uid is not None:
                for dep in list(self.dependents.get(uid, ())):
                    self.queue.put_nowait(("owner-gone", dep))
                # a deleted dependent may unblock a foreground owner
            obj = metadata_view(ev.record)  # only metadata is read here
            for ref in meta_of(obj).get("ownerReferences") or []:
                okey = self.uid_key.get(ref.get("uid", ""))
                if okey is not None:
                    self.queue.put_nowait(("owner-check", okey))
            _, plural, ns, _name = parse_key(key)
            if ns is not None:
                self.queue.put_nowait(("ns-check", f"/registry/core/namespaces/{ns}"))
            return
        obj = self._committed_metadata(ev) or metadata_view(ev.record)
        self._track(key, obj)
        self._consider(key, obj)

    def _committed_metadata(self, ev: Event) -> dict[str, Any] | None:
        """The metadata a create of this process handed to the store, when ``ev`` is that create's
        ADDED event: the same key, and the record carries the object's (random, new) uid."""
        if ev.type != "ADDED":
            return None
        md = self.registry.committing.get(ev.record.key)
        if md is None:
            return None
        uid = md.get("uid")
        if type(uid) is not str or f'"uid":"{uid}"'.encode() not in ev.record.value:
            return None
        return {"metadata": md}

    def _consider(self, key: str, obj: dict[str, Any]) -> None:
        md = meta_of(obj)
        if md.get("ownerReferences"):
            if any(r.get("uid") not in self.uid_key for r in md["ownerReferences"]):
                self.queue.put_nowait(("owner-gone", key))
        if md.get("deletionTimestamp"):
            fins = md.get("finalizers") or []
            if "foregroundDeletion" in fins or "orphan" in fins:
                self.queue.put_nowait(("owner-check", key))
            if key.startswith("/registry/core/namespaces/"):
                self.queue.put_nowait(("ns-check", key))

    # -- actions -------------------------------------------------------------------------------------
    async def _work(self) -> None:
        while True:
            action, key = await self.queue.get()
            try:
                if action == "owner-gone":
                    await self._collect_dependent(key)
                elif action == "owner-check":
                    await self._process_owner(key)
                elif action == "ns-check":
                    await self._process_namespace(key)
            except asyncio.CancelledError:
                raise
            except ApiStatusError as exc:
                if exc.code not in (404, 409):
                    _log.warning("gc action failed", action=action, key=key, error=str(exc))
                elif exc.code == 409:
                    await asyncio.sleep(0.05)
                    self.queue.put_nowait((action, key))
            except Exception:
                _log.exception("gc action failed", action=action, key=key)

    def _info(self, key: str) -> tuple[ResourceInfo, str | None, str] | None:
        group, plural, ns, name = parse_key(key)
        info = self.infos.get((group, plural))
        return (info, ns, name) if info is not None else None

    async def _collect_dependent(self, key: str) -> None:
        rec = self.store.get(key)
        if rec is None:
            return
        obj = rec.obj()
        refs = meta_of(obj).get("ownerReferences") or []
        alive = [r for r in refs if r.get("uid") in self.uid_key]
        gone = [r for r in refs if r.get("uid") not in self.uid_key]
        if not gone:
            return
        parsed = self._info(key)
        if parsed is None:
            return
        info, ns, name = parsed
        if alive:
            obj["metadata"]["ownerReferences"] = [r for r in refs if r.get("uid") in self.uid_key]
            await self.registry.update(info, ns, name, obj, WriteOptions(field_manager=None),
                                       expected_rv=rec.mod_revision, old_rec=rec)
            return
        await self.registry.delete(info, ns, name, {"propagationPolicy": "Background"})

    async def _process_owner(self, key: str) -> None:
        rec = self.store.get(key)
        if rec is None:
            return
        obj = rec.obj()
        md = obj["metadata"]
        fins = list(md.get("finalizers") or [])
        if not md.get("deletionTimestamp"):
            return
        uid = md.get("uid", "")
        deps = list(self.dependents.get(uid, ()))
        parsed = self._info(key)
        if parsed is None:
            return
        info, ns, name = parsed
        if "orphan" in fins:
            for dkey in deps:
                drec = self.store.get(dkey)
                dparsed = self._info(dkey)
                if drec is None or dparsed is None:
                    continue
                dobj = drec.obj()
                dobj["metadata"]["ownerReferences"] = [
                    r for r in dobj["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                if not dobj["metadata"]["ownerReferences"]:
                    del dobj["metadata"]["ownerReferences"]
                await self.registry.update(dparsed[0], dparsed[1], dparsed[2], dobj, WriteOptions(),
                                           expected_rv=drec.mod_revision, old_rec=drec)
            fins.remove("orphan")
        elif "foregroundDeletion" in fins:
            if deps:
                for dkey in deps:
                    dparsed = self._info(dkey)
                    drec = self.store.get(dkey)
                    if dparsed is not None and drec is not None:
                        if not drec.obj()["metadata"].get("deletionTimestamp"):
                            await self.registry.delete(dparsed[0], dparsed[1], dparsed[2],
                                                       {"propagationPolicy": "Foreground"})
                return  # wait for the dependents to disappear; their DELETED events requeue us
            fins.remove("foregroundDeletion")
        else:
            return
        rec = self.store.get(key)
        if rec is None:
            return
        obj = rec.obj()
        obj["metadata"]["finalizers"] = fins
        if not fins:
            del obj["metadata"]["finalizers"]
        await self.registry.update(info, ns, name, obj, WriteOptions(), expected_rv=rec.mod_revision, old_rec=rec)

    async def _process_namespace(self, key: str) -> None:
        rec = self.store.get(key)
        if rec is None:
            return
        ns_obj = rec.obj()
        if not ns_obj["metadata"].get("deletionTimestamp"):
            return
        ns = ns_obj["metadata"]["name"]
        remaining = 0
        for info in self.infos.values():
            if not info.namespaced:
                continue
            prefix = f"/registry/{info.group or 'core'}/{info.plural}/{ns}/"
            recs, _, _ = self.store.list(prefix)
            for r in recs:
                remaining += 1
                md = r.obj()["metadata"]
                if md.get("deletionTimestamp"):
                    continue
                try:
                    await self.registry.delete(info, ns, md["name"], {"propagationPolicy": "Background"})
                except ApiStatusError as exc:
                    if exc.code != 404:
                        raise
        if remaining:
            # re-check once deletions land (DELETED events requeue us too)
            return
        rec = self.store.get(key)
        if rec is None:
            return
        ns_obj = rec.obj()
        spec_fins = [f for f in (ns_obj.get("spec") or {}).get("finalizers") or [] if f != "kubernetes"]
        ns_obj.setdefault("spec", {})["finalizers"] = spec_fins
        if not spec_fins and not ns_obj["metadata"].get("finalizers"):
            await self.store.delete(key, rec.mod_revision)
        else:
            await self.store.update(key, ns_obj, rec.mod_revision)
