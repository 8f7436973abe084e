"""ClusterIP and NodePort allocation shared by every API server on one store (etcd).

Upstream keeps each range's bitmap in one key (``RangeAllocation``) and updates it by
compare-and-swap; API servers serialise on it and nothing lives in one server's memory. Here one
key, ``/registry/ranges/services``, holds every range (the service CIDRs and the NodePort range), so
one CAS covers a Service that takes both an IP and a port. Each range's ``data`` is its bitmap (bit
*i* = offset *i*, as upstream) as a little-endian bit string, zlib-compressed and base64-encoded
(a sparse /12 bitmap is 128 KiB raw, a few hundred bytes compressed).

Every allocation reloads the bitmaps from the store, runs the ordinary allocation logic of
:class:`~servicenet.apiserver.services.ServiceRegistry` on them, and writes them back expecting the
revision it read; on a conflict it reloads and runs again on a fresh copy of the Service. Releases
(undo after a failed write, and deletes) are applied the same way in the background.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import re
import zlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from servicenet.api import errors
from servicenet.api import wellknown as wk
from servicenet.api.allocators import NodePortAllocator, ServiceIPAllocator
from servicenet.api.resources import ResourceInfo
from servicenet.common import log
from servicenet.common.component import cancel_and_wait
from servicenet.store import KeyExists, KeyNotFound, RevisionConflict, StoreError

from .services import ServiceRegistry

RANGES_KEY = "/registry/ranges/services"
_ATTEMPTS = 100
LEAK_ROUNDS = 3  # upstream's numRepairsBeforeLeakCleanup
_log = log.get("apiserver.alloc")
T = TypeVar("T")
Alloc = ServiceIPAllocator | NodePortAllocator


def encode_bitmap(offsets: Iterable[int], size: int) -> str:
    bits = bytearray((size + 7) // 8)
    for o in offsets:
        bits[o >> 3] |= 1 << (o & 7)
    return base64.b64encode(zlib.compress(bytes(bits), 1)).decode()


_NONZERO = re.compile(rb"[^\x00]")


def decode_bitmap(data: str) -> set[int]:
    bits = zlib.decompress(base64.b64decode(data)) if data else b""
    out: set[int] = set()
    for m in _NONZERO.finditer(bits):  # a sparse bitmap: skip the zero bytes at C speed
        i, byte = m.start(), bits[m.start()]
        for j in range(8):
            if byte >> j & 1:
                out.add(i * 8 + j)
    return out


class SharedServiceRegistry(ServiceRegistry):
    def __init__(self, cidrs: list[str], node_port_range: tuple[int, int] = wk.NODE_PORT_RANGE,
                 store: Any = None) -> None:
        super().__init__(cidrs, node_port_range)
        self.store = store
        self._cidrs = list(cidrs)
        self._port_range = node_port_range
        self._background: set[asyncio.Task[None]] = set()
        self.conflicts = 0
        self._decoded: tuple[int, dict[str, frozenset[int]]] = (-1, {})  # (mod_revision, offsets by range)
        self._repair_task: asyncio.Task[None] | None = None
        self._leak_seen: dict[tuple[str, int], int] = {}  # (range, offset) -> consecutive rounds seen leaked

    # -- the bitmaps ---------------------------------------------------------------------------------
    def _ranges(self) -> dict[str, Alloc]:
        out: dict[str, Alloc] = {f"serviceips/{a.cidr}": a for a in self.ip_allocs.values()}
        out[f"servicenodeports/{self.ports.range_string()}"] = self.ports
        return out

    def _fresh(self, rec: Any) -> None:
        """Replace the allocators by ones filled from the stored record (decoded once per revision)."""
        self.ip_allocs = {fam: ServiceIPAllocator(a.cidr) for fam, a in self.ip_allocs.items()}
        base, last = self._port_range
        self.ports = NodePortAllocator(base, last - base + 1)
        rev = rec.mod_revision if rec is not None else 0
        if self._decoded[0] != rev or rec is None:
            stored = (rec.obj().get("ranges") or {}) if rec is not None else {}
            self._decoded = (rev, {name: frozenset(decode_bitmap((stored.get(name) or {}).get("data", "")))
                                   for name in self._ranges()})
        for name, alloc in self._ranges().items():
            for off in self._decoded[1].get(name, frozenset()):
                if off < alloc.size:
                    alloc._band.add(off)

    def _used(self) -> dict[str, frozenset[int]]:
        return {name: frozenset(a._band.used) for name, a in self._ranges().items()}

    def _object(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "RangeAllocation", "metadata": {"name": "services"},
                "ranges": {name: {"range": name.split("/", 1)[1], "data": encode_bitmap(a._band.used, a.size)}
                           for name, a in self._ranges().items()}}

    async def _cas(self, mutate: Callable[[], T]) -> tuple[T, dict[str, frozenset[int]], dict[str, frozenset[int]]]:
        """Run ``mutate`` on the stored bitmaps and write them back by CAS; returns (result, before, after)."""
        for _ in range(_ATTEMPTS):
            rec = self.store.latest(RANGES_KEY)
            self._fresh(rec)
            before = self._used()
            result = mutate()  # raises ApiStatusError for bad requests: nothing is written
            after = self._used()
            if after == before:
                return result, before, after
            try:
                if rec is None:
                    written = await self.store.create(RANGES_KEY, self._object())
                else:
                    written = await self.store.update(RANGES_KEY, self._object(), rec.mod_revision)
                self._decoded = (written.mod_revision, after)  # what we wrote need not be decoded again
                return result, before, after
            except (RevisionConflict, KeyExists, KeyNotFound):
                self.conflicts += 1
                await asyncio.sleep(0)
        raise errors.internal("service IP/port allocation: too much contention, try again")

    async def ensure(self, services: Iterable[dict[str, Any]], repair_interval: float = 180.0) -> None:
        """First server on a fresh store: write the bitmaps from the stored Services. Then start the
        periodic repair (stopped by :meth:`drain`)."""
        if repair_interval > 0 and self._repair_task is None:
            self._repair_task = asyncio.get_running_loop().create_task(self.repair_loop(repair_interval))
        if self.store.latest(RANGES_KEY) is not None:
            return
        self.rebuild(services)
        try:
            await self.store.create(RANGES_KEY, self._object())
        except KeyExists:
            pass

    def _release_diff(self, before: dict[str, frozenset[int]], after: dict[str, frozenset[int]]) -> Callable[[], None]:
        """An undo: give back what this write took, take back what it released."""
        def revert() -> None:
            for name, alloc in self._ranges().items():
                for off in after.get(name, frozenset()) - before.get(name, frozenset()):
                    alloc._band.discard(off)
                for off in before.get(name, frozenset()) - after.get(name, frozenset()):
                    alloc._band.add(off)
        return lambda: self._in_background(revert)

    def _in_background(self, mutate: Callable[[], None]) -> None:
        async def run() -> None:
            try:
                await self._cas(mutate)
            except (errors.ApiStatusError, StoreError) as e:
                _log.warning("allocation release failed; the repair on restart reclaims it", error=str(e))
        task = asyncio.get_running_loop().create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self) -> None:
        """Stop the repair loop and finish the background releases."""
        if self._repair_task is not None:
            await cancel_and_wait(self._repair_task)
            self._repair_task = None
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- repair (as upstream's repair controllers, every 3 min in every API server) ------------------
    def _in_use(self) -> dict[str, set[int]]:
        """Offsets the stored Services hold, per range."""
        tmp = ServiceRegistry(self._cidrs, self._port_range)
        tmp.rebuild(r.obj() for r in self.store.list("/registry/core/services/")[0])
        out: dict[str, set[int]] = {f"serviceips/{a.cidr}": set(a._band.used) for a in tmp.ip_allocs.values()}
        out[f"servicenodeports/{tmp.ports.range_string()}"] = set(tmp.ports._band.used)
        return out

    async def repair_once(self) -> tuple[int, int]:
        """Mark what Services hold but the bitmaps miss; free bits no Service holds once they have
        looked leaked on ``LEAK_ROUNDS`` consecutive rounds (an allocation whose Service is still
        being written looks leaked for a moment). Returns (marked, freed)."""
        in_use = self._in_use()
        self._fresh(self.store.latest(RANGES_KEY))
        leaked = {(name, off) for name, alloc in self._ranges().items()
                  for off in alloc._band.used - in_use.get(name, set())}
        self._leak_seen = {k: self._leak_seen.get(k, 0) + 1 for k in leaked}
        free = {k for k, n in self._leak_seen.items() if n >= LEAK_ROUNDS}
        counts = [0, 0]

        def mutate() -> None:
            counts[:] = [0, 0]
            for name, alloc in self._ranges().items():
                for off in in_use.get(name, set()) - alloc._band.used:
                    if off < alloc.size:
                        alloc._band.add(off)
                        counts[0] += 1
                for off in list(alloc._band.used):
                    if (name, off) in free:
                        alloc._band.discard(off)
                        counts[1] += 1

        await self._cas(mutate)
        for k in free:
            self._leak_seen.pop(k, None)
        if counts != [0, 0]:
            _log.info("allocation repair", marked=counts[0], freed=counts[1])
        return counts[0], counts[1]

    async def repair_loop(self, interval: float = 180.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.repair_once()
            except (errors.ApiStatusError, StoreError) as e:
                _log.warning("allocation repair failed", error=str(e))

    # -- hooks ---------------------------------------------------------------------------------------
    async def before_create(self, info: ResourceInfo, svc: dict[str, Any], old: dict[str, Any] | None
                            ) -> Callable[[], None] | None:
        def attempt() -> dict[str, Any]:
            trial = copy.deepcopy(svc)
            self._assign_ips(trial, None, [])
            self._assign_ports(trial, None, [])
            return trial

        trial, before, after = await self._cas(attempt)
        svc.clear()
        svc.update(trial)
        return self._release_diff(before, after)

    async def before_update(self, info: ResourceInfo, svc: dict[str, Any], old: dict[str, Any] | None
                            ) -> Callable[[], None] | None:
        assert old is not None

        def attempt() -> dict[str, Any]:
            trial = copy.deepcopy(svc)
            later: list[Callable[[], None]] = []
            self._assign_ips(trial, old, [], later)
            self._assign_ports(trial, old, [], later)
            for fn in later:
                fn()
            return trial

        trial, before, after = await self._cas(attempt)
        svc.clear()
        svc.update(trial)
        return self._release_diff(before, after)

    def after_delete(self, info: ResourceInfo, svc: dict[str, Any]) -> None:
        self._in_background(lambda: ServiceRegistry.after_delete(self, info, svc))
