"""Fixtures for the store tests: every behavioural test runs against every backend (memory,
SQLite, and etcd: a real etcd started once per session on 127.0.0.1 random ports)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import store_helpers
from store_helpers import make_store

from servicenet.store import MemoryStore, SQLiteStore


@pytest.fixture(params=["memory", "sqlite", "etcd"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "etcd":
        store_helpers.ETCD_ENDPOINTS[:] = request.getfixturevalue("etcd_cluster").endpoints
    return str(request.param)


@pytest.fixture
async def store(kind: str, tmp_path: Path) -> AsyncIterator[MemoryStore | SQLiteStore]:
    s = make_store(kind, tmp_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
