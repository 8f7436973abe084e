"""Helpers shared by the store tests (a uniquely named module, importable from every test file)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from servicenet.store import MemoryStore, SQLiteStore
from servicenet.store.etcd import EtcdStore

# Client URLs of the session's etcd (set by the ``etcd_cluster`` fixture before an etcd store is made).
ETCD_ENDPOINTS: list[str] = []
_seq = [0]


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_store(kind: str, tmp_path: Path, **kwargs: object) -> MemoryStore | SQLiteStore | EtcdStore:
    kwargs.setdefault("compact_interval", 0)
    if kind == "memory":
        return MemoryStore(**kwargs)  # type: ignore[arg-type]
    if kind == "etcd":
        assert ETCD_ENDPOINTS, "the etcd_cluster fixture must run first"
        _seq[0] += 1  # one etcd for the session: each store gets its own key space
        kwargs.setdefault("etcd_compact_interval", 0)
        return EtcdStore(ETCD_ENDPOINTS, prefix=f"/t{_seq[0]}-{tmp_path.name}", **kwargs)  # type: ignore[arg-type]
    return SQLiteStore(str(tmp_path / "store.db"), **kwargs)  # type: ignore[arg-type]


def pod(name: str, ns: str = "default", **extra: object) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns}, **extra}


async def wait_for(cond: Callable[[], bool] | Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Poll ``cond`` until true or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if not isinstance(r, bool):
            r = await r
        if r:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached before the deadline")
        await asyncio.sleep(0.01)
