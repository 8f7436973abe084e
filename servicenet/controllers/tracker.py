"""The controller manager's views of its informer caches: the writes a controller made that its
cache has not shown yet (:class:`WriteTracker`), and the Node cache as a mapping (:class:`NodeMap`)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping

from servicenet.client import Informer

from .actions import Obj, meta, name_of, rv_int

__all__ = ["TRACK_TIMEOUT", "NodeMap", "WriteTracker"]

TRACK_TIMEOUT = 30.0


class WriteTracker:
    """Writes a controller made that its informer cache has not shown yet, per reconciled key."""

    def __init__(self) -> None:
        self._pending: dict[str, list[tuple[Informer, str, str, int]]] = {}
        self._since: dict[str, float] = {}

    def expect(self, key: str, inf: Informer, ns: str, name: str, rv: int) -> None:
        """``rv`` > 0: the cache must show ``name`` at that revision or later; 0: must not show it."""
        self._pending.setdefault(key, []).append((inf, ns, name, rv))
        self._since.setdefault(key, time.monotonic())

    def stale(self, key: str) -> bool:
        entries = self._pending.get(key)
        if not entries:
            return False
        left = []
        for inf, ns, name, rv in entries:
            cur = inf.get(ns, name)
            if rv == 0:
                if cur is not None and not meta(cur).get("deletionTimestamp"):
                    left.append((inf, ns, name, rv))
            elif cur is None or rv_int(cur) < rv:
                left.append((inf, ns, name, rv))
        if not left or time.monotonic() - self._since[key] > TRACK_TIMEOUT:
            self._pending.pop(key, None)
            self._since.pop(key, None)
            return False
        self._pending[key] = left
        return True


class NodeMap(Mapping[str, Obj]):
    def __init__(self, inf: Informer) -> None:
        self._inf = inf

    def __getitem__(self, name: str) -> Obj:
        n = self._inf.get("", name)
        if n is None:
            raise KeyError(name)
        return n

    def __iter__(self) -> Iterator[str]:
        return iter([name_of(n) for n in self._inf.list()])

    def __len__(self) -> int:
        return len(self._inf.list())
