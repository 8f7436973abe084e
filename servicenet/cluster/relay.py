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
  preferred one, so when an API server dies the node's clients reconnect to another.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import sys

from servicenet.common import log
from servicenet.common.component import bounded
from servicenet.common.netns import socket_in_netns
from servicenet.common.runner import wait_for_signal

_log = log.get("cluster.relay")
CONNECT_TIMEOUT = 3.0
CHUNK = 1 << 16
Addr = tuple[str, int]


class Relay:
    """One loopback listener per entry of ``listeners``; each entry lists the candidate targets,
    reached from namespace ``netns`` in order."""

    def __init__(self, netns: str, listeners: list[list[Addr]], host: str = "127.0.0.1",
                 ports: list[int] | None = None) -> None:
        self.netns = netns
        self.listeners = listeners
        self.host = host
        self.ports: list[int] = list(ports or [0] * len(listeners))
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> list[Addr]:
        """Listen for every entry; returns the loopback addresses, in order."""
        for i, targets in enumerate(self.listeners):
            server = await asyncio.start_server(lambda r, w, t=targets: self._accept(t, r, w), self.host,
                                                self.ports[i], reuse_address=True)
            self._servers.append(server)
            self.ports[i] = server.sockets[0].getsockname()[1]
        return [(self.host, p) for p in self.ports]

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
            for target in targets:
                try:
                    sock = await self._connect(target)
                    break
                except (OSError, TimeoutError) as exc:
                    _log.debug("candidate refused", target=f"{target[0]}:{target[1]}", error=repr(exc))
            if sock is None:
                return
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except OSError as exc:
            _log.debug("relay connection ended", error=repr(exc))
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()

    async def stop(self) -> None:
        for s in self._servers:
            s.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        self._servers.clear()


def _socket_in(netns: str) -> socket.socket:
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
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    log.setup(args.log_level)

    async def run() -> None:
        relay = Relay(args.netns, [args.to], host=args.listen[0], ports=[args.listen[1]])
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
