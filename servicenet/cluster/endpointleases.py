"""The ``default/kubernetes`` endpoint reconciler of several API servers (upstream's default
``--endpoint-reconciler-type=lease``), run inside each API server.

Every round (default every 10 s) a server renews its own lease (TTL default 15 s), reads all
servers' leases and rewrites the ``kubernetes`` Endpoints to exactly the live addresses (sorted,
one subset, port ``https``) when they differ; it never writes an empty list. It also sets the
Service's ``targetPort`` to that port. On a clean stop it
drops its lease and reconciles once more; a crashed server drops out when its lease expires.

Upstream keeps the leases as TTL'd keys under ``/registry/masterleases/<ip>``; here each is a
``coordination.k8s.io/v1`` Lease ``kube-system/apiserver-endpoint-<ip>`` (label
``servicenet.dev/apiserver-endpoint``, ``holderIdentity`` the address, ``renewTime`` +
``leaseDurationSeconds`` its expiry), so ``kubectl get leases -n kube-system`` shows them. The
selector-less Service's Endpoints are mirrored to its EndpointSlice by the mirroring controller.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from servicenet.api import errors
from servicenet.api.resources import by_plural
from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of
from servicenet.apiserver.registry import WriteOptions, key_for, prefix_for
from servicenet.common import log

_log = log.get("cluster.endpointleases")
LABEL = "servicenet.dev/apiserver-endpoint"
NAMESPACE = "kube-system"
INTERVAL = 10.0  # upstream DefaultEndpointReconcilerInterval
TTL = 15  # upstream DefaultEndpointReconcilerTTL


def lease_name(ip: str) -> str:
    return "apiserver-endpoint-" + ip.replace(".", "-").replace(":", "-")


def _microtime(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(t: str) -> datetime | None:
    with contextlib.suppress(ValueError):
        return datetime.strptime(t, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    with contextlib.suppress(ValueError):
        return datetime.strptime(t, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return None


def live_addresses(leases: list[Obj], now: datetime, exclude: str = "") -> list[str]:
    """The addresses whose endpoint lease has not expired at ``now``, sorted (pure)."""
    out = set()
    for lease in leases:
        if LABEL not in (meta_of(lease).get("labels") or {}):
            continue
        spec = lease.get("spec") or {}
        ip, renewed = spec.get("holderIdentity") or "", _parse(spec.get("renewTime") or "")
        if not ip or ip == exclude or renewed is None:
            continue
        if renewed + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0)) > now:
            out.add(ip)
    return sorted(out)


def subsets(ips: list[str], port: int) -> list[Obj]:
    return [{"addresses": [{"ip": ip} for ip in ips], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]


class EndpointLeaseReconciler:
    name = "endpoint-reconciler"

    def __init__(self, api: Any, ip: str, port: int, interval: float = INTERVAL, ttl: int = TTL) -> None:
        self.api = api
        self.ip, self.port = ip, port
        self.interval, self.ttl = interval, ttl
        self._task: asyncio.Task[None] | None = None
        self._leases = by_plural("coordination.k8s.io", "v1", "leases")
        self._endpoints = by_plural("", "v1", "endpoints")

    async def start(self) -> None:
        await self.round()
        self._task = asyncio.ensure_future(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.round()
            except Exception as exc:  # etcd away or a conflict: the next round tries again
                _log.warning("endpoint reconcile failed", error=repr(exc))

    async def round(self) -> None:
        await self._renew()
        await self.reconcile()

    async def _renew(self) -> None:
        info, reg = self._leases, self.api.registry
        assert info is not None
        name = lease_name(self.ip)
        spec = {"holderIdentity": self.ip, "leaseDurationSeconds": self.ttl,
                "renewTime": _microtime(datetime.now(UTC))}
        rec = self.api.store.get(key_for(info, NAMESPACE, name))
        if rec is None:
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": NAMESPACE, "labels": {LABEL: "true"}},
                    "spec": {**spec, "acquireTime": spec["renewTime"]}}
            try:
                await reg.create(info, NAMESPACE, body, WriteOptions())
            except errors.ApiStatusError as exc:
                if exc.reason != "AlreadyExists":
                    raise
            return
        cur = rec.obj()
        cur["spec"] = {**(cur.get("spec") or {}), **spec}
        await reg.update(info, NAMESPACE, name, cur, WriteOptions())

    async def _repair_service(self) -> None:
        """The ``kubernetes`` Service's targetPort is the port the endpoints serve on (the first API
        server created the Service with its own listening port)."""
        info = by_plural("", "v1", "services")
        assert info is not None
        rec = self.api.store.get(key_for(info, "default", "kubernetes"))
        if rec is None:
            return
        svc = rec.obj()
        ports = (svc.get("spec") or {}).get("ports") or []
        if ports and ports[0].get("targetPort") != self.port:
            ports[0]["targetPort"] = self.port
            await self.api.registry.update(info, "default", "kubernetes", svc, WriteOptions())

    async def reconcile(self, exclude: str = "") -> None:
        """Rewrite the ``kubernetes`` Endpoints to the live addresses (never to none)."""
        assert self._leases is not None and self._endpoints is not None
        if not exclude:
            await self._repair_service()
        recs, _, _ = self.api.store.list(prefix_for(self._leases, NAMESPACE))
        ips = live_addresses([r.obj() for r in recs], datetime.now(UTC), exclude)
        if not ips:
            _log.warning("no live API server endpoint: refusing to erase all endpoints")
            return
        want = subsets(ips, self.port)
        reg, info = self.api.registry, self._endpoints
        rec = self.api.store.get(key_for(info, "default", "kubernetes"))
        if rec is None:
            await reg.create(info, "default", {"metadata": {"name": "kubernetes", "namespace": "default"},
                                               "subsets": want}, WriteOptions())
            return
        cur = rec.obj()
        if cur.get("subsets") == want:
            return
        cur["subsets"] = want
        await reg.update(info, "default", "kubernetes", cur, WriteOptions())
        _log.info("kubernetes endpoints", addresses=",".join(ips))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        with contextlib.suppress(Exception):
            assert self._leases is not None
            await self.api.registry.delete(self._leases, NAMESPACE, lease_name(self.ip), {})
        with contextlib.suppress(Exception):
            await self.reconcile(exclude=self.ip)
