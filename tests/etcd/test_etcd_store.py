"""etcd-only store behaviour: the watch cache's start, its rebuild after a compacted-away watch, and
compaction coordinated across API servers through ``compact_rev_key``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from aetcd import rpc

from servicenet.store import Compacted
from servicenet.store.etcd import EtcdStore
from servicenet.store.etcdlaunch import Cluster


@pytest.fixture
def etcd(etcd_members: Callable[..., Cluster]) -> Cluster:
    return etcd_members(1)


async def _caught_up(s: EtcdStore, revision: int) -> None:
    for _ in range(500):
        if s.revision >= revision:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"cache at {s.revision}, not {revision}")


def _store(c: Cluster) -> EtcdStore:
    return EtcdStore(c.endpoints, compact_interval=0, etcd_compact_interval=0)


async def _compacted_at(c: Cluster, revision: int) -> bool:
    async with grpc.aio.insecure_channel(c.endpoints[0].removeprefix("http://")) as ch:
        try:
            await rpc.KVStub(ch).Range(rpc.RangeRequest(key=b"/", range_end=b"0", revision=revision))
            return False
        except grpc.aio.AioRpcError as e:
            assert "compacted" in (e.details() or ""), e.details()
            return True


async def test_history_before_the_cache_started_is_410(etcd: Cluster) -> None:
    a = _store(etcd)
    await a.open()
    r1 = await a.create("/registry/cm/a", {"metadata": {"name": "a"}})
    await a.update("/registry/cm/a", {"metadata": {"name": "a"}, "data": {"x": "1"}})
    b = _store(etcd)
    await b.open()  # a second API server starting later: its history begins at its list revision
    try:
        assert b.get("/registry/cm/a") == a.get("/registry/cm/a")
        assert b.revision == a.revision
        with pytest.raises(Compacted):
            b.watch("/registry/", r1.mod_revision)
        w = a.watch("/registry/", r1.mod_revision)  # the server that saw it still has it
        assert (await w.next(1)).record.mod_revision == r1.mod_revision + 1
    finally:
        await a.close()
        await b.close()


async def test_cache_is_rebuilt_when_its_watch_revision_was_compacted(etcd: Cluster) -> None:
    a, b = _store(etcd), _store(etcd)
    await a.open()
    await b.open()
    try:
        await a.create("/registry/cm/gone", {"metadata": {"name": "gone"}})
        before_cut = a.revision
        client_watch = a.watch("/registry/", before_cut)
        a._watch_task.cancel()  # type: ignore[union-attr]  # cut a's etcd watch: it misses what follows
        await asyncio.gather(a._watch_task, return_exceptions=True)
        await asyncio.sleep(0.2)
        await b.delete("/registry/cm/gone")
        for i in range(5):
            await b.create(f"/registry/cm/c{i}", {"metadata": {"name": f"c{i}"}})
        await b.compact(b.revision)  # the revisions a needs are gone from etcd
        a._watch_task = asyncio.create_task(a._watch_loop())
        for _ in range(200):
            if a.cache_resets:
                break
            await asyncio.sleep(0.05)
        assert a.cache_resets == 1
        assert a.get("/registry/cm/gone") is None
        assert [r.key for r in a.list("/registry/cm/")[0]] == [f"/registry/cm/c{i}" for i in range(5)]
        assert a.revision == b.revision
        # its client watches end; resuming from where they were is 410, so clients re-list (as with
        # the upstream cacher)
        seen = [ev async for ev in client_watch]
        assert seen == [] and "reinitialised" in (client_watch.closed_reason or "")
        with pytest.raises(Compacted):
            a.watch("/registry/", before_cut)
        # and it follows etcd again
        r = await b.create("/registry/cm/after", {"metadata": {"name": "after"}})
        for _ in range(100):
            if a.get("/registry/cm/after") == r:
                break
            await asyncio.sleep(0.02)
        assert a.get("/registry/cm/after") == r
    finally:
        await a.close()
        await b.close()


async def test_periodic_compaction_is_done_by_one_server_per_round(etcd: Cluster) -> None:
    a, b = _store(etcd), _store(etcd)
    await a.open()
    await b.open()
    try:
        for i in range(3):
            await a.create(f"/registry/cm/x{i}", {"metadata": {"name": f"x{i}"}})
        await _caught_up(b, a.revision)  # b's cache has seen a's writes (each records its own revision)
        # round 1: a records its revision; b loses the CAS and compacts nothing
        rev_a, ver_a = await a._compact_tick(0, 0)
        rev_b, ver_b = await b._compact_tick(0, 0)
        assert (ver_a, ver_b) == (1, 1)
        first = rev_a
        assert not await _compacted_at(etcd, first - 1)
        for i in range(3):
            await b.create(f"/registry/cm/y{i}", {"metadata": {"name": f"y{i}"}})
        await _caught_up(a, b.revision)
        # round 2: b's CAS (on the version it learnt) wins; it compacts to the revision it saw one
        # round earlier (rev_b == first); a, still expecting version 1, loses
        rev_b2, ver_b2 = await b._compact_tick(rev_b, ver_b)
        assert ver_b2 == 2
        assert await _compacted_at(etcd, first - 1)
        assert not await _compacted_at(etcd, first)
        _, ver_a2 = await a._compact_tick(rev_a, ver_a)
        assert ver_a2 == 2  # lost the CAS: learnt the current version, compacted nothing more
        assert not await _compacted_at(etcd, rev_b2 - 1)
    finally:
        await a.close()
        await b.close()


async def test_a_foreign_multi_key_transaction_reloads_the_cache(etcd: Cluster) -> None:
    a = _store(etcd)
    await a.open()
    try:
        async with grpc.aio.insecure_channel(etcd.endpoints[0].removeprefix("http://")) as ch:
            put = [rpc.RequestOp(request_put=rpc.PutRequest(key=f"/registry/cm/m{i}".encode(),
                                                            value=b'{"metadata":{"name":"m%d"}}' % i))
                   for i in range(3)]
            resp = await rpc.KVStub(ch).Txn(rpc.TxnRequest(success=put))
        rev = resp.header.revision
        for _ in range(200):
            if a.revision >= rev and len(a.list("/registry/cm/")[0]) == 3:
                break
            await asyncio.sleep(0.02)
        recs = a.list("/registry/cm/")[0]
        assert [(r.key, r.mod_revision) for r in recs] == [(f"/registry/cm/m{i}", rev) for i in range(3)]
        assert a.cache_resets == 1
        r = await a.create("/registry/cm/next", {"metadata": {"name": "next"}})  # and it carries on
        assert a.get("/registry/cm/next") == r
    finally:
        await a.close()


async def test_concurrent_writes_through_two_stores_give_both_caches_one_identical_stream(etcd: Cluster) -> None:
    """Writes applied from etcd's answer (their watch events skipped) and writes followed through the
    watch interleave into one stream: every revision once, in order, with the same records and
    previous records on both servers, and each write's returned record is the cached one."""
    a, b = _store(etcd), _store(etcd)
    await a.open()
    await b.open()
    try:
        start = max(a.revision, b.revision)
        await _caught_up(a, start)
        await _caught_up(b, start)
        wa, wb = a.watch("/registry/", start), b.watch("/registry/", start)

        async def writer(s: EtcdStore, name: str) -> list[int]:
            key = f"/registry/cm/{name}"
            revs = [(await s.create(key, {"metadata": {"name": name}})).mod_revision]
            for i in range(3):
                rec = await s.update(key, {"metadata": {"name": name}, "data": {"i": str(i)}})
                assert s.get(key) == rec  # read-your-writes: the cache holds exactly what was returned
                revs.append(rec.mod_revision)
            gone = await s.delete(key)
            assert s.get(key) is None
            revs.append(gone.mod_revision)
            return revs

        done = await asyncio.gather(*(writer(s, f"{tag}{i}") for i in range(24) for s, tag in ((a, "a"), (b, "b"))))
        revs = sorted(r for rs in done for r in rs)
        assert revs == list(range(start + 1, start + 1 + 24 * 2 * 5))
        await _caught_up(a, revs[-1])
        await _caught_up(b, revs[-1])
        seen = []
        for w in (wa, wb):
            evs = [await w.next(1) for _ in revs]
            assert [e.record.mod_revision for e in evs] == revs and w.pending == 0
            seen.append([(e.type, e.record, e.prev) for e in evs])
        assert seen[0] == seen[1]
        assert a.own_applied + b.own_applied > 0  # most writes skip the wait for their own watch event
    finally:
        await a.close()
        await b.close()
