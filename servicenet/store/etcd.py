"""EtcdStore: etcd v3 underneath, the in-memory index as the API server's watch cache on top.

Mapping (as kube-apiserver's etcd3 storage): a store key ``/registry/...`` is the etcd key (after an
optional ``prefix``), an object's resourceVersion is the key's ``mod_revision``, a create is a
transaction ``If(mod_revision == 0) Then(Put)``, an update or delete ``If(mod_revision == expected)
Then(Put|Delete) Else(Range)``. Values are stored without ``metadata.resourceVersion`` (it is derived
from ``mod_revision`` on every read), wrapped by the encryption-at-rest codec when one is configured.

Reads never go to etcd: one etcd watch over the whole prefix (``prev_kv``, progress notifications)
feeds the :class:`~servicenet.store.index.Index`, whose revision is therefore the revision the cache
has reached; a list's resourceVersion is that revision. A write returns only once the cache has
applied its revision, so a client reads its own writes through the same server; a watch opened on
any server sees writes made through every other one. History the cache no longer holds (older
than its window or than the revision it was started at) is answered with ``Compacted`` (410).

gRPC comes from grpcio with the generated etcd stubs shipped by ``aetcd`` (:mod:`aetcd.rpc`), through one
connection to the raft leader (:mod:`._etcdconn`).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
from aetcd import rpc

from servicenet.common.component import bounded, cancel_and_wait

from . import _etcdwire as wire
from ._base import BaseStore, log
from ._etcdaddr import prefix_end
from ._etcdconn import Connection, EtcdTLS
from ._etcdlease import Leases
from ._plan import reencode_at
from ._types import (
    ADDED,
    DELETED,
    MODIFIED,
    CommitFailed,
    Event,
    KeyExists,
    KeyNotFound,
    Record,
    RevisionConflict,
    StoreError,
)
from .index import Index

_PAGE = 10_000
_CMP = rpc.Compare
_DELETE = rpc.Event.DELETE


def _value_without_rv(obj: dict[str, Any]) -> bytes:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and "resourceVersion" in meta:
        obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}}
    return orjson.dumps(obj)


def _stamp(obj: dict[str, Any], revision: int) -> bytes:
    """What the cache will hold for ``obj`` written at ``revision`` (byte for byte)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta = dict(meta)
        meta.pop("resourceVersion", None)  # the others keep their order; the stamp goes last
    else:
        meta = {}
    meta["resourceVersion"] = str(revision)
    out = dict(obj)
    out["metadata"] = meta
    return memoryview(orjson.dumps(out)).tobytes()  # _tight, inlined (every write)


@dataclass(slots=True)
class _OwnWrite:
    """A write of ours etcd committed: the record it leaves (for a delete: the tombstone record),
    and the mod_revision of the record it replaced (0: the key was absent)."""

    record: Record
    prev_mod: int
    deleted: bool = False


class _NeedsReload(Exception):
    """The watch delivered something the cache cannot apply event by event."""


def _unavailable(e: grpc.aio.AioRpcError, what: str) -> CommitFailed:
    return CommitFailed(f"etcd {what} failed ({e.code().name}): {e.details()}; "
                        "the write may or may not have been applied")


class EtcdStore(BaseStore):
    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        prefix: str = "",
        tls: EtcdTLS | None = None,
        codec: Any = None,
        request_timeout: float = 5.0,
        progress_interval: float = 1.0,
        etcd_compact_interval: float = 300.0,
        max_inflight: int = 256,
        leader_check_interval: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not endpoints:
            raise ValueError("at least one etcd endpoint is needed")
        self._conn = Connection(endpoints, tls, request_timeout)
        self.prefix = prefix
        self._pfx = prefix.encode()
        self.codec = codec
        self._timeout = request_timeout
        self._progress_interval = progress_interval
        self._etcd_compact_interval = etcd_compact_interval
        self._leader_check_interval = leader_check_interval
        self._term = 0  # the raft term of etcd's last answer: a higher one means an election
        self._election = asyncio.Event()  # set then: check where the leader is now, not at the next round
        self._tasks: list[asyncio.Task[None]] = []
        self._watch_task: asyncio.Task[None] | None = None
        # (revision, seq, future, deadline): writers waiting for the cache to reach their revision
        self._waiters: list[tuple[int, int, asyncio.Future[None], float]] = []
        self._seq = 0
        self._last_response = 0.0
        self._watching = False
        self.cache_resets = 0
        # revision -> record of a write of ours the cache has not applied yet: applied straight from
        # etcd's answer once the cache reaches the revision before it, else by its watch event
        self._own: dict[int, _OwnWrite] = {}
        self._resetting = False
        self.own_applied = 0  # writes of ours applied from their answer (their watch events are skipped)
        # In-flight transactions: more would only queue inside etcd and run into their deadlines.
        self._inflight = asyncio.Semaphore(max_inflight)
        self._leases = Leases(self._conn.grant_lease) if self.ttl else None  # keys with a TTL (Events)

    def _expires_locally(self) -> bool:
        return False  # etcd deletes a key when its lease runs out; the watch brings the deletion

    # ---------------------------------------------------------------- lifecycle
    @property
    def endpoints(self) -> list[str]:
        """The etcd client URLs, in the order the connection tries them (the leader's first)."""
        return self._conn.endpoints

    @property
    def leader_moves(self) -> int:
        """Times the connection followed the leader to another member."""
        return self._conn.moves

    async def _follow_leader(self) -> None:
        """Every ``leader_check_interval`` seconds, and at once when a write's answer shows a new
        raft term (an election): when the member the connection is on no longer leads, move to the
        one that does. Writes in flight finish on the old channel; the watch restarts on the new
        one from the revision the cache has reached, so no event is lost or applied twice."""
        while True:
            with contextlib.suppress(TimeoutError):
                await bounded(self._election.wait(), self._leader_check_interval)
            self._election.clear()
            try:
                moved = await self._conn.off_leader()
            except Exception:  # checked again next round; the connection itself keeps working
                log.exception("etcd leader check failed")
                continue
            if moved:
                await cancel_and_wait(self._watch_task)
                self._conn.move()
                self._watch_task = asyncio.create_task(self._watch_loop(), name="etcd-watch")

    async def open(self) -> None:
        if self._is_open:
            return
        await self._conn.connect()
        try:
            await self._load()
        except BaseException as e:
            await self._conn.close()
            if isinstance(e, grpc.aio.AioRpcError):
                raise StoreError(f"cannot read from etcd at {','.join(self.endpoints)} "
                                 f"({e.code().name}): {e.details()}") from None
            raise
        await self._start()
        self._watch_task = asyncio.create_task(self._watch_loop(), name="etcd-watch")
        self._tasks = [asyncio.create_task(self._expire_waiters(), name="etcd-write-deadlines")]
        if self._leader_check_interval > 0 and len(self.endpoints) > 1:
            self._tasks.append(asyncio.create_task(self._follow_leader(), name="etcd-follow-leader"))
        if self._etcd_compact_interval > 0:
            self._tasks.append(asyncio.create_task(self._etcd_compactor(), name="etcd-compactor"))

    async def close(self) -> None:
        was_open = self._is_open
        await self._stop()
        for t in [*self._tasks, self._watch_task]:
            await cancel_and_wait(t)
        self._tasks = []
        self._watch_task = None
        for _, _, fut, _ in self._waiters:
            if not fut.done():
                fut.set_exception(CommitFailed("store closed before the watch cache caught up"))
                fut.exception()  # retrieved: its writer may have been cancelled already
        self._waiters = []
        await self._conn.close()
        if was_open:
            self._hub.close_all("store closed")

    def ready(self) -> tuple[bool, str]:
        """Readiness: the watch stream is up and etcd answered within three progress intervals."""
        if not self._is_open:
            return False, "store not open"
        if not self._watching:
            return False, "etcd watch not established"
        age = time.monotonic() - self._last_response
        if age > 3 * self._progress_interval + 1:
            return False, f"etcd has not answered for {age:.1f}s"
        return True, "ok"

    # -------------------------------------------------------------- the cache
    def _key(self, key: str) -> bytes:
        return self._pfx + key.encode()

    def _decode(self, kv: Any) -> Record:
        key = kv.key[len(self._pfx):].decode()
        raw = kv.value
        if self.codec is not None:
            raw = self.codec.decode(key, raw)
        return Record(key, reencode_at(raw, kv.mod_revision), kv.create_revision, kv.mod_revision)

    async def _range_all(self) -> tuple[list[Record], int]:
        start, end = self._pfx + b"/", prefix_end(self._pfx + b"/")
        out: list[Record] = []
        revision = 0
        while True:
            resp = await self._conn.kv.Range(
                rpc.RangeRequest(key=start, range_end=end, limit=_PAGE, revision=revision), timeout=self._timeout)
            if revision == 0:
                revision = resp.header.revision
            out.extend(self._decode(kv) for kv in resp.kvs)
            if not resp.more or not resp.kvs:
                return out, revision
            start = resp.kvs[-1].key + b"\0"

    async def _load(self) -> None:
        records, revision = await self._range_all()
        self._index.seed(records, revision)
        self._last_response = time.monotonic()

    async def _reset_cache(self, reason: str) -> None:
        """The watch cannot resume (history compacted away): rebuild the cache from a fresh list and
        end every watch, as the API server's cacher does; clients re-list."""
        log.warning("etcd watch cache reset: %s", reason)
        self._resetting = True  # our writes wait for the fresh cache, not the one being replaced
        try:
            records, revision = await self._range_all()
        finally:
            self._resetting = False
        old = self._index
        fresh = Index(history_seconds=old.history_seconds, min_history=old.min_history,
                      max_history=old.max_history)
        fresh.seed(records, revision)
        self._index = fresh  # readers switch from the old state to the new one at once
        self._own.clear()
        self._hub.close_all(f"watch cache reinitialised: {reason}")
        self.cache_resets += 1
        self._wake_waiters()

    async def _watch_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._watch_once()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as e:
                log.warning("etcd watch stream failed (%s): %s", e.code().name, e.details())
            except Exception:
                log.exception("etcd watch stream failed")
            self._watching = False
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _watch_once(self) -> None:
        start = self._pfx + b"/"
        call = self._conn.watch.Watch()
        ticker: asyncio.Task[None] | None = None
        try:
            await call.write(rpc.WatchRequest(create_request=rpc.WatchCreateRequest(
                key=start, range_end=prefix_end(start), start_revision=self._index.revision + 1,
                progress_notify=True, prev_kv=True)))
            ticker = asyncio.create_task(self._request_progress(call))
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    return
                self._last_response = time.monotonic()
                events = resp.events
                if events:  # the usual message; created, canceled and progress answers carry none
                    try:
                        self._apply(events)
                    except _NeedsReload as e:
                        await self._reset_cache(str(e))
                        return
                    continue
                if resp.created:
                    self._watching = True
                if resp.canceled:
                    self._watching = False
                    if resp.compact_revision:
                        await self._reset_cache(f"revision {self._index.revision + 1} compacted in etcd "
                                                f"(compact revision {resp.compact_revision})")
                    return
        finally:
            await cancel_and_wait(ticker)
            call.cancel()

    async def _request_progress(self, call: Any) -> None:
        """A heartbeat on the watch stream: etcd answers with a progress notification, which proves
        the member is reachable and serving (readiness)."""
        while True:
            await asyncio.sleep(self._progress_interval)
            await call.write(rpc.WatchRequest(progress_request=rpc.WatchProgressRequest()))

    def _apply(self, etcd_events: Sequence[Any]) -> None:
        """Apply the events of one watch message (every server runs this for every write in the
        cluster, so it reads each field of etcd's message once and calls as little as it can)."""
        index = self._index
        out: list[Event] = []
        last = index.revision
        own = self._own
        codec = self.codec
        cut = len(self._pfx)
        for e in etcd_events:
            kv = e.kv
            rev = kv.mod_revision
            if rev <= last:
                if rev == last and out:
                    # another etcd client wrote several keys in one transaction: the cache holds one
                    # event per revision (as kube-apiserver writes), so it reloads instead
                    self._publish(out)
                    index.raise_floor(last)
                    self._wake_waiters()
                    raise _NeedsReload(f"several keys changed in revision {last}")
                continue  # already applied (a replay after reconnect, or our own write)
            key = kv.key[cut:].decode()
            prev = index.get(key)
            if e.type == _DELETE:
                if prev is None and e.prev_kv.mod_revision:
                    prev = self._decode(e.prev_kv)
                if prev is None:
                    last = rev
                    continue
                rec = Record(key, reencode_at(prev.value, rev), prev.create_revision, rev)
                out.append(Event(DELETED, rec, prev))
            else:
                created = kv.create_revision
                # a put that created the key (created == rev) has no previous version to look up
                if prev is None and created != rev and e.prev_kv.mod_revision:
                    prev = self._decode(e.prev_kv)
                w = own.pop(rev, None) if own else None
                if w is not None and not w.deleted and w.record.key == key:
                    rec = w.record
                else:
                    raw = kv.value
                    if codec is not None:
                        raw = codec.decode(key, raw)
                    rec = Record(key, reencode_at(raw, rev), created, rev)
                out.append(Event(ADDED if created == rev else MODIFIED, rec, prev))
            last = rev
        if out:
            self._publish(out)
        if last > index.revision:
            index.raise_floor(last)
        if own:
            self._apply_own()
        if self._waiters:
            self._wake_waiters()

    def _apply_own(self) -> None:
        """Apply our own committed writes that follow the cache's revision directly, without their
        watch events (which are then skipped as already applied). Exact: with the cache at revision
        r - 1, every change before ours is in it, so the previous record and the event type are
        known; a record the cache contradicts is left to its watch event."""
        own = self._own
        if not own or self._resetting:
            return
        index = self._index
        while True:
            w = own.pop(index.revision + 1, None)
            if w is None:
                return
            rec = w.record
            prev = index.get(rec.key)
            if (prev.mod_revision if prev is not None else 0) != w.prev_mod:
                own[rec.mod_revision] = w  # left to its watch event
                return
            # the event type as the watch event would give it (a put creating the key is ADDED)
            kind = DELETED if w.deleted else ADDED if rec.create_revision == rec.mod_revision else MODIFIED
            self._publish([Event(kind, rec, prev)])
            self.own_applied += 1

    def _wake_waiters(self) -> None:
        rev = self._index.revision
        w = self._waiters
        while w and w[0][0] <= rev:
            fut = heapq.heappop(w)[2]
            if not fut.done():
                fut.set_result(None)

    async def _caught_up(self, revision: int) -> None:
        """Wait until the watch cache has applied ``revision`` (read-your-writes on this server).
        No timer per write: :meth:`_expire_waiters` fails those left waiting past their deadline."""
        if self._index.revision >= revision:
            return
        fut = asyncio.get_running_loop().create_future()
        self._seq += 1
        heapq.heappush(self._waiters, (revision, self._seq, fut, time.monotonic() + self._timeout))
        await fut

    def _expire(self, now: float) -> None:
        for revision, _, fut, deadline in self._waiters:
            if deadline <= now and not fut.done():
                fut.set_exception(CommitFailed(f"write committed at revision {revision}, but the watch cache "
                                               f"did not reach it within {self._timeout}s"))
        if any(f.done() for _, _, f, _ in self._waiters):
            self._waiters = [w for w in self._waiters if not w[2].done()]
            heapq.heapify(self._waiters)

    async def _expire_waiters(self) -> None:
        tick = min(0.25, self._timeout / 4)
        while True:
            await asyncio.sleep(tick)
            self._expire(time.monotonic())

    # ------------------------------------------------------------------- writes
    async def _written(self, rec: Record, prev_mod: int, deleted: bool = False) -> Record:
        """Have the cache apply our own write: at once when it directly follows the cache's revision
        (:meth:`_apply_own`), else when its watch event comes, which then reuses ``rec`` (already
        encoded with its resourceVersion) instead of decoding etcd's copy again."""
        rev = rec.mod_revision
        if rev <= self._index.revision:
            return rec
        self._own[rev] = _OwnWrite(rec, prev_mod, deleted)
        self._apply_own()
        if self._waiters:
            self._wake_waiters()
        if self._index.revision >= rev:  # applied from the answer (the usual case): nothing to wait for
            return rec
        try:
            await self._caught_up(rev)
        finally:
            self._own.pop(rev, None)
        return rec

    def _encode(self, key: str, obj: dict[str, Any]) -> bytes:
        raw = _value_without_rv(obj)
        return self.codec.encode(key, raw) if self.codec is not None else raw

    async def _txn(self, req: bytes, what: str) -> Any:
        try:
            async with self._inflight:
                resp = await self._conn.txn(req, timeout=self._timeout)
        except grpc.aio.AioRpcError as e:
            if e.code() == grpc.StatusCode.NOT_FOUND and self._leases is not None:
                self._leases.forget()  # "requested lease not found": nothing applied; the next write gets a new one
            raise _unavailable(e, what) from None
        term = resp.header.raft_term
        if term > self._term:
            if self._term:
                self._election.set()
            self._term = term
        return resp

    async def _lease_of(self, key: str) -> int:
        if self._leases is None or (ttl := self.ttl.seconds(key)) is None:
            return 0
        try:
            return await self._leases.lease_for(ttl)
        except grpc.aio.AioRpcError as e:
            raise CommitFailed(f"etcd lease grant failed ({e.code().name}): {e.details()}") from None

    async def create(self, key: str, obj: dict[str, Any]) -> Record:
        self._check_open()
        k = self._key(key)
        op = wire.put_op(k, self._encode(key, obj), lease=await self._lease_of(key))
        resp = await self._txn(wire.txn_if_mod(k, 0, op), "create")
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            if kvs:
                await self._caught_up(kvs[0].mod_revision)
            raise KeyExists(key)
        rev = resp.header.revision
        return await self._written(Record(key, _stamp(obj, rev), rev, rev), 0)

    async def _current(self, key: str, expected: int | None) -> int:
        if expected is not None:
            return expected
        rec = self.latest(key)
        if rec is not None:
            return rec.mod_revision
        try:
            resp = await self._conn.kv.Range(rpc.RangeRequest(key=self._key(key)), timeout=self._timeout)
        except grpc.aio.AioRpcError as e:
            raise _unavailable(e, "read") from None
        if not resp.kvs:
            raise KeyNotFound(key)
        return int(resp.kvs[0].mod_revision)

    async def _guarded(self, key: str, expected: int | None, op: bytes, what: str) -> tuple[Any, Any]:
        """Run ``op`` if the key's mod_revision is the expected one (or, with ``expected`` None, the
        newest one, retrying on races). Returns (txn response, the op's response)."""
        k = self._key(key)
        while True:
            want = await self._current(key, expected)
            resp = await self._txn(wire.txn_if_mod(k, want, op), what)
            if resp.succeeded:
                return resp, resp.responses[0]
            kvs = resp.responses[0].response_range.kvs
            if not kvs:
                raise KeyNotFound(key)
            actual = int(kvs[0].mod_revision)
            await self._caught_up(actual)  # the cache shows what beat us before the caller retries
            if expected is not None:
                raise RevisionConflict(key, expected, actual)

    async def update(self, key: str, obj: dict[str, Any], expected_mod_revision: int | None = None) -> Record:
        self._check_open()
        op = wire.put_op(self._key(key), self._encode(key, obj), prev_kv=True, lease=await self._lease_of(key))
        resp, r = await self._guarded(key, expected_mod_revision, op, "update")
        rev = resp.header.revision
        was = r.response_put.prev_kv
        return await self._written(Record(key, _stamp(obj, rev), was.create_revision or rev, rev), was.mod_revision)

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> Record:
        self._check_open()
        op = wire.delete_op(self._key(key))
        resp, r = await self._guarded(key, expected_mod_revision, op, "delete")
        rev = resp.header.revision
        prev_kvs = r.response_delete_range.prev_kvs
        if not prev_kvs:
            raise KeyNotFound(key)
        prev = self._decode(prev_kvs[0])
        return await self._written(Record(key, reencode_at(prev.value, rev), prev.create_revision, rev),
                                   prev.mod_revision, deleted=True)

    # --------------------------------------------------------------- compaction
    async def compact(self, revision: int) -> None:
        """Compact etcd and the cache at ``revision`` (explicit; the periodic one is below)."""
        self._check_open()
        revision = min(revision, self._index.revision)
        try:
            await self._conn.kv.Compact(rpc.CompactionRequest(revision=revision, physical=True), timeout=self._timeout)
        except grpc.aio.AioRpcError as e:
            if "compacted" not in (e.details() or ""):
                raise CommitFailed(f"etcd compaction failed: {e.details()}") from None
        self._index.compact(revision)

    async def _compact_tick(self, last_rev: int, version: int) -> tuple[int, int]:
        """One round of the cluster-wide compaction (as kube-apiserver): whoever advances the
        ``compact_rev_key`` version by CAS compacts etcd to the revision recorded one round earlier.
        Returns the new (recorded revision, expected version)."""
        key = b"compact_rev_key"
        resp = await self._conn.kv.Txn(rpc.TxnRequest(
            compare=[_CMP(key=key, target=_CMP.VERSION, result=_CMP.EQUAL, version=version)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=b"%d" % self._index.revision))],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))]), timeout=self._timeout)
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs  # another server compacts this round
            return self._index.revision, (int(kvs[0].version) if kvs else 0)
        if last_rev > 0:
            try:
                await self._conn.kv.Compact(rpc.CompactionRequest(revision=last_rev), timeout=self._timeout)
                log.info("etcd compacted to revision %d", last_rev)
            except grpc.aio.AioRpcError as e:
                log.info("etcd compaction to %d skipped: %s", last_rev, e.details())
        return self._index.revision, version + 1

    async def _etcd_compactor(self) -> None:
        last_rev, version = 0, 0
        while True:
            await asyncio.sleep(self._etcd_compact_interval)
            try:
                last_rev, version = await self._compact_tick(last_rev, version)
            except grpc.aio.AioRpcError as e:
                log.warning("etcd compaction round failed: %s", e.details())

    async def etcd_status(self) -> Any:
        return await self._conn.maint.Status(rpc.StatusRequest(), timeout=self._timeout)

