"""A TCP relay from the host's loopback into a machine's network namespace.

The processes of this topology run in the host namespace (kubectl, node agents, controllers and
the API servers' own node-agent proxy talk on 127.0.0.1), but the machines they belong to live on
the LAN. :class:`Relay` listens on a loopback port and carries each connection through a socket
made inside the machine's namespace, so what crosses the LAN leaves from that machine and cutting
its link cuts it off. TLS is end to end (the relay never looks inside).

* An API server reaches each etcd member through one listener per member (the etcd client,
  gRPC, cannot be told which namespace to connect from).
* A node reaches the API servers through one listener with every API server as a candidate
  (``python -m servicenet.cluster.relay``), as kubelets reach the control plane through a load
  balancer: a connection goes to the first candidate that accepts it, starting with the node's
  preferred one, so when an API server dies the node's clients reconnect to another. With
  ``check_interval`` set, the relay also checks each candidate's ``/readyz`` over HTTPS, as a load
  balancer's health check would: candidates that fail it are tried last, and when one is marked
  down the connections through it are closed, so that clients reconnect to a ready server (an API
  server cut off from etcd still accepts connections but fails every write).

:class:`Health` is the pure part: each candidate's up/down state from its check results, with rise
and fall counts as load balancers use them (one slow answer does not mark a server down).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import ssl
import sys
from dataclasses import dataclass, field
from typing import Any

from servicenet.common import log
from servicenet.common.component import bounded
from servicenet.common.netns import socket_in_netns
from servicenet.common.runner import wait_for_signal

_log = log.get("cluster.relay")
CONNECT_TIMEOUT = 3.0
CHUNK = 1 << 16
CHECK_TIMEOUT = 2.0
Addr = tuple[str, int]


@dataclass(slots=True)
class Health:
    """Up/down state per candidate. Every candidate starts up; ``fall`` failed checks in a row mark
    it down and ``rise`` passed checks in a row mark it up again."""

    rise: int = 2
    fall: int = 2
    up: dict[Addr, bool] = field(default_factory=dict)
    _streak: dict[Addr, int] = field(default_factory=dict)  # results in a row against the state

    def observe(self, target: Addr, ok: bool) -> bool | None:
        """Record one check; returns the new state when it changed, else None."""
        up = self.up.get(target, True)
        if ok == up:
            self._streak[target] = 0
            return None
        n = self._streak.get(target, 0) + 1
        if n < (self.rise if ok else self.fall):
            self._streak[target] = n
            return None
        self._streak[target] = 0
        self.up[target] = ok
        return ok

    def order(self, targets: list[Addr]) -> list[Addr]:
        """The candidates to try: those up first, each group in the given order."""
        return ([t for t in targets if self.up.get(t, True)]
                + [t for t in targets if not self.up.get(t, True)])


class Relay:
    """One loopback listener per entry of ``listeners``; each entry lists the candidate targets,
    reached from namespace ``netns`` (None: this one) in order, those failing their health check
    (``check_interval`` seconds apart, HTTPS ``GET /readyz``; None: no checks) last."""

    def __init__(self, netns: str | None, listeners: list[list[Addr]], host: str = "127.0.0.1",
                 ports: list[int] | None = None, check_interval: float | None = None) -> None:
        self.netns = netns
        self.listeners = listeners
        self.host = host
        self.ports: list[int] = list(ports or [0] * len(listeners))
        self.check_interval = check_interval
        self.health = Health()
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._through: dict[Addr, set[asyncio.Task[Any]]] = {}  # open connections per target
        self._checker: asyncio.Task[None] | None = None

    async def start(self) -> list[Addr]:
        """Listen for every entry; returns the loopback addresses, in order."""
        for i, targets in enumerate(self.listeners):
            server = await asyncio.start_server(lambda r, w, t=targets: self._accept(t, r, w), self.host,
                                                self.ports[i], reuse_address=True)
            self._servers.append(server)
            self.ports[i] = server.sockets[0].getsockname()[1]
        if self.check_interval is not None:
            self._checker = asyncio.ensure_future(self._check_loop(self.check_interval))
        return [(self.host, p) for p in self.ports]

    async def _check_loop(self, interval: float) -> None:
        targets = list(dict.fromkeys(t for ts in self.listeners for t in ts))
        while True:
            results = await asyncio.gather(*(self._ready(t) for t in targets))
            for target, ok in zip(targets, results, strict=True):
                changed = self.health.observe(target, ok)
                if changed is None:
                    continue
                _log.info("candidate marked " + ("up" if changed else "down"), target=f"{target[0]}:{target[1]}")
                if not changed:  # its clients reconnect, to a candidate that is up
                    for task in list(self._through.get(target, ())):
                        task.cancel()
            await asyncio.sleep(interval)

    async def _ready(self, target: Addr) -> bool:
        """Whether ``target`` answers ``GET /readyz`` with 200 over TLS (unverified, as a load
        balancer's health check: the path is public and only its status matters)."""
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                sock = await self._connect(target)
                reader, writer = await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="")
                writer.write(f"GET /readyz HTTP/1.1\r\nHost: {target[0]}\r\nConnection: close\r\n\r\n".encode())
                status = await reader.readline()
            return status.split()[1:2] == [b"200"]
        except (OSError, TimeoutError, ssl.SSLError, ValueError):
            return False
        finally:
            if writer is not None:
                writer.close()

    def _accept(self, targets: list[Addr], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(targets, reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, target: Addr) -> socket.socket:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(None, _socket_in, self.netns)
        sock.setblocking(False)
        try:
            await bounded(loop.sock_connect(sock, target), CONNECT_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _serve(self, targets: list[Addr], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_writer: asyncio.StreamWriter | None = None
        try:
            sock = None
            for target in self.health.order(targets):
                try:
                    sock = await self._connect(target)
                    break
                except (OSError, TimeoutError) as exc:
                    _log.debug("candidate refused", target=f"{target[0]}:{target[1]}", error=repr(exc))
            if sock is None:
                return
            me = asyncio.current_task()
            assert me is not None
            through = self._through.setdefault(target, set())
            through.add(me)
            try:
                up_reader, up_writer = await asyncio.open_connection(sock=sock)
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                through.discard(me)
        except OSError as exc:
            _log.debug("relay connection ended", error=repr(exc))
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()

    async def stop(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(BaseException):
                await self._checker
        for s in self._servers:
            s.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        self._servers.clear()


def _socket_in(netns: str | None) -> socket.socket:
    return socket_in_netns(netns, socket.AF_INET, socket.SOCK_STREAM)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy until EOF or an error, then close ``dst`` (the other direction then ends too)."""
    try:
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
    except OSError:
        pass
    finally:
        dst.close()


def _addr(s: str) -> Addr:
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {s!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    """``python -m servicenet.cluster.relay --netns NS --listen 127.0.0.1:PORT --to IP:PORT ...``"""
    p = argparse.ArgumentParser(prog="servicenet-relay", description=__doc__.split("\n\n")[0])
    p.add_argument("--netns", required=True, help="the namespace connections leave from")
    p.add_argument("--listen", type=_addr, required=True, metavar="HOST:PORT")
    p.add_argument("--to", type=_addr, action="append", required=True, metavar="IP:PORT",
                   help="candidate targets, tried in order (repeat)")
    p.add_argument("--check-readyz", type=float, default=None, metavar="SECONDS",
                   help="check each target's HTTPS /readyz this often; targets failing it are tried last "
                        "and their connections closed")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    log.setup(args.log_level)

    async def run() -> None:
        relay = Relay(args.netns, [args.to], host=args.listen[0], ports=[args.listen[1]],
                      check_interval=args.check_readyz)
        addr = (await relay.start())[0]
        print(f"relay {addr[0]}:{addr[1]} -> {','.join(f'{h}:{p}' for h, p in args.to)} from {args.netns}",
              flush=True)
        try:
            await wait_for_signal()
        finally:
            await relay.stop()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
