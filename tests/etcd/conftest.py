"""API server tests on etcd: the ``api`` fixture here is an API server on the session's etcd, each
test under its own key prefix. Tests of tests/apiserver re-collected here run against it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from servicenet.store.etcdlaunch import Cluster
from servicenet.testing import RunningApi, running_apiserver

sys.path.insert(0, str(Path(__file__).parents[1] / "apiserver"))  # to re-use its test functions

_seq = [0]


@pytest.fixture
async def api(tmp_path: Path, etcd_cluster: Cluster) -> AsyncIterator[RunningApi]:
    _seq[0] += 1
    async with running_apiserver(tmp_path, storage="etcd", etcd_servers=etcd_cluster.endpoints,
                                 etcd_prefix=f"/api{_seq[0]}-{tmp_path.name}") as running:
        yield running


@pytest.fixture
async def sqlapi(api: RunningApi) -> AsyncIterator[RunningApi]:
    yield api


@pytest.fixture
def etcd_members(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Starts a private etcd cluster of ``n`` members under ``tmp_path`` (for tests that kill members,
    compact or need TLS: what the session's shared etcd must not see); stopped when the test ends."""
    started: list[Cluster] = []

    def start(n: int, **kw: object) -> Cluster:
        c = Cluster(tmp_path / ("etcd" if not started else f"etcd{len(started)}"), n, **kw)  # type: ignore[arg-type]
        started.append(c)
        return c.start()

    yield start
    for c in started:
        c.stop()
