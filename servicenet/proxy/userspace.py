"""Userspace data path (no root): TCP and UDP proxying on service VIPs.

In loopback mode ClusterIPs are 127.96.x.y addresses; Linux routes all of 127/8 to ``lo``,
so an unprivileged process can bind them (ports >= 1024). One listener per
(ip, port, protocol); no listener while a service has no endpoints, so clients get an
immediate ECONNREFUSED (TCP) / ICMP port unreachable (UDP).

The TCP relay uses no tasks: raw non-blocking sockets driven by loop readers/writers.
Bytes move with ``recv_into`` + ``send`` through one shared buffer, and a direction that
carries bulk data switches to ``splice(2)`` through a pooled pipe (zero-copy); ``copy=``
forces either. Existing connections are never cut
when endpoints change; they drain on their own.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from servicenet.common import log
from servicenet.proxy.balancer import Addr, Balancer
from servicenet.proxy.model import DesiredState
from servicenet.proxy.published import LOW_PORT_OFFSET

_log = log.get("proxy.userspace")
CONNECT_TIMEOUTS = (0.25, 0.5, 1.0, 2.0)  # per attempt, like the old userspace proxy
PIPE_SIZE = 1 << 18  # per pipe; bulk reads splice up to this much at once
F_SETPIPE_SZ = 1031
SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK if hasattr(os, "splice") else 0
BUF_SIZE = 1 << 16
_RESET_ERRS = (ConnectionError, OSError)


@dataclass
class Stats:
    accepted: int = 0
    connected: int = 0
    connect_failures: int = 0
    refused: int = 0
    closed: int = 0
    udp_flows: int = 0


class _PipePool:
    """Re-usable, empty pipes for splice (a pipe pair per direction per connection)."""

    def __init__(self, limit: int = 512) -> None:
        self.free: list[tuple[int, int]] = []
        self.limit = limit

    def get(self) -> tuple[int, int]:
        if self.free:
            return self.free.pop()
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        return r, w

    def put(self, p: tuple[int, int], empty: bool) -> None:
        if empty and len(self.free) < self.limit:
            self.free.append(p)
        else:
            os.close(p[0])
            os.close(p[1])

    def close(self) -> None:
        for r, w in self.free:
            os.close(r)
            os.close(w)
        self.free.clear()


# upstream sockets are born non-blocking (no fcntl round trip per connection)
_STREAM_NONBLOCK = socket.SOCK_STREAM | getattr(socket, "SOCK_NONBLOCK", 0)


class _Direction:
    """One half of a relay: bytes from ``src`` to ``dst``.

    Reads go through one buffer shared by every connection (the loop is single-threaded
    and data is sent at once; only an unsent tail is copied out). A direction that fills
    the buffer in one read is moving bulk data and switches to ``splice`` through a pipe.
    """

    __slots__ = ("conn", "src", "dst", "sfd", "dfd", "pipe", "zc", "pending", "tail", "eof", "done")

    def __init__(self, conn: _TcpConn, src: socket.socket, dst: socket.socket, zc: bool) -> None:
        self.conn = conn
        self.src, self.dst = src, dst
        self.sfd, self.dfd = src.fileno(), dst.fileno()
        self.pipe: tuple[int, int] | None = None
        self.zc = zc  # zero-copy (splice) mode
        self.pending = 0  # splice mode: bytes in the pipe not yet written
        self.tail = b""  # buffer mode: bytes read but not yet written
        self.eof = False
        self.done = False

    def on_readable(self) -> None:
        conn = self.conn
        proxy = conn.proxy
        try:
            if self.zc:
                if self.pipe is None:
                    self.pipe = proxy.pipes.get()
                n = os.splice(self.sfd, self.pipe[1], PIPE_SIZE, flags=SPLICE_FLAGS)
            else:
                view = proxy.view
                n = self.src.recv_into(view)
                if n:
                    try:
                        m = self.dst.send(view[:n])
                    except (BlockingIOError, InterruptedError):
                        m = 0
                    if m < n:
                        self.tail = bytes(view[m:n])
                        conn.loop.remove_reader(self.sfd)
                        conn.loop.add_writer(self.dfd, self.on_writable)
                    elif n == len(view) and proxy.splice_bulk:
                        self.zc = True
                    return
        except (BlockingIOError, InterruptedError):
            return
        except _RESET_ERRS:
            conn.close()
            return
        if n == 0:
            self.eof = True
            conn.loop.remove_reader(self.sfd)
            self._finish()
            return
        self.pending = n
        self._flush(from_writer=False)

    def _flush(self, from_writer: bool) -> None:
        conn = self.conn
        try:
            if self.tail:
                m = self.dst.send(self.tail)
                self.tail = self.tail[m:]
                if self.tail:
                    return
            while self.pending:
                m = os.splice(self.pipe[0], self.dfd, self.pending, flags=SPLICE_FLAGS)  # type: ignore[index]
                self.pending -= m
        except (BlockingIOError, InterruptedError):
            if not from_writer:
                conn.loop.remove_reader(self.sfd)
                conn.loop.add_writer(self.dfd, self.on_writable)
            return
        except _RESET_ERRS:
            conn.close()
            return
        if from_writer:
            conn.loop.remove_writer(self.dfd)
            if self.eof:
                self._finish()
            else:
                conn.loop.add_reader(self.sfd, self.on_readable)

    def on_writable(self) -> None:
        self._flush(from_writer=True)

    def _finish(self) -> None:
        if self.pending or self.tail:
            return
        self.done = True
        dirs = self.conn.dirs
        if dirs is not None and dirs[0].done and dirs[1].done:
            self.conn.close()  # both peers sent FIN: close() sends ours, no shutdown() needed
            return
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def release(self) -> None:
        if self.pipe is not None:
            self.conn.proxy.pipes.put(self.pipe, empty=self.pending == 0)
            self.pipe = None


class _TcpConn:
    __slots__ = ("proxy", "loop", "svc", "client", "client_ip", "up", "tried", "attempt", "timer",
                 "dirs", "closed")

    def __init__(self, proxy: UserspaceProxy, svc: _Service, client: socket.socket, client_ip: str) -> None:
        self.proxy = proxy
        self.loop = proxy.loop
        self.svc = svc
        self.client = client
        self.client_ip = client_ip
        self.up: socket.socket | None = None
        self.tried: list[Addr] = []
        self.attempt = 0
        self.timer: asyncio.TimerHandle | None = None
        self.dirs: tuple[_Direction, _Direction] | None = None
        self.closed = False

    def connect_next(self) -> None:
        svc = self.svc
        ep = svc.balancer.pick(self.client_ip, time.monotonic(), self.tried)
        if ep is None or self.attempt >= len(CONNECT_TIMEOUTS):
            self.proxy.stats.connect_failures += 1
            self._abort_client()
            return
        self.tried.append(ep)
        s = socket.socket(socket.AF_INET6 if ":" in ep[0] else socket.AF_INET, _STREAM_NONBLOCK)
        if _STREAM_NONBLOCK == socket.SOCK_STREAM:  # (no SOCK_NONBLOCK on this platform)
            s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.up = s
        rc = s.connect_ex(ep)
        if rc == errno.EINPROGRESS:
            # to a pod on this host the handshake has usually completed inside connect() already
            # (the SYN-ACK is processed before the call returns): skip a loop turn and a timer
            try:
                s.getpeername()
                rc = 0
            except OSError:
                pass
        if rc == 0:
            self._connected()
        elif rc in (errno.EINPROGRESS, errno.EAGAIN):
            self.loop.add_writer(s.fileno(), self._on_connect)
            self.timer = self.loop.call_later(CONNECT_TIMEOUTS[self.attempt], self._on_timeout)
        else:
            self._failed()

    def _on_connect(self) -> None:
        s = self.up
        assert s is not None
        self.loop.remove_writer(s.fileno())
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            self._connected()
        else:
            self._failed()

    def _on_timeout(self) -> None:
        self.timer = None
        if self.up is not None:
            self.loop.remove_writer(self.up.fileno())
        self._failed()

    def _failed(self) -> None:
        if self.up is not None:
            self.up.close()
            self.up = None
        self.svc.balancer.forget(self.client_ip)
        self.attempt += 1
        self.connect_next()

    def _connected(self) -> None:
        up = self.up
        assert up is not None
        self.proxy.stats.connected += 1
        zc = self.proxy.splice_always
        c2u, u2c = _Direction(self, self.client, up, zc), _Direction(self, up, self.client, zc)
        self.dirs = (c2u, u2c)
        self.loop.add_reader(self.client.fileno(), c2u.on_readable)
        self.loop.add_reader(up.fileno(), u2c.on_readable)

    def _abort_client(self) -> None:
        # RST rather than FIN: the client learns at once that nobody is there.
        try:
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        loop = self.loop
        if self.timer is not None:
            self.timer.cancel()
        for s in (self.client, self.up):
            if s is not None and s.fileno() >= 0:
                loop.remove_reader(s.fileno())
                loop.remove_writer(s.fileno())
        if self.dirs is not None:
            for d in self.dirs:
                d.release()
        self.client.close()
        if self.up is not None:
            self.up.close()
        self.proxy.conns.discard(self)
        self.proxy.stats.closed += 1


class _UdpFlow:
    __slots__ = ("listener", "client", "sock", "last")

    def __init__(self, listener: _Listener, client: tuple[str, int], sock: socket.socket) -> None:
        self.listener, self.client, self.sock, self.last = listener, client, sock, time.monotonic()

    def on_readable(self) -> None:
        try:
            while True:
                data = self.sock.recv(65535)
                self.listener.sock.sendto(data, self.client)
                self.last = time.monotonic()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # ICMP unreachable from the backend, or the like
            self.close()

    def close(self) -> None:
        self.listener.flows.pop(self.client, None)
        self.listener.proxy.loop.remove_reader(self.sock.fileno())
        self.sock.close()


@dataclass
class _Service:
    balancer: Balancer
    udp_idle: float = 1.0


@dataclass
class _Listener:
    proxy: UserspaceProxy
    addr: Addr
    proto: str
    svc: _Service
    sock: socket.socket
    flows: dict[tuple[str, int], _UdpFlow] = field(default_factory=dict)

    def on_accept(self) -> None:
        proxy = self.proxy
        for _ in range(64):
            try:
                c, peer = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                _log.warning("accept failed", addr=self.addr, error=str(exc))
                return
            c.setblocking(False)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            proxy.stats.accepted += 1
            conn = _TcpConn(proxy, self.svc, c, peer[0])
            proxy.conns.add(conn)
            conn.connect_next()

    def on_datagram(self) -> None:
        proxy = self.proxy
        for _ in range(64):
            try:
                data, peer = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            flow = self.flows.get(peer)
            if flow is None:
                ep = self.svc.balancer.pick(peer[0], time.monotonic())
                if ep is None:
                    continue
                s = socket.socket(socket.AF_INET6 if ":" in ep[0] else socket.AF_INET, socket.SOCK_DGRAM)
                s.setblocking(False)
                s.connect(ep)
                flow = _UdpFlow(self, peer, s)
                self.flows[peer] = flow
                proxy.stats.udp_flows += 1
                proxy.loop.add_reader(s.fileno(), flow.on_readable)
            try:
                flow.sock.send(data)
                flow.last = time.monotonic()
            except OSError:
                flow.close()

    def sweep(self, now: float) -> None:
        for flow in [f for f in self.flows.values() if now - f.last > self.svc.udp_idle]:
            flow.close()

    def close(self) -> None:
        self.proxy.loop.remove_reader(self.sock.fileno())
        self.sock.close()
        for flow in list(self.flows.values()):
            flow.close()


class UserspaceProxy:
    """Listeners for every reachable (VIP, port, proto) of a :class:`DesiredState`."""

    def __init__(self, *, mode: str = "rr", copy: str = "auto", udp_idle_timeout: float = 1.0,
                 nodeport_addresses: Iterable[str] | None = None, low_port_offset: int = LOW_PORT_OFFSET) -> None:
        if copy not in ("auto", "splice", "buffer"):
            raise ValueError(f"unknown copy mode {copy!r}")
        self.loop = asyncio.get_running_loop()
        self.mode = mode
        has_splice = hasattr(os, "splice")
        self.splice_always = copy == "splice" and has_splice  # every byte through a pipe
        self.splice_bulk = copy == "auto" and has_splice  # switch to splice once a read fills the buffer
        self.view = memoryview(bytearray(BUF_SIZE))
        self.udp_idle_timeout = udp_idle_timeout
        self.nodeport_addresses = tuple(nodeport_addresses) if nodeport_addresses is not None else None
        self.pipes = _PipePool()
        self.stats = Stats()
        self.conns: set[_TcpConn] = set()
        self.listeners: dict[tuple[str, int, str], _Listener] = {}
        self.services: dict[str, _Service] = {}
        self.bind_errors: dict[tuple[str, int, str], str] = {}
        self.low_port_offset = low_port_offset  # 0: a port below 1024 that cannot be bound is absent
        self.offset_ports: dict[tuple[str, int, str], int] = {}  # (ip, port, proto) -> port served at
        self._sweeper: asyncio.TimerHandle | None = None

    def apply(self, state: DesiredState) -> None:
        want: dict[tuple[str, int, str], str] = {}
        services: dict[str, _Service] = {}
        node_ips = self.nodeport_addresses if self.nodeport_addresses is not None else state.node_ips
        for spn, st in state.services.items():
            proto = spn.protocol
            if proto not in ("TCP", "UDP"):
                continue
            key = str(spn) + "/" + proto
            eps = [(e.ip, e.port) for e in st.reachable]
            svc = self.services.get(key)
            if svc is None:
                svc = _Service(Balancer(eps, self.mode, st.port.affinity_timeout), self.udp_idle_timeout)
            else:
                svc.balancer.update(eps, st.port.affinity_timeout)
            services[key] = svc
            sp = st.port
            if st.internal:
                want[(sp.cluster_ip, sp.port, proto)] = key
            if st.external:
                for ip in (*sp.external_ips, *sp.lb_ips):
                    want[(ip, sp.port, proto)] = key
                if sp.node_port:
                    for ip in node_ips:
                        want[(ip, sp.node_port, proto)] = key
        for k in [k for k in self.listeners if want.get(k) is None]:
            self.listeners.pop(k).close()  # existing TCP connections keep draining
            self.offset_ports.pop(k, None)
        self.bind_errors = {}
        for k, skey in want.items():
            lst = self.listeners.get(k)
            if lst is not None:
                lst.svc = services[skey]
                continue
            try:
                self.listeners[k] = self._listen(k, services[skey])
            except PermissionError as exc:
                self._listen_offset(k, services[skey], skey, exc)
            except OSError as exc:
                self.bind_errors[k] = str(exc)
                _log.warning("cannot listen", addr=f"{k[0]}:{k[1]}/{k[2]}", error=str(exc))
        self.services = services
        if self._sweeper is None and any(k[2] == "UDP" for k in self.listeners):
            self._schedule_sweep()

    def _listen_offset(self, k: tuple[str, int, str], svc: _Service, skey: str, exc: OSError) -> None:
        """A port below 1024 without the privilege to bind it: serve it at ``port + low_port_offset``
        (loopback mode, documented in docs/rootless.md) and say so once, naming the Service."""
        alt = k[1] + self.low_port_offset
        if k[1] >= 1024 or not self.low_port_offset:
            self.bind_errors[k] = str(exc)
            _log.warning("cannot listen", addr=f"{k[0]}:{k[1]}/{k[2]}", service=skey, error=str(exc))
            return
        try:
            self.listeners[k] = self._listen(k, svc, port=alt)
        except OSError as exc2:
            self.bind_errors[k] = str(exc2)
            _log.warning("cannot listen", addr=f"{k[0]}:{k[1]}/{k[2]}", service=skey, error=str(exc),
                         fallback=f"{k[0]}:{alt}", fallback_error=str(exc2),
                         way_out="run servicenet up as root, or with --network userns")
            return
        self.offset_ports[k] = alt
        _log.warning("privileged port served at an offset", service=skey, port=k[1], served=f"{k[0]}:{alt}",
                     way_out="ports below 1024 need root or --network userns (see docs/rootless.md)")

    def _listen(self, key: tuple[str, int, str], svc: _Service, port: int | None = None) -> _Listener:
        ip, _, proto = key
        port = key[1] if port is None else port
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM if proto == "TCP" else socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setblocking(False)
            s.bind((ip, port))
            if proto == "TCP":
                s.listen(4096)
        except OSError:
            s.close()
            raise
        lst = _Listener(self, (ip, port), proto, svc, s)
        self.loop.add_reader(s.fileno(), lst.on_accept if proto == "TCP" else lst.on_datagram)
        return lst

    def _schedule_sweep(self) -> None:
        self._sweeper = self.loop.call_later(max(self.udp_idle_timeout / 2, 0.05), self._sweep)

    def _sweep(self) -> None:
        now = time.monotonic()
        for lst in self.listeners.values():
            if lst.proto == "UDP":
                lst.sweep(now)
        for svc in self.services.values():
            svc.balancer.expire(now)
        self._schedule_sweep()

    def describe(self) -> list[str]:
        return sorted(f"{ip}:{self.offset_ports.get((ip, port, proto), port)}/{proto}"
                      for ip, port, proto in self.listeners)

    def close(self, *, cut_connections: bool = True) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for lst in self.listeners.values():
            lst.close()
        self.listeners.clear()
        if cut_connections:
            for c in list(self.conns):
                c.close()
        self.pipes.close()
