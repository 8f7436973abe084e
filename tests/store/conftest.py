"""Fixtures for the store tests: every behavioural test runs against both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_helpers import make_store

from servicenet.store import MemoryStore, SQLiteStore


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(kind: str, tmp_path: Path) -> AsyncIterator[MemoryStore | SQLiteStore]:
    s = make_store(kind, tmp_path)
    await s.open()
    try:
        yield s
    finally:
        await s.close()
