"""Faults on a 3-member etcd cluster (members on 127.0.0.1, distinct ports): kill -9 of a member
loses no acknowledged write and writes continue; an API server cut off from etcd stops being ready
and fails writes cleanly while another one keeps serving."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from aetcd import rpc

from servicenet.client import ApiError
from servicenet.common.component import bounded
from servicenet.store import StoreError
from servicenet.store.etcd import EtcdStore
from servicenet.store.etcdlaunch import Cluster
from servicenet.testing_cluster import start_api_servers


@pytest.fixture
def three(etcd_members: Callable[..., Cluster]) -> Cluster:
    return etcd_members(3)


async def test_kill9_one_member_loses_no_acknowledged_write(three: Cluster) -> None:
    store = EtcdStore(three.endpoints, compact_interval=0, etcd_compact_interval=0, request_timeout=3)
    await store.open()
    acked: list[str] = []
    failed = 0
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        nonlocal failed
        i = 0
        while not stop.is_set():
            key = f"/registry/configmaps/w{w}/c{i}"
            try:
                await store.create(key, {"metadata": {"name": f"c{i}"}, "data": {"i": str(i)}})
                acked.append(key)
                i += 1
            except StoreError:
                failed += 1  # not acknowledged: the writer moves on to the next key
                i += 1
                await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(writer(w)) for w in range(4)]
    failed_before = 0
    try:
        deadline = time.monotonic() + 30
        while len(acked) < 200:
            assert time.monotonic() < deadline, "no progress before the fault"
            await asyncio.sleep(0.05)
        victim = next(m for m in three.members if m.client_url == store.endpoints[0])
        victim.kill(signal.SIGKILL)  # the member the client is connected to (first address: the leader)
        at_kill, failed_before, t_kill = len(acked), failed, time.monotonic()
        while len(acked) == at_kill:
            assert time.monotonic() < t_kill + 30, "no write acknowledged after the kill"
            await asyncio.sleep(0.01)
        print(f"kill -9 member: first write acknowledged {time.monotonic() - t_kill:.2f}s after the kill")
        deadline = time.monotonic() + 30
        while len(acked) < at_kill + 300:
            assert time.monotonic() < deadline, f"writes did not continue ({len(acked) - at_kill} after the kill)"
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    print(f"kill -9 member: {len(acked)} writes acknowledged, {failed - failed_before} failed (not acknowledged)")
    # every acknowledged write is in the surviving members and in the cache
    check = EtcdStore([m.client_url for m in three.members if m is not victim], compact_interval=0,
                      etcd_compact_interval=0)
    await check.open()
    try:
        missing = [k for k in acked if check.get(k) is None]
        assert missing == [], f"{len(missing)} acknowledged writes lost"
        assert all(store.get(k) is not None for k in acked)
    finally:
        await check.close()
        await store.close()
    # the killed member comes back and catches up
    three.restart(victim)
    back = EtcdStore([victim.client_url], compact_interval=0, etcd_compact_interval=0)
    await back.open()
    try:
        assert [k for k in acked if back.get(k) is None] == []
    finally:
        await back.close()


async def _statuses(endpoints: list[str]) -> dict[str, tuple[int, int]]:
    """(member id, leader id) of each member, by client URL."""
    out = {}
    for ep in endpoints:
        async with grpc.aio.insecure_channel(ep.split("://", 1)[1]) as ch:
            r = await rpc.MaintenanceStub(ch).Status(rpc.StatusRequest(), timeout=5)
            out[ep] = (int(r.header.member_id), int(r.leader))
    return out


async def test_the_store_connects_to_the_leader_first(three: Cluster) -> None:
    """A member that is not the leader forwards every write to it: the store puts the leader's
    address first, whatever the order it was given, and its writes go there."""
    statuses = await _statuses(three.endpoints)
    leader = next(ep for ep, (me, lead) in statuses.items() if me == lead)
    followers_first = [ep for ep in three.endpoints if ep != leader] + [leader]
    store = EtcdStore(followers_first, compact_interval=0, etcd_compact_interval=0)
    await store.open()
    try:
        assert store.endpoints[0] == leader
        assert store.endpoints[1:] == followers_first[:-1]
        await store.create("/registry/configmaps/default/to-leader", {"metadata": {"name": "to-leader"}})
        status = await store.etcd_status()  # asked through the store's own channel
        assert int(status.header.member_id) == statuses[leader][0]
    finally:
        await store.close()


@pytest.mark.parametrize("check_interval", [0.2, 3600.0], ids=["periodic-check", "new-term"])
async def test_the_store_follows_the_leader_when_it_moves(three: Cluster, check_interval: float) -> None:
    """An election moves the leader (etcd's MoveLeader, as a leader that restarts would): the store
    notices (at its next periodic check, or at once from the new raft term in a write's answer:
    with an hour between checks only that can move it within the deadline), moves its connection
    to the new leader, and its writes and its watch cache go on: every acknowledged write is in
    the cache, and the cache's event history holds each revision once, in order."""
    store = EtcdStore(three.endpoints, compact_interval=0, etcd_compact_interval=0,
                      leader_check_interval=check_interval)
    await store.open()
    acked: list[int] = []
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                rec = await store.create(f"/registry/configmaps/move/w{w}-{i}", {"metadata": {"name": f"w{w}-{i}"}})
                acked.append(rec.mod_revision)
            except StoreError:  # etcd drops the proposals in flight when the leader moves: not acknowledged
                await asyncio.sleep(0.01)
            i += 1

    tasks = [asyncio.create_task(writer(w)) for w in range(4)]
    try:
        first = (await store.etcd_status()).header.member_id
        start = store.revision
        while len(acked) < 100:
            await asyncio.sleep(0.01)
        statuses = await _statuses(three.endpoints)
        leader = next(ep for ep, (me, lead) in statuses.items() if me == lead)
        assert statuses[leader][0] == first  # the store started on the leader
        target = next(me for ep, (me, _) in statuses.items() if ep != leader)
        async with grpc.aio.insecure_channel(leader.split("://", 1)[1]) as ch:
            await rpc.MaintenanceStub(ch).MoveLeader(rpc.MoveLeaderRequest(targetID=target), timeout=10)
        deadline = time.monotonic() + 10
        while (await store.etcd_status()).header.member_id != target:
            assert time.monotonic() < deadline, "the store did not follow the leader"
            await asyncio.sleep(0.05)
        assert store.leader_moves == 1
        at_move = len(acked)
        while len(acked) < at_move + 100:  # writes go on through the new leader
            assert time.monotonic() < deadline + 10, "no writes after the move"
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    try:
        assert store.count("/registry/configmaps/move/") >= len(acked)  # (+ writes etcd applied, then failed to answer)
        w = store.watch("/registry/configmaps/move/", start)
        try:
            seen = [(await asyncio.wait_for(anext(w), 5)).revision for _ in range(store.count("/registry/configmaps/move/"))]
        finally:
            w.close()
        assert seen == sorted(set(seen)), "the cache's history repeated or reordered an event across the move"
        assert set(acked) <= set(seen), "an acknowledged write is missing from the cache's history"
    finally:
        await store.close()


async def test_apiserver_partitioned_from_etcd(three: Cluster, tmp_path: Path) -> None:
    # A talks to member 0, B only to member 2; SIGSTOP of member 2 cuts B off while the cluster keeps quorum
    a_srv, b_srv = await start_api_servers(tmp_path, 2, [three.endpoints[:1], three.endpoints[2:]])
    a, b = a_srv.client(), b_srv.client()
    acked: list[str] = []
    try:
        for i in range(5):
            await b.create("v1", "configmaps", "default", {"metadata": {"name": f"before-{i}"}})
            acked.append(f"before-{i}")
        three.members[2].signal(signal.SIGSTOP)
        t0 = time.monotonic()
        await b_srv.wait_ready(20, want=False)
        unready_after = time.monotonic() - t0
        statuses: list[int] = []
        for i in range(3):
            try:
                await bounded(b.create("v1", "configmaps", "default", {"metadata": {"name": f"during-{i}"}}), 20)
                acked.append(f"during-{i}")
            except ApiError as e:
                statuses.append(e.status)
                assert e.body.get("kind") == "Status", e.body
                if e.status == 500:  # the storage's own words, not a Python repr
                    assert e.body["message"].startswith("Internal error occurred: etcd create failed"), e.body
            except TimeoutError:
                statuses.append(0)
        assert statuses and all(s >= 500 or s == 0 for s in statuses), statuses
        # the other server keeps serving reads and writes
        for i in range(5):
            await a.create("v1", "configmaps", "default", {"metadata": {"name": f"via-a-{i}"}})
            acked.append(f"via-a-{i}")
        assert await a_srv.readyz() == 200
        three.members[2].signal(signal.SIGCONT)
        await b_srv.wait_ready(30)
        names = {o["metadata"]["name"] for o in (await a.list("v1", "configmaps", "default"))["items"]}
        assert set(acked) <= names
        # B converges too (its watch resumes where it stopped)
        async def b_has_all() -> bool:
            got = {o["metadata"]["name"] for o in (await b.list("v1", "configmaps", "default"))["items"]}
            return set(acked) <= got
        deadline = time.monotonic() + 20
        while not await b_has_all():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        print(f"partition: /readyz failed {unready_after:.2f}s after the cut; writes through B: {statuses}")
        assert unready_after < 10, unready_after
    finally:
        three.members[2].signal(signal.SIGCONT)
        await a.close()
        await b.close()
        await a_srv.stop()
        await b_srv.stop()
