from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from servicenet.store.etcdlaunch import Cluster
from servicenet.testing import RunningApi, running_apiserver


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Root-only tests fail loudly in CI when not root; locally they are skipped with a reason."""
    if os.geteuid() == 0:
        return
    for item in items:
        if item.get_closest_marker("root") is not None and not os.environ.get("CI"):
            item.add_marker(pytest.mark.skip(reason="needs root (network namespaces / kernel rules)"))


def _host_network() -> str:
    """The host namespace's IPv4 routes, rules and nftables tables: none of ours may land there."""
    out = []
    for argv in (["ip", "-4", "route", "show", "table", "all"], ["ip", "-4", "rule"], ["nft", "list", "tables"]):
        try:
            out.append(subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout)
        except (OSError, subprocess.TimeoutExpired) as e:
            out.append(f"{argv[0]}: {e}")
    return "\n".join(out)


@pytest.fixture(scope="session", autouse=True)
def _host_network_untouched() -> Iterator[None]:
    """Network safety: the whole session leaves the host's routes, rules and tables as it found them."""
    before = _host_network()
    yield
    after = _host_network()
    assert after == before, f"the tests changed the host's network:\n--- before\n{before}\n--- after\n{after}"


@pytest.fixture
async def api(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[RunningApi]:
    """An in-process API server on memory; with SERVICENET_TEST_STORAGE=etcd, on the session's etcd
    (each test under its own key prefix), to run any suite against etcd."""
    if os.environ.get("SERVICENET_TEST_STORAGE") == "etcd":
        cluster = request.getfixturevalue("etcd_cluster")
        async with running_apiserver(tmp_path, storage="etcd", etcd_servers=cluster.endpoints,
                                     etcd_prefix=f"/{tmp_path.parent.name}/{tmp_path.name}") as running:
            yield running
        return
    async with running_apiserver(tmp_path) as running:
        yield running


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One real etcd member on 127.0.0.1 random ports for the session (users give each store or API
    server its own key prefix); stopped and removed at the end."""
    cluster = Cluster(tmp_path_factory.mktemp("etcd"), 1)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
