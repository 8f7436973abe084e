"""The store's gRPC connection to etcd: one channel to one member, the raft leader's first, and a
fresh channel when the leader has moved (which member leads is asked here; the order it gives is
:func:`servicenet.store._etcdaddr.leader_first`).

A member that is not the leader forwards every write it receives to the leader and answers once
its own copy has applied it: on one machine, where the members share the cores, that forwarding
cost etcd 10-15 % more CPU per write (docs/etcd.md, "Which member the API server talks to").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from aetcd import rpc

from ._etcdaddr import grpc_target, leader_first, leads

log = logging.getLogger("servicenet.store")


@dataclass(frozen=True)
class EtcdTLS:
    """Client TLS: the CA that signed etcd's serving certificate, and our client cert and key."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


class Connection:
    """The channel and the stubs every call of the store goes through (``kv``, ``txn`` taking a
    serialized ``TxnRequest``, ``watch``, ``maint``); ``endpoints`` in the order the channel
    tries them (gRPC's pick_first: the first that answers, the next when it breaks)."""

    def __init__(self, endpoints: Sequence[str], tls: EtcdTLS | None, timeout: float) -> None:
        self.endpoints = list(endpoints)
        self.tls = tls
        self.timeout = timeout
        self.channel: grpc.aio.Channel | None = None
        self.kv: Any = None
        self.txn: Any = None
        self.watch: Any = None
        self.maint: Any = None
        self.lease: Any = None
        self.moves = 0  # times a new channel followed the leader to another member
        self._retiring: list[grpc.aio.Channel] = []  # channels moved away from, closing
        self._closers: set[asyncio.Task[None]] = set()

    def open_channel(self, endpoints: Sequence[str] | None = None) -> grpc.aio.Channel:
        target, tls, authority = grpc_target(endpoints or self.endpoints)
        opts = [
            ("grpc.keepalive_time_ms", 6000), ("grpc.keepalive_timeout_ms", 3000),
            ("grpc.keepalive_permit_without_calls", 1), ("grpc.http2.max_pings_without_data", 0),
            ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 8 << 20),
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.default_authority", authority),
            # Only the filters an etcd client needs (no message-size, idle or service-config filters;
            # ~9 % fewer instructions per Txn and watch message, bench.cluster.etcd_instructions);
            # deadlines stay checked (grpc.minimal_stack alone turns that filter off too)
            ("grpc.minimal_stack", 1), ("grpc.enable_deadline_checking", 1),
        ]
        if self.tls is not None or tls:
            t = self.tls or EtcdTLS()
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(t.ca_file), private_key=_read(t.key_file),
                certificate_chain=_read(t.cert_file))
            return grpc.aio.secure_channel(target, creds, options=opts)
        return grpc.aio.insecure_channel(target, options=opts)

    def _bind(self, channel: grpc.aio.Channel) -> None:
        self.channel = channel
        self.kv = rpc.KVStub(channel)
        self.txn = channel.unary_unary(
            "/etcdserverpb.KV/Txn", request_serializer=None, response_deserializer=rpc.TxnResponse.FromString,
            _registered_method=True)
        self.watch = rpc.WatchStub(channel)
        self.maint = rpc.MaintenanceStub(channel)
        self.lease = rpc.LeaseStub(channel)

    async def grant_lease(self, seconds: int) -> int:
        """A new etcd lease of ``seconds``; its id."""
        resp = await self.lease.LeaseGrant(rpc.LeaseGrantRequest(TTL=seconds), timeout=self.timeout)
        return int(resp.ID)

    async def connect(self) -> None:
        """The channel, to the leader first when a member says it leads."""
        await self.leader_first()
        self._bind(self.open_channel())

    async def leader_first(self, timeout: float = 1.0) -> bool:
        """Ask every member (a short-lived channel each) which one leads and order the endpoints
        with it first; a member that does not answer within ``timeout`` counts as not the leader.
        Returns whether one answered that it leads."""
        if len(self.endpoints) < 2:
            return False

        async def status(ep: str) -> tuple[int, int] | None:
            ch = self.open_channel([ep])
            try:
                r = await rpc.MaintenanceStub(ch).Status(rpc.StatusRequest(), timeout=timeout)
                return int(r.header.member_id), int(r.leader)
            except grpc.aio.AioRpcError:
                return None
            finally:
                await ch.close()

        statuses = await asyncio.gather(*(status(e) for e in self.endpoints))
        self.endpoints = leader_first(self.endpoints, statuses)
        return any(leads(st) for st in statuses)

    async def off_leader(self) -> bool:
        """Whether the member the channel is connected to no longer leads and the one that does
        answered (the endpoints are then ordered with it first, for :meth:`move`)."""
        try:
            st = await self.maint.Status(rpc.StatusRequest(), timeout=self.timeout)
        except grpc.aio.AioRpcError:
            return False  # the channel fails over by itself
        if not st.leader or leads((int(st.header.member_id), int(st.leader))):
            return False
        return await self.leader_first()

    def move(self) -> None:
        """Later calls go through a new channel to the endpoints in their order; the old channel
        closes once its calls in flight are done (at most the request timeout)."""
        old = self.channel
        self._bind(self.open_channel())
        self.moves += 1
        log.info("etcd connection moved to the leader at %s", self.endpoints[0])
        if old is not None:
            self._retiring.append(old)
            t = asyncio.create_task(self._retire(old), name="etcd-old-channel")
            self._closers.add(t)
            t.add_done_callback(self._closers.discard)

    async def _retire(self, channel: grpc.aio.Channel) -> None:
        await channel.close(grace=self.timeout)
        self._retiring.remove(channel)

    async def close(self) -> None:
        for t in list(self._closers):
            t.cancel()
        await asyncio.gather(*self._closers, return_exceptions=True)
        for ch in [*self._retiring, *([self.channel] if self.channel is not None else [])]:
            await ch.close()
        self._retiring = []
        self.channel = None


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()
