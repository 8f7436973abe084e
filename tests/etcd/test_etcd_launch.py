"""How local etcd members are started: their share of the machine's CPUs (``go_env``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from servicenet.store.etcdlaunch import Cluster, go_env


def test_one_member_keeps_go_defaults() -> None:
    assert go_env(1, cpus=2, env={}) == {}


def test_members_sharing_a_machine_split_its_cpus() -> None:
    assert go_env(3, cpus=2, env={}) == {"GOMAXPROCS": "1"}
    assert go_env(2, cpus=2, env={}) == {"GOMAXPROCS": "1"}
    assert go_env(3, cpus=8, env={}) == {"GOMAXPROCS": "2"}
    assert go_env(5, cpus=32, env={}) == {"GOMAXPROCS": "6"}


def test_a_gomaxprocs_set_by_the_caller_wins() -> None:
    assert go_env(3, cpus=2, env={"GOMAXPROCS": "2"}) == {}


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(e.split("=", 1) for e in raw.decode().split("\0") if "=" in e)


def test_started_members_carry_their_share(etcd_members: Callable[..., Cluster]) -> None:
    cluster = etcd_members(3)
    want = go_env(3)
    for m in cluster.members:
        assert m.proc is not None
        env = _environ(m.proc.pid)
        for k, v in want.items():
            assert env.get(k) == v, (m.name, k, env.get(k))
    # and the cluster works with it: every member is healthy
    assert all(m.healthy() for m in cluster.members)
