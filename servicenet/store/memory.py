"""MemoryStore: the same semantics as the durable store, without a log. State dies with the process."""

from __future__ import annotations

from ._base import BaseStore
from ._types import Event, Record


class MemoryStore(BaseStore):
    async def open(self) -> None:
        if not self._is_open:
            await self._start()

    async def close(self) -> None:
        if self._is_open:
            await self._stop()
        self._hub.close_all("store closed")

    async def _commit(self, ev: Event) -> Record:
        self._publish((ev,))
        return ev.record
