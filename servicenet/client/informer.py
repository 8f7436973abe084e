"""Informers: list + watch into a local cache with indexes and handlers.

One informer per (apiVersion, plural, namespace, selectors), shared through
:class:`InformerFactory`. The watch resumes from the last seen resourceVersion;
a 410 (Expired/Gone) re-lists and reconciles the cache, emitting the differences.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from servicenet.api.views import meta as meta_of
from servicenet.client.rest import ApiClient, ApiError
from servicenet.common import log
from servicenet.common.component import bounded, cancel_and_wait

Handler = Callable[[str, dict[str, Any], "dict[str, Any] | None"], None]
IndexFn = Callable[[dict[str, Any]], Iterable[str]]

_log = log.get("informer")


BACKOFF_START = 0.2  # seconds before the first reconnect (each delay is jittered by x0.5..1.5)
BACKOFF_CAP = 10.0


def next_backoff(backoff: float) -> float:
    """The reconnect delay after another failed attempt: doubling up to :data:`BACKOFF_CAP`."""
    return min(backoff * 2, BACKOFF_CAP)


def object_key(obj: dict[str, Any]) -> str:
    md = meta_of(obj)
    ns = md.get("namespace") or ""
    return f"{ns}/{md.get('name', '')}" if ns else md.get("name", "")


class Cache:
    """The local store: objects by key plus secondary indexes (pure data structure)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self._index_fns: dict[str, IndexFn] = {}
        self._indexes: dict[str, dict[str, set[str]]] = {}

    def add_index(self, name: str, fn: IndexFn) -> None:
        self._index_fns[name] = fn
        idx: dict[str, set[str]] = {}
        for key, obj in self.items.items():
            for v in fn(obj):
                idx.setdefault(v, set()).add(key)
        self._indexes[name] = idx

    def _unindex(self, key: str, obj: dict[str, Any]) -> None:
        for name, fn in self._index_fns.items():
            idx = self._indexes[name]
            for v in fn(obj):
                s = idx.get(v)
                if s is not None:
                    s.discard(key)
                    if not s:
                        del idx[v]

    def _index(self, key: str, obj: dict[str, Any]) -> None:
        for name, fn in self._index_fns.items():
            idx = self._indexes[name]
            for v in fn(obj):
                idx.setdefault(v, set()).add(key)

    def upsert(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        key = object_key(obj)
        old = self.items.get(key)
        if old is not None:
            self._unindex(key, old)
        self.items[key] = obj
        self._index(key, obj)
        return old

    def remove(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        key = object_key(obj)
        old = self.items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def by_index(self, name: str, value: str) -> list[dict[str, Any]]:
        return [self.items[k] for k in self._indexes[name].get(value, ())]


class Informer:
    def __init__(self, client: ApiClient, api_version: str, plural: str, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None,
                 page_size: int = 500,
                 cache_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.client = client
        self._sleep = sleep  # the one timing seam: tests pass a recorder instead of waiting
        # What the cache keeps of each object (handlers still get the full object). Components
        # that keep their own index (DNS) cache a stub: see ``metadata_stub``.
        self.cache_transform = cache_transform
        self.api_version = api_version
        self.plural = plural
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.page_size = page_size
        self.cache = Cache()
        self.resource_version = ""
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.relists = 0

    # -- read side ----------------------------------------------------------------------------------
    def add_handler(self, fn: Handler) -> None:
        """Register ``fn(event_type, obj, old)``; existing objects are replayed as ADDED."""
        self._handlers.append(fn)
        for obj in list(self.cache.items.values()):
            fn("ADDED", obj, None)

    def add_index(self, name: str, fn: IndexFn) -> None:
        self.cache.add_index(name, fn)

    def by_index(self, name: str, value: str) -> list[dict[str, Any]]:
        return self.cache.by_index(name, value)

    def get(self, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.cache.items.get(f"{namespace}/{name}" if namespace else name)

    def list(self) -> list[dict[str, Any]]:
        return list(self.cache.items.values())

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await bounded(self._synced.wait(), timeout)

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"informer-{self.plural}")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def _cached(self, obj: dict[str, Any]) -> dict[str, Any]:
        return obj if self.cache_transform is None else self.cache_transform(obj)

    def _emit(self, etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        for fn in self._handlers:
            try:
                fn(etype, obj, old)
            except Exception:
                _log.exception("handler failed", resource=self.plural, event=etype)

    async def _relist(self) -> None:
        # Page by page: each page's objects are cached (through the transform) and announced,
        # then dropped, so the peak memory of a relist is one page, not the whole collection.
        seen: set[str] = set()
        rv = ""
        async for res in self.client.list_pages(self.api_version, self.plural, self.namespace,
                                                label_selector=self.label_selector,
                                                field_selector=self.field_selector, page=self.page_size):
            kind = res.get("kind", "")
            for obj in res.get("items") or []:
                if kind.endswith("List") and "kind" not in obj:
                    obj["kind"] = kind[:-4]
                    obj["apiVersion"] = res.get("apiVersion", self.api_version)
                seen.add(object_key(obj))
                old = self.cache.upsert(self._cached(obj))
                if old is None:
                    self._emit("ADDED", obj, None)
                elif meta_of(old).get("resourceVersion") != meta_of(obj).get("resourceVersion"):
                    self._emit("MODIFIED", obj, old)
            rv = meta_of(res).get("resourceVersion", "")
        for key in [k for k in self.cache.items if k not in seen]:
            old = self.cache.items[key]
            self.cache.remove(old)
            self._emit("DELETED", old, None)
        self.relists += 1
        self.resource_version = rv
        self._synced.set()

    async def _run(self) -> None:
        backoff = BACKOFF_START
        need_list = True
        while True:
            try:
                if need_list:
                    await self._relist()
                    need_list = False
                await self._watch_once()
                backoff = BACKOFF_START
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                if exc.status == 410:
                    need_list = True
                    continue
                _log.warning("watch failed", resource=self.plural, error=str(exc))
            except Exception as exc:  # network errors: reconnect with backoff
                _log.debug("watch interrupted", resource=self.plural, error=repr(exc))
            await self._sleep(backoff * (0.5 + random.random()))
            backoff = next_backoff(backoff)

    async def _watch_once(self) -> None:
        timeout = random.randint(300, 600)
        async for ev in self.client.watch(self.api_version, self.plural, self.namespace,
                                          resource_version=self.resource_version,
                                          label_selector=self.label_selector,
                                          field_selector=self.field_selector, timeout_seconds=timeout):
            etype = ev.get("type")
            obj = ev.get("object") or {}
            if etype == "ERROR":
                code = obj.get("code")
                if code == 410:
                    raise ApiError(410, obj)
                raise ApiError(int(code or 500), obj)
            rv = meta_of(obj).get("resourceVersion")
            if etype == "BOOKMARK":
                if rv:
                    self.resource_version = rv
                continue
            if etype in ("ADDED", "MODIFIED"):
                old = self.cache.upsert(self._cached(obj))
                self._emit("ADDED" if old is None else "MODIFIED", obj, old)
            elif etype == "DELETED":
                old = self.cache.remove(obj)
                self._emit("DELETED", obj, old)
            if rv:
                self.resource_version = rv


def metadata_stub(obj: dict[str, Any]) -> dict[str, Any]:
    """A cache transform keeping only identity, labels and resourceVersion."""
    md = meta_of(obj)
    keep = {k: md[k] for k in ("name", "namespace", "resourceVersion", "labels", "uid") if k in md}
    return {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": keep}


def strip_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """A cache transform dropping ``metadata.managedFields`` (as kube-controller-manager's informers
    do since Kubernetes 1.28): controllers never read them, and an update sent without them keeps
    the stored ones. Pod managedFields are about a third of a cached pod's objects."""
    md = obj.get("metadata")
    if type(md) is dict and "managedFields" in md:
        obj = {**obj, "metadata": {k: v for k, v in md.items() if k != "managedFields"}}
    return obj


class InformerFactory:
    """Shares one informer per (apiVersion, plural, namespace, selectors) among components."""

    def __init__(self, client: ApiClient,
                 cache_transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> None:
        self.client = client
        self.cache_transform = cache_transform
        self._informers: dict[tuple[Any, ...], Informer] = {}
        self._started = False

    def informer(self, api_version: str, plural: str, namespace: str | None = None, *,
                 label_selector: str | None = None, field_selector: str | None = None) -> Informer:
        key = (api_version, plural, namespace, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(self.client, api_version, plural, namespace, label_selector=label_selector,
                           field_selector=field_selector, cache_transform=self.cache_transform)
            self._informers[key] = inf
            if self._started:
                asyncio.get_running_loop().create_task(inf.start())
        return inf

    async def start(self) -> None:
        self._started = True
        for inf in self._informers.values():
            await inf.start()

    async def wait_synced(self, timeout: float | None = None) -> None:
        await bounded(asyncio.gather(*(i.wait_synced() for i in self._informers.values())), timeout)

    @property
    def synced(self) -> bool:
        return all(i.synced for i in self._informers.values())

    def cache_stats(self) -> tuple[int, int]:
        """Objects held in all the caches, and the re-lists done so far (every cache's included)."""
        infs = list(self._informers.values())
        return sum(len(i.cache.items) for i in infs), sum(i.relists for i in infs)

    async def stop(self) -> None:
        for inf in self._informers.values():
            await inf.stop()
