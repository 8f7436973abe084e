"""EtcdStore applies its own committed writes from etcd's answer when they directly follow the watch
cache's revision, and skips their watch events later; anything else waits for the watch (no etcd
needed: the store is driven through its cache-side methods)."""

from __future__ import annotations

from aetcd import rpc

from servicenet.store import ADDED, DELETED, MODIFIED, Record
from servicenet.store._plan import encode_at
from servicenet.store.etcd import EtcdStore, _OwnWrite


def _store(revision: int) -> EtcdStore:
    s = EtcdStore(["http://127.0.0.1:1"], compact_interval=0, etcd_compact_interval=0)
    s._index.raise_floor(revision)
    return s


def _rec(key: str, rev: int, crev: int | None = None, data: str = "x") -> Record:
    return Record(key, encode_at({"metadata": {"name": key}, "data": {"d": data}}, rev), crev or rev, rev)


def _own(s: EtcdStore, rec: Record, prev_mod: int = 0, deleted: bool = False) -> None:
    s._own[rec.mod_revision] = _OwnWrite(rec, prev_mod, deleted)


def _put(key: str, value: bytes, mod: int, create: int) -> rpc.Event:
    return rpc.Event(type=rpc.Event.PUT, kv=rpc.KeyValue(key=key.encode(), value=value, mod_revision=mod,
                                                         create_revision=create))


def test_next_revision_is_applied_at_once_and_its_watch_event_skipped() -> None:
    s = _store(10)
    s._is_open = True
    w = s.watch("/registry/", 10)
    rec = _rec("/registry/cm/a", 11)
    _own(s, rec)
    s._apply_own()
    assert s.revision == 11 and s.get("/registry/cm/a") is rec and s.own_applied == 1
    ev = w._buf.popleft()
    assert (ev.type, ev.record, ev.prev) == (ADDED, rec, None)
    # etcd's event for revision 11 arrives later: already applied, nothing is published twice
    s._apply([_put("/registry/cm/a", b'{"other": 1}', 11, 11)])
    assert s.revision == 11 and s.get("/registry/cm/a") is rec and not w._buf


def test_a_gap_waits_for_the_watch_then_the_chain_follows() -> None:
    s = _store(10)
    s._is_open = True
    w = s.watch("/registry/", 10)
    mine = _rec("/registry/cm/b", 12)
    _own(s, mine)
    s._apply_own()
    assert s.revision == 10 and s.own_applied == 0  # revision 11 (someone else's) is not known yet
    other = b'{"metadata":{"name":"o"}}'
    s._apply([_put("/registry/cm/o", other, 11, 11)])  # its watch event: then ours follows at once
    assert s.revision == 12 and s.own_applied == 1
    assert [e.record.mod_revision for e in w._buf] == [11, 12]
    assert w._buf[1].record is mine


def test_update_gets_the_cached_previous_record() -> None:
    s = _store(10)
    s._is_open = True
    first = _rec("/registry/cm/a", 11)
    _own(s, first)
    s._apply_own()
    w = s.watch("/registry/", 11)
    second = _rec("/registry/cm/a", 12, crev=11, data="y")
    _own(s, second, prev_mod=11)
    s._apply_own()
    ev = w._buf.popleft()
    assert (ev.type, ev.record, ev.prev) == (MODIFIED, second, first)
    gone = _rec("/registry/cm/a", 13, crev=11, data="y")
    _own(s, gone, prev_mod=12, deleted=True)
    s._apply_own()
    ev = w._buf.popleft()
    assert (ev.type, ev.record, ev.prev) == (DELETED, gone, second)
    assert s.get("/registry/cm/a") is None and s.revision == 13


def test_a_record_the_cache_contradicts_is_left_to_the_watch() -> None:
    s = _store(10)
    s._is_open = True
    _own(s, _rec("/registry/cm/a", 11))
    s._apply_own()
    _own(s, _rec("/registry/cm/a", 12))  # a create of a key the cache holds: not applied
    s._apply_own()
    _own(s, _rec("/registry/cm/a", 12, crev=11), prev_mod=10)  # an update that replaced another revision
    s._apply_own()
    _own(s, _rec("/registry/cm/b", 12, crev=5), prev_mod=5, deleted=True)  # a delete of a key the cache lacks
    s._apply_own()
    assert s.revision == 11 and s.own_applied == 1


def test_a_put_that_creates_the_key_is_added_as_its_watch_event_would_be() -> None:
    s = _store(10)
    s._is_open = True
    w = s.watch("/registry/", 10)
    rec = _rec("/registry/cm/a", 11)  # an update expecting revision 0 creates the key in etcd
    _own(s, rec, prev_mod=0)
    s._apply_own()
    ev = w._buf.popleft()
    assert (ev.type, ev.record, ev.prev) == (ADDED, rec, None)


def test_not_applied_while_the_cache_is_being_rebuilt() -> None:
    s = _store(10)
    s._resetting = True
    _own(s, _rec("/registry/cm/a", 11))
    s._apply_own()
    assert s.revision == 10 and s.get("/registry/cm/a") is None


def test_applied_writes_leave_nothing_behind() -> None:
    s = _store(10)
    _own(s, _rec("/registry/cm/a", 11))
    _own(s, _rec("/registry/cm/b", 12))
    s._apply_own()
    assert s.revision == 12 and not s._own
    mine = _rec("/registry/cm/a", 13)  # a create of a key the cache holds: left to its watch event
    _own(s, mine)
    s._apply_own()
    assert s.revision == 12 and s._own[13].record is mine
    s._apply([_put("/registry/cm/a", b'{"metadata":{"name":"a"}}', 13, 11)])
    assert s.revision == 13 and not s._own and s.get("/registry/cm/a") is mine


def test_a_followed_put_is_decoded_as_a_listed_key() -> None:
    s = _store(10)
    ev = _put("/registry/cm/c", b'{"kind":"ConfigMap","metadata":{"name":"c"},"data":{"d":"x"}}', 11, 11)
    s._apply([ev])
    assert s.get("/registry/cm/c") == s._decode(ev.kv)
    assert s.get("/registry/cm/c").obj()["metadata"] == {"name": "c", "resourceVersion": "11"}
