"""Fixtures for the store tests: every behavioural test runs against every backend (memory,
SQLite, and etcd: a real etcd started once per session on 127.0.0.1 random ports)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import store_helpers
from store_helpers import make_store

from servicenet.store import MemoryStore, SQLiteStore
from servicenet.store.etcdlaunch import Cluster


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("etcd"), 1)
    try:
        cluster.start()
        store_helpers.ETCD_ENDPOINTS[:] = cluster.endpoints
        yield cluster
    finally:
        cluster.stop()
        store_helpers.ETCD_ENDPOINTS.clear()


@pytest.fixture(params=["memory", "sqlite", "etcd"])
def kind(request: pytest.FixtureRequest) -> str:
    if request.param == "etcd":
        request.getfixturevalue("etcd_cluster")
    return str(request.param)


@pytest.fixture
async def store(kind: str, tmp_path: Path) -> AsyncIterator[MemoryStore | SQLiteStore]:
    s = make_store(kind, tmp_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
