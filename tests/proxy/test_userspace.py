"""Userspace data path over real loopback sockets (127.96.x.y VIPs, 127.64.x.y "pods")."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import time
from collections import Counter
from typing import Any

import pytest

from servicenet.proxy.model import compute
from servicenet.proxy.userspace import UserspaceProxy

from . import helpers as h

RNG = random.Random(os.getpid() ^ int(time.time()))


def _vip() -> str:
    return f"127.96.{RNG.randrange(100, 250)}.{RNG.randrange(2, 250)}"


def _free_port(ip: str, kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


class Backends:
    """TCP servers that send their name, then echo; UDP servers that reply name:payload."""

    def __init__(self) -> None:
        self.servers: list[asyncio.AbstractServer] = []
        self.transports: list[asyncio.DatagramTransport] = []
        self.hits: Counter[str] = Counter()
        self.proxies: list[UserspaceProxy] = []
        self.base = f"127.64.{RNG.randrange(100, 250)}"

    async def tcp(self, n: int, port: int) -> list[str]:
        ips = []
        for i in range(n):
            ip, name = f"{self.base}.{10 + i}", f"pod{i}"

            async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, name: str = name) -> None:
                self.hits[name] += 1
                w.write(f"{name}\n".encode())
                try:
                    while data := await r.read(65536):
                        w.write(data)
                        await w.drain()
                finally:
                    w.close()

            self.servers.append(await asyncio.start_server(handle, ip, port))
            ips.append(ip)
        return ips

    async def udp(self, n: int, port: int) -> list[str]:
        loop = asyncio.get_running_loop()
        ips = []
        for i in range(n):
            ip, name = f"{self.base}.{10 + i}", f"pod{i}"

            class P(asyncio.DatagramProtocol):
                def connection_made(self, t: asyncio.BaseTransport) -> None:
                    self.t = t

                def datagram_received(self, data: bytes, addr: tuple[str, int], name: str = name) -> None:
                    self.t.sendto(name.encode() + b":" + data, addr)  # type: ignore[attr-defined]

            t, _ = await loop.create_datagram_endpoint(P, local_addr=(ip, port))
            self.transports.append(t)
            ips.append(ip)
        return ips

    async def service(self, n: int, proto: str = "TCP") -> tuple[str, int, int, list[str]]:
        """``n`` backends on a free target port, and a random VIP with a free port on it:
        ``(vip, port, target, backend IPs)``."""
        kind = socket.SOCK_DGRAM if proto == "UDP" else socket.SOCK_STREAM
        vip, target = _vip(), _free_port("127.0.0.1", kind)
        ips = await (self.udp(n, target) if proto == "UDP" else self.tcp(n, target))
        return vip, _free_port(vip, kind), target, ips

    def proxy(self, **kw: Any) -> UserspaceProxy:
        """A proxy closed (before the backends) when the test ends."""
        p = UserspaceProxy(**kw)
        self.proxies.append(p)
        return p

    def close(self) -> None:
        for p in self.proxies:
            p.close()
        for s in self.servers:
            s.close()
        for t in self.transports:
            t.close()


@pytest.fixture
async def backends():
    b = Backends()
    yield b
    b.close()


def _state(vip: str, port: int, ips: list[str], target: int, proto: str = "TCP", affinity: int | None = None):
    p = h.port(port, "p", proto, target=target)
    svc = h.service("ns", "web", vip, [p], affinity=affinity)
    es = h.eslice("ns", "web", [h.endpoint(ip) for ip in ips], [{"name": "p", "port": target, "protocol": proto}])
    return compute([svc], [es], "node1", ["127.0.0.1"])


async def _name(vip: str, port: int) -> str:
    r, w = await asyncio.wait_for(asyncio.open_connection(vip, port), 3)
    line = await asyncio.wait_for(r.readline(), 3)
    w.close()
    return line.decode().strip()


@pytest.mark.parametrize("copy", ["auto", "splice", "buffer"])
async def test_round_robin_distribution(backends: Backends, copy: str) -> None:
    vip, port, target, ips = await backends.service(3)
    backends.proxy(copy=copy).apply(_state(vip, port, ips, target))
    names = Counter([await _name(vip, port) for _ in range(60)])
    assert names == {"pod0": 20, "pod1": 20, "pod2": 20}


async def test_random_distribution(backends: Backends) -> None:
    vip, port, target, ips = await backends.service(3)
    backends.proxy(mode="random").apply(_state(vip, port, ips, target))
    names = Counter([await _name(vip, port) for _ in range(150)])
    assert set(names) == {"pod0", "pod1", "pod2"}
    assert all(20 <= c <= 80 for c in names.values()), names


async def test_failover_on_connect_failure(backends: Backends) -> None:
    vip, port, target, ips = await backends.service(2)
    dead = f"{backends.base}.99"  # nothing listens there: connection refused
    proxy = backends.proxy()
    proxy.apply(_state(vip, port, [*ips, dead], target))
    names = Counter([await _name(vip, port) for _ in range(30)])
    assert sum(names.values()) == 30 and set(names) == {"pod0", "pod1"}
    assert proxy.stats.connect_failures == 0


async def test_failover_when_the_handshake_does_not_complete(backends: Backends) -> None:
    """The connect that has not completed when connect() returns (a backend whose accept queue is
    full drops the SYN) waits for writability under a timer and fails over after it."""
    vip, port, target, [good] = await backends.service(1)
    stuck_ip = f"{backends.base}.98"
    stuck = socket.socket()
    stuck.bind((stuck_ip, target))
    stuck.listen(0)  # never accepted: one queued connection fills it, later SYNs are dropped
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex((stuck_ip, target))
        fillers.append(f)
    proxy = backends.proxy()
    try:
        proxy.apply(_state(vip, port, [stuck_ip, good], target))
        t0 = time.monotonic()
        names = Counter([await _name(vip, port) for _ in range(4)])
        assert names == {"pod0": 4}
        assert time.monotonic() - t0 >= 0.2  # at least one attempt waited out its connect timer
        assert proxy.stats.connect_failures == 0
    finally:
        for f in fillers:
            f.close()
        stuck.close()


async def test_all_endpoints_dead_resets_client(backends: Backends) -> None:
    vip, port, target, _ = await backends.service(0)
    proxy = backends.proxy()
    proxy.apply(_state(vip, port, [f"{backends.base}.98", f"{backends.base}.99"], target))
    r, w = await asyncio.open_connection(vip, port)
    with pytest.raises((ConnectionResetError, asyncio.IncompleteReadError)):
        await asyncio.wait_for(r.readexactly(1), 3)
    w.close()
    assert proxy.stats.connect_failures == 1


async def test_no_endpoints_refused_immediately(backends: Backends) -> None:
    vip, port, target, ips = await backends.service(1)
    proxy = backends.proxy()
    proxy.apply(_state(vip, port, ips, target))
    assert await _name(vip, port) == "pod0"
    proxy.apply(_state(vip, port, [], target))
    t0 = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(vip, port)
    assert time.monotonic() - t0 < 0.5
    proxy.apply(_state(vip, port, ips, target))  # endpoints come back: listening again
    assert await _name(vip, port) == "pod0"


async def test_client_ip_affinity(backends: Backends) -> None:
    vip, port, target, ips = await backends.service(3)
    backends.proxy().apply(_state(vip, port, ips, target, affinity=60))
    names = Counter([await _name(vip, port) for _ in range(20)])
    assert len(names) == 1 and sum(names.values()) == 20


async def test_endpoint_removal_drains_existing_connections(backends: Backends) -> None:
    vip, port, target, ips = await backends.service(2)
    proxy = backends.proxy()
    proxy.apply(_state(vip, port, ips, target))
    r, w = await asyncio.open_connection(vip, port)
    first = (await r.readline()).decode().strip()
    idx = int(first[-1])
    proxy.apply(_state(vip, port, [ips[1 - idx]], target))  # remove the endpoint we are on
    w.write(b"still here\n")
    await w.drain()
    assert await asyncio.wait_for(r.readline(), 3) == b"still here\n"
    names = Counter([await _name(vip, port) for _ in range(10)])
    assert names == {f"pod{1 - idx}": 10}
    w.write(b"bye\n")
    assert await asyncio.wait_for(r.readline(), 3) == b"bye\n"
    w.close()


@pytest.mark.parametrize("copy", ["auto", "splice", "buffer"])
async def test_bulk_transfer_and_half_close(backends: Backends, copy: str) -> None:
    vip, port, target, ips = await backends.service(1)
    proxy = backends.proxy(copy=copy)
    proxy.apply(_state(vip, port, ips, target))
    payload = os.urandom(8 << 20)
    r, w = await asyncio.open_connection(vip, port)
    assert await r.readline() == b"pod0\n"

    async def send() -> None:
        for i in range(0, len(payload), 1 << 20):
            w.write(payload[i:i + (1 << 20)])
            await w.drain()
        w.write_eof()  # half-close: the echo must still come back in full

    sender = asyncio.create_task(send())
    got = await asyncio.wait_for(r.read(), 20)
    await sender
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    w.close()
    deadline = time.monotonic() + 3
    while proxy.conns and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not proxy.conns


async def test_udp_flows_and_idle_timeout(backends: Backends) -> None:
    vip, port, target, ips = await backends.service(2, "UDP")
    proxy = backends.proxy(udp_idle_timeout=0.3)
    loop = asyncio.get_running_loop()
    clients = []
    try:
        proxy.apply(_state(vip, port, ips, target, proto="UDP"))
        seen = []
        for _ in range(4):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.setblocking(False)
            c.connect((vip, port))
            clients.append(c)
            answers = set()
            for i in range(3):  # one flow per client: every datagram goes to the same pod
                await loop.sock_sendall(c, b"x%d" % i)
                data = await asyncio.wait_for(loop.sock_recv(c, 1024), 3)
                answers.add(data.split(b":")[0])
            assert len(answers) == 1
            seen.append(answers.pop())
        assert Counter(seen) == {b"pod0": 2, b"pod1": 2}
        lst = next(iter(proxy.listeners.values()))
        assert len(lst.flows) == 4
        deadline = time.monotonic() + 3
        while lst.flows and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not lst.flows
    finally:
        for c in clients:
            c.close()


def test_runs_unprivileged() -> None:
    """As ``nobody`` (via setpriv, system python3): bind a 127.96.x.y VIP, proxy, refuse."""
    if os.geteuid() != 0:
        pytest.skip("already unprivileged: the rest of this file is the unprivileged run")
    if not shutil.which("setpriv"):
        pytest.skip("setpriv not installed")
    script = os.path.join(os.path.dirname(__file__), "unpriv_smoke.py")
    base = f"127.64.{RNG.randrange(100, 250)}"
    out = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "/usr/bin/python3",
                          script, _vip(), base], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    res = json.loads(out.stdout)
    assert res["uid"] != 0
    assert sorted(res["names"]) == ["pod0", "pod0", "pod1", "pod1"]
    assert res["refused"] is True
