"""Where the proxy's snapshot comes from: API informers, or a static source for tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from servicenet.api import wellknown as wk
from servicenet.api.views import labels_of, name_of, ns_of
from servicenet.client import InformerFactory

Listener = Callable[[str, dict[str, Any]], None]  # (kind, object) -> None; kind "service"|"slice"|"node"


class SnapshotSource(Protocol):
    def services(self) -> list[dict[str, Any]]: ...

    def slices(self) -> list[dict[str, Any]]: ...

    def node(self) -> dict[str, Any] | None: ...

    def service(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def slices_for(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """The EndpointSlices labelled with this service's name."""
        ...

    def add_listener(self, fn: Listener) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class StaticSource:
    """An in-memory snapshot; ``set()`` replaces it and notifies like an informer would (for
    every object added, changed or removed)."""

    def __init__(self, services: Iterable[dict[str, Any]] = (), slices: Iterable[dict[str, Any]] = (),
                 node: dict[str, Any] | None = None) -> None:
        self._services = list(services)
        self._slices = list(slices)
        self._node = node
        self._listeners: list[Listener] = []

    def services(self) -> list[dict[str, Any]]:
        return self._services

    def slices(self) -> list[dict[str, Any]]:
        return self._slices

    def node(self) -> dict[str, Any] | None:
        return self._node

    def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return next((s for s in self._services if _key(s) == (namespace, name)), None)

    def slices_for(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return [s for s in self._slices if _slice_owner(s) == [f"{namespace}/{name}"]]

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def set(self, services: Iterable[dict[str, Any]] | None = None,
            slices: Iterable[dict[str, Any]] | None = None) -> None:
        if services is not None:
            old, self._services = self._services, list(services)
            for s in [*old, *self._services]:  # (removed ones too, like an informer's DELETED)
                self._notify("service", s)
        if slices is not None:
            old, self._slices = self._slices, list(slices)
            for s in [*old, *self._slices]:
                self._notify("slice", s)

    def _notify(self, kind: str, obj: dict[str, Any]) -> None:
        for fn in self._listeners:
            fn(kind, obj)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    return ns_of(obj), name_of(obj)


def slice_owner(es: dict[str, Any]) -> str:
    """The name of the Service an EndpointSlice belongs to ("" if unlabelled)."""
    return labels_of(es).get(wk.SERVICE_NAME_LABEL) or ""


def _slice_owner(es: dict[str, Any]) -> list[str]:
    owner = slice_owner(es)
    return [f"{ns_of(es)}/{owner}"] if owner else []


class InformerSource:
    """Services, EndpointSlices and this Node through the shared client's informers."""

    def __init__(self, client: Any, node_name: str, factory: Any = None) -> None:
        self.factory = factory or InformerFactory(client)
        self._own_factory = factory is None
        self.node_name = node_name
        self.svc_inf = self.factory.informer("v1", "services")
        self.es_inf = self.factory.informer("discovery.k8s.io/v1", "endpointslices")
        self.node_inf = self.factory.informer("v1", "nodes", field_selector=f"metadata.name={node_name}")
        self._listeners: list[Listener] = []
        self.es_inf.add_index("service", _slice_owner)
        for kind, inf in (("service", self.svc_inf), ("slice", self.es_inf), ("node", self.node_inf)):
            inf.add_handler(lambda _etype, obj, _old, kind=kind: self._notify(kind, obj))

    def _notify(self, kind: str, obj: dict[str, Any]) -> None:
        for fn in self._listeners:
            fn(kind, obj)

    def services(self) -> list[dict[str, Any]]:
        return self.svc_inf.list()

    def slices(self) -> list[dict[str, Any]]:
        return self.es_inf.list()

    def node(self) -> dict[str, Any] | None:
        return self.node_inf.get(None, self.node_name)

    def service(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.svc_inf.get(namespace, name)

    def slices_for(self, namespace: str, name: str) -> list[dict[str, Any]]:
        return self.es_inf.by_index("service", f"{namespace}/{name}")

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    async def start(self) -> None:
        if self._own_factory:
            await self.factory.start()
        else:
            for inf in (self.svc_inf, self.es_inf, self.node_inf):
                await inf.start()
        # the node too: its addresses decide NodePort destinations and the node namespace's routes
        await asyncio.gather(self.svc_inf.wait_synced(), self.es_inf.wait_synced(), self.node_inf.wait_synced())

    async def stop(self) -> None:
        if self._own_factory:
            await self.factory.stop()
