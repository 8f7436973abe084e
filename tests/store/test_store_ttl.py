"""Keys with a time to live (Events, as upstream's --event-ttl): the pure deadline book-keeping, the
etcd lease reuse, and every backend deleting an expired key (and only it) through a real store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from store_helpers import FakeClock, make_store, pod

from servicenet.store import DELETED, SQLiteStore
from servicenet.store._etcdlease import Leases
from servicenet.store.ttl import Expiry, TTLPolicy

EVENTS = "/registry/core/events/"


def ev_key(name: str) -> str:
    return f"{EVENTS}default/{name}"


def event(name: str, count: int = 1) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": "default"},
            "reason": "Test", "count": count}


# ---------------------------------------------------------------- pure parts
def test_the_policy_gives_a_ttl_by_prefix_only() -> None:
    p = TTLPolicy({EVENTS: 60.0})
    assert p.seconds(ev_key("a")) == 60.0
    assert p.seconds("/registry/core/pods/default/a") is None
    assert p.seconds("/registry/core/eventsx/a") is None
    assert not TTLPolicy() and TTLPolicy({EVENTS: 1})
    with pytest.raises(ValueError):
        TTLPolicy({"/registry/core/events": 60})  # no trailing '/': would match eventsx too
    with pytest.raises(ValueError):
        TTLPolicy({EVENTS: 0})


def test_expiry_gives_each_key_once_at_its_latest_deadline() -> None:
    e = Expiry()
    e.touch("a", 1, 10.0)
    e.touch("b", 2, 12.0)
    e.touch("a", 3, 15.0)  # written again: the deadline of revision 1 no longer counts
    assert e.due(9.9) == []
    assert e.due(12.0) == [("b", 2)]
    assert e.due(14.0) == []
    assert e.due(15.0) == [("a", 3)]
    assert e.due(100.0) == [] and len(e) == 0


def test_a_forgotten_key_is_never_due() -> None:
    e = Expiry()
    e.touch("a", 1, 10.0)
    e.forget("a")
    assert e.due(20.0) == []


async def test_a_lease_is_reused_while_it_outlives_the_ttl_then_replaced() -> None:
    grants: list[int] = []

    async def grant(seconds: int) -> int:
        grants.append(seconds)
        return len(grants)

    clock = FakeClock(0.0)
    leases = Leases(grant, clock=clock)
    assert await leases.lease_for(100) == 1
    assert grants == [105]  # 5 % of the TTL added, so the lease can serve later writes
    clock.now = 4.9
    assert await leases.lease_for(100) == 1  # 104.9 < 105: still keeps a new key 100 s
    clock.now = 5.0
    assert await leases.lease_for(100) == 2  # would keep it only 100 s minus a moment: a new lease
    clock.now = 5.0
    assert await leases.lease_for(7200) == 3 and grants[-1] == 7260  # slack at most a minute


async def test_a_lease_serves_at_most_max_objects_and_concurrent_writes_share_one_grant() -> None:
    grants: list[int] = []

    async def grant(seconds: int) -> int:
        await asyncio.sleep(0.01)
        grants.append(seconds)
        return len(grants)

    leases = Leases(grant, max_objects=3, clock=FakeClock(0.0))
    ids = await asyncio.gather(*(leases.lease_for(60) for _ in range(7)))
    assert ids == [1, 1, 1, 2, 2, 2, 3] and len(grants) == 3


# ---------------------------------------------------------------- every backend
async def _gone(store: object, key: str, timeout: float) -> float:
    t0 = time.monotonic()
    while store.get(key) is not None:  # type: ignore[attr-defined]
        assert time.monotonic() - t0 < timeout, f"{key} still there after {timeout} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


async def test_a_key_with_a_ttl_is_deleted_once_it_runs_out(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, tmp_path, ttl={EVENTS: 2.0})
    await store.open()
    try:
        await store.create("/registry/core/pods/default/p", pod("p"))
        rec = await store.create(ev_key("e1"), event("e1"))
        w = store.watch(EVENTS, rec.mod_revision)
        took = await _gone(store, ev_key("e1"), 15)
        assert took >= 1.0, took  # not before its time (2 s; etcd rounds a lease up)
        ev = await w.next(timeout=5)
        assert ev is not None and ev.type == DELETED and ev.record.key == ev_key("e1")
        assert store.get("/registry/core/pods/default/p") is not None  # no TTL: kept
        w.close()
    finally:
        await store.close()


async def test_a_write_gives_the_key_a_whole_ttl_again(kind: str, tmp_path: Path) -> None:
    store = make_store(kind, tmp_path, ttl={EVENTS: 3.0})
    await store.open()
    try:
        rec = await store.create(ev_key("e2"), event("e2"))
        t0 = time.monotonic()
        await asyncio.sleep(1.5)
        await store.update(ev_key("e2"), event("e2", count=2), rec.mod_revision)
        await asyncio.sleep(max(0.0, t0 + 3.5 - time.monotonic()))  # past the first write's TTL
        assert store.get(ev_key("e2")) is not None
        await _gone(store, ev_key("e2"), 15)
    finally:
        await store.close()


async def test_sqlite_keys_with_a_ttl_expire_after_a_restart_too(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = SQLiteStore(path, ttl={EVENTS: 1.0}, compact_interval=0)
    await store.open()
    await store.create(ev_key("e3"), event("e3"))
    await store.close()
    again = SQLiteStore(path, ttl={EVENTS: 1.0}, compact_interval=0)
    await again.open()
    try:
        assert again.get(ev_key("e3")) is not None  # the restart gives it a whole TTL again
        await _gone(again, ev_key("e3"), 10)
        assert again.expired == 1
    finally:
        await again.close()


async def test_a_write_whose_lease_etcd_lost_fails_cleanly_and_the_next_gets_a_new_lease(
        etcd_cluster: object, tmp_path: Path) -> None:
    import grpc
    from aetcd import rpc
    from store_helpers import ETCD_ENDPOINTS

    from servicenet.store import CommitFailed

    ETCD_ENDPOINTS[:] = etcd_cluster.endpoints  # type: ignore[attr-defined]
    store = make_store("etcd", tmp_path, ttl={EVENTS: 60.0})
    await store.open()
    try:
        await store.create(ev_key("a"), event("a"))
        lease = store._leases._id  # type: ignore[union-attr]
        async with grpc.aio.insecure_channel(ETCD_ENDPOINTS[0].split("://", 1)[-1]) as ch:
            await rpc.LeaseStub(ch).LeaseRevoke(rpc.LeaseRevokeRequest(ID=lease))  # as a restore from backup would
        await _gone(store, ev_key("a"), 10)  # etcd deleted the lease's key; the watch said so
        with pytest.raises(CommitFailed):
            await store.create(ev_key("b"), event("b"))  # still on the revoked lease: refused, nothing applied
        assert store.get(ev_key("b")) is None
        rec = await store.create(ev_key("b"), event("b"))  # a new lease
        assert store.get(ev_key("b")) == rec and store._leases._id != lease  # type: ignore[union-attr]
    finally:
        await store.close()
