"""The node's heartbeat Lease (``coordination.k8s.io/v1`` in ``kube-node-lease``), as the kubelet keeps it.

The Lease is named after the node, owned by the Node object, held by the node, lasts
``leaseDurationSeconds`` (upstream 40) and is renewed every quarter of that, plus a random
0-4 % after each renew as the kubelet's lease controller waits (so nodes started together do
not keep renewing together). A failed renew retries with a doubling backoff from 200 ms up to
7 s, then the normal interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from servicenet.api.views import Obj
from servicenet.api.wire import meta as meta_of
from servicenet.client import ApiError
from servicenet.common import log

NAMESPACE = "kube-node-lease"
DEFAULT_DURATION = 40
RENEW_FRACTION = 0.25
JITTER = 0.04  # the kubelet's lease controller: each wait is interval x (1 + up to 4 %)
_log = log.get("node")


def micro_time(t: datetime) -> str:
    """``MicroTime``: RFC 3339 with microseconds."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def renew_wait(interval: float, jitter: float, draw: float) -> float:
    """Seconds to wait after a renew: ``interval`` stretched by ``jitter`` x ``draw`` (``draw`` in [0, 1))."""
    return interval * (1.0 + jitter * draw)


def lease_object(node_name: str, node_uid: str | None, duration: int, now: datetime) -> Obj:
    """A fresh Lease for ``node_name`` (pure)."""
    md: Obj = {"name": node_name, "namespace": NAMESPACE}
    if node_uid:
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}]
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": md,
            "spec": {"holderIdentity": node_name, "leaseDurationSeconds": duration, "renewTime": micro_time(now)}}


def renewed(lease: Obj, node_name: str, node_uid: str | None, duration: int, now: datetime) -> Obj:
    """``lease`` renewed by this node (pure): holder, duration and renewTime set, owner added if missing."""
    out = {**lease, "spec": {**(lease.get("spec") or {}), "holderIdentity": node_name,
                             "leaseDurationSeconds": duration, "renewTime": micro_time(now)}}
    md = dict(meta_of(out))
    if node_uid and not md.get("ownerReferences"):
        md["ownerReferences"] = [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}]
    out["metadata"] = md
    return out


class NodeLease:
    """Keeps ``kube-node-lease/<node>`` renewed until cancelled."""

    def __init__(self, client: Any, node_name: str, *, duration: int = DEFAULT_DURATION,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC), jitter: float = JITTER,
                 draw: Callable[[], float] = random.random) -> None:
        self.client = client
        self.node_name = node_name
        self.duration = duration
        self.interval = duration * RENEW_FRACTION
        self.jitter = jitter
        self._draw = draw
        self._clock = clock
        self._cached: Obj | None = None
        self.renewals = 0

    async def _node_uid(self) -> str | None:
        with contextlib.suppress(ApiError):
            node = await self.client.get("v1", "nodes", None, self.node_name)
            return str(meta_of(node).get("uid") or "") or None
        return None

    async def renew_once(self) -> None:
        """One renew: update the cached Lease, or read/create it when the cache is stale or absent."""
        now = self._clock()
        if self._cached is not None:
            try:
                self._cached = await self.client.update("coordination.k8s.io/v1", "leases", NAMESPACE,
                                                        self.node_name, renewed(self._cached, self.node_name, None,
                                                                                self.duration, now))
                self.renewals += 1
                return
            except ApiError as exc:
                if exc.status not in (404, 409):
                    raise
                self._cached = None
        uid = await self._node_uid()
        try:
            cur = await self.client.get("coordination.k8s.io/v1", "leases", NAMESPACE, self.node_name)
        except ApiError as exc:
            if exc.status != 404:
                raise
            self._cached = await self.client.create("coordination.k8s.io/v1", "leases", NAMESPACE,
                                                    lease_object(self.node_name, uid, self.duration, now))
        else:
            self._cached = await self.client.update("coordination.k8s.io/v1", "leases", NAMESPACE, self.node_name,
                                                    renewed(cur, self.node_name, uid, self.duration, now))
        self.renewals += 1

    async def run(self, first_delay: float = 0.0) -> None:
        """Renew until cancelled; the first renew after ``first_delay`` seconds."""
        if first_delay > 0:
            await asyncio.sleep(first_delay)
        backoff = 0.2
        while True:
            try:
                await self.renew_once()
                backoff = 0.2
                await asyncio.sleep(renew_wait(self.interval, self.jitter, self._draw()))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("node lease renew failed", node=self.node_name, error=repr(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 7.0)
