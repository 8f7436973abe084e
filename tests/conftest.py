from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from servicenet.store.etcdlaunch import Cluster
from servicenet.testing import RunningApi, running_apiserver

# Tests that bind the loopback plan's fixed addresses on the host (the ``kubernetes`` and ``kube-dns``
# ClusterIPs 127.96.0.1/.10, the userns mode's host ports): under pytest-xdist one worker runs them
# all, one after the other. Mark them ``loopback_vips``; files of another team are listed here by path.
LOOPBACK_VIPS_GROUP = "loopback-vips"
LOOPBACK_VIPS_FILES = ("tests/ingress/test_up_loopback.py", "tests/ingress/test_gateway_up.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Root-only tests fail loudly in CI when not root; locally they are skipped with a reason.
    Tests marked ``loopback_vips`` (or in LOOPBACK_VIPS_FILES) join one xdist group. The files of
    that group and of ``slow`` tests go first (in their order), so that under xdist the long units
    start early and the short tests fill in around them instead of one worker finishing alone."""
    root = config.rootpath
    early: set[Path] = set()
    for item in items:
        rel = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        if item.get_closest_marker("loopback_vips") is not None or rel in LOOPBACK_VIPS_FILES:
            item.add_marker(pytest.mark.xdist_group(LOOPBACK_VIPS_GROUP))
            early.add(item.path)
        if item.get_closest_marker("slow") is not None:
            early.add(item.path)
    # stable sort: the order within each part stays; ``solo`` tests go last, where the other worker
    # waits for short tests to finish rather than for a long one
    items.sort(key=lambda item: 2 if item.get_closest_marker("solo") else int(item.path not in early))
    if os.geteuid() == 0:
        return
    for item in items:
        if item.get_closest_marker("root") is not None and not os.environ.get("CI"):
            item.add_marker(pytest.mark.skip(reason="needs root (network namespaces / kernel rules)"))


SOLO_LOCKS = pytest.StashKey[str]()


def pytest_unconfigure(config: pytest.Config) -> None:
    if SOLO_LOCKS in config.stash:
        shutil.rmtree(config.stash[SOLO_LOCKS], ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist's hook, in the controller: every worker gets the folder of the ``solo`` locks."""
    stash = node.config.stash
    if SOLO_LOCKS not in stash:
        stash[SOLO_LOCKS] = tempfile.mkdtemp(prefix="sn-xdist-")
    node.workerinput["solo_locks"] = stash[SOLO_LOCKS]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Under pytest-xdist, a test marked ``solo`` (it measures latency or load) runs while no other
    worker runs anything: every test holds a shared lock from its setup (module fixtures included)
    to its teardown, a solo test the exclusive one; the gate lock in front makes a waiting solo
    test go before the tests queued after it."""
    folder = getattr(item.config, "workerinput", {}).get("solo_locks")
    if folder is None:
        yield
        return
    solo = item.get_closest_marker("solo") is not None
    with open(os.path.join(folder, "gate"), "a") as gate, open(os.path.join(folder, "rw"), "a") as rw:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(rw, fcntl.LOCK_EX if solo else fcntl.LOCK_SH)
        finally:
            if not solo:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(rw, fcntl.LOCK_UN)
            if solo:
                fcntl.flock(gate, fcntl.LOCK_UN)


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
