from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from servicenet.testing import RunningApi, running_apiserver


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Root-only tests fail loudly in CI when not root; locally they are skipped with a reason."""
    if os.geteuid() == 0:
        return
    for item in items:
        if item.get_closest_marker("root") is not None and not os.environ.get("CI"):
            item.add_marker(pytest.mark.skip(reason="needs root (network namespaces / kernel rules)"))


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[RunningApi]:
    async with running_apiserver(tmp_path) as running:
        yield running
