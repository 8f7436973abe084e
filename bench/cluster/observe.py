"""What each node serves, observed from outside: its DNS answer and its proxy's kernel rules.

- :class:`DnsProbe` asks a node's DNS server (UDP on 127.0.0.1) for a name's A records.
- :class:`NftMonitor` runs ``nft monitor`` in a node's network namespace: the kernel reports every
  ruleset change as it is committed, so a change is seen when it is in effect, without polling.

:func:`summary`, :func:`element_line_has` and :func:`a_addresses` are pure (tests/bench/test_cluster_pure.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, TypeVar

import dns.message
import dns.rdatatype

from servicenet.common.component import cancel_all


def pct(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (``nan`` for no samples)."""
    if not xs:
        return math.nan
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def summary(samples_s: list[float]) -> dict[str, Any]:
    """p50/p99/max in milliseconds and the count."""
    return {"n": len(samples_s), "p50_ms": round(pct(samples_s, 50) * 1e3, 2),
            "p99_ms": round(pct(samples_s, 99) * 1e3, 2),
            "max_ms": round(max(samples_s) * 1e3, 2) if samples_s else math.nan}


def element_line_has(line: str, ip: str, verb: str) -> bool:
    """``nft monitor`` line ``verb``-ing a map/set element that holds ``ip`` (a whole address, not
    a prefix of another: 10.64.0.2 must not match 10.64.0.23)."""
    if not line.startswith(verb + " element"):
        return False
    return re.search(r"(?<![\d.])" + re.escape(ip) + r"(?![\d])", line) is not None



T = TypeVar("T")

async def first_after(timeline: list[tuple[float, T]], changed: asyncio.Event, match: Callable[[T], bool],
                      since: float, timeout: float) -> float | None:
    """The time of the first entry of ``timeline`` (appended to, with ``changed`` set, as events
    arrive) at or after ``since`` that ``match``es; None after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        for t, item in timeline[seen:]:
            if t >= since and match(item):
                return t
        seen = len(timeline)
        changed.clear()
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), left)

def a_query(name: str, qid: int) -> bytes:
    """The wire form of an A query for ``name`` with id ``qid``, recursion not wanted (the cluster
    zone is authoritative)."""
    q = dns.message.make_query(name, dns.rdatatype.A, id=qid)
    q.flags &= ~0x0100
    return q.to_wire()


def _skip_name(wire: bytes, at: int) -> int:
    """The offset just past the (possibly compressed) domain name at ``at``."""
    while True:
        n = wire[at]
        if n == 0:
            return at + 1
        if n & 0xC0 == 0xC0:  # a pointer ends the name
            return at + 2
        at += 1 + n


def a_addresses(wire: bytes, qid: int) -> set[str] | None:
    """The IPv4 addresses of the A records in the answer section of the DNS response ``wire``;
    None when it is not the answer to query ``qid``. A few microseconds, against ~0.4 ms for
    dnspython's full parse: the probe asks every 2 ms on every node while a flip is measured,
    on the same two cores as the system under test."""
    rid, flags, qd, an = struct.unpack_from("!HHHH", wire)
    if rid != qid or not flags & 0x8000:
        return None
    at = 12
    for _ in range(qd):
        at = _skip_name(wire, at) + 4
    out: set[str] = set()
    for _ in range(an):
        at = _skip_name(wire, at)
        rtype, _cls, _ttl, rdlen = struct.unpack_from("!HHIH", wire, at)
        at += 10
        if rtype == 1 and rdlen == 4:
            out.add(socket.inet_ntoa(wire[at:at + 4]))
        at += rdlen
    return out


class DnsProbe:
    def __init__(self, host: str, port: int) -> None:
        self.addr = (host, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect(self.addr)
        self._queries: dict[str, bytes] = {}
        self._id = 0

    def close(self) -> None:
        self.sock.close()

    async def a_records(self, name: str, timeout: float = 1.0) -> set[str]:
        q = self._queries.get(name)
        if q is None:
            q = self._queries[name] = a_query(name, 0)
        self._id = (self._id + 1) & 0xFFFF
        loop = asyncio.get_running_loop()
        with contextlib.suppress(BlockingIOError):
            while True:
                self.sock.recv(4096)  # stale replies of timed-out queries
        await loop.sock_sendall(self.sock, struct.pack("!H", self._id) + q[2:])
        async with asyncio.timeout(timeout):
            while True:
                got = a_addresses(await loop.sock_recv(self.sock, 4096), self._id)
                if got is not None:
                    return got


class NftMonitor:
    """``nft monitor`` in ``netns``: every line with its arrival time (CLOCK_MONOTONIC)."""

    def __init__(self, netns: str) -> None:
        self.netns = netns
        self.lines: list[tuple[float, str]] = []
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.netns, "nft", "monitor", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL, stdin=asyncio.subprocess.DEVNULL)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        while True:
            line = await self._proc.stdout.readline()
            if not line:
                return
            self.lines.append((time.monotonic(), line.decode(errors="replace").rstrip()))
            self._changed.set()

    async def wait_for(self, ip: str, verb: str, since: float, timeout: float) -> float | None:
        """The time of the first line after ``since`` that ``verb``s an element holding ``ip``."""
        return await first_after(self.lines, self._changed, lambda line: element_line_has(line, ip, verb),
                                 since, timeout)

    def trim(self) -> None:
        self.lines.clear()

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._proc.wait(), 5)
        await cancel_all([self._reader])


class SliceWatch:
    """The ready addresses of a Service's EndpointSlices, as a watch on the API delivers them."""

    def __init__(self, client: Any, namespace: str, service: str) -> None:
        self.client = client
        self.namespace = namespace
        self.service = service
        self.slices: dict[str, frozenset[str]] = {}
        self.changes: list[tuple[float, frozenset[str]]] = []  # (time, ready addresses of all slices)
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for ev in self.client.watch("discovery.k8s.io/v1", "endpointslices", self.namespace,
                                          label_selector=f"kubernetes.io/service-name={self.service}"):
            obj = ev.get("object") or {}
            name = (obj.get("metadata") or {}).get("name", "")
            if ev.get("type") in ("ADDED", "MODIFIED"):
                self.slices[name] = ready_addresses(obj)
            elif ev.get("type") == "DELETED":
                self.slices.pop(name, None)
            else:
                continue
            self.changes.append((time.monotonic(), frozenset().union(*self.slices.values())))
            self._changed.set()

    async def wait_for(self, ip: str, ready: bool, since: float, timeout: float) -> float | None:
        return await first_after(self.changes, self._changed, lambda ips: (ip in ips) == ready, since, timeout)

    async def stop(self) -> None:
        await cancel_all([self._task])


def ready_addresses(slice_obj: dict[str, Any]) -> frozenset[str]:
    """Addresses of the slice's endpoints whose ``ready`` condition is true."""
    return frozenset(a for e in slice_obj.get("endpoints") or () if (e.get("conditions") or {}).get("ready")
                     for a in e.get("addresses") or ())
