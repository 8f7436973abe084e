"""A TCP relay from the host's loopback into a machine's network namespace.

An API server of the multi-machine topology runs in the host namespace (kubectl, the node agents
and its own node-agent proxy talk to it on 127.0.0.1), but its etcd members live on the LAN. The
etcd client (gRPC) cannot be told which namespace to connect from, so the API server connects to
one loopback port per member and :class:`Relay` carries the bytes to the member through a socket
made inside the API server's namespace: what crosses the LAN leaves from that machine, and
cutting its link cuts the API server off etcd. TLS is end to end (the relay never looks inside).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from servicenet.common import log
from servicenet.common.component import bounded
from servicenet.common.netns import socket_in_netns

_log = log.get("cluster.relay")
CONNECT_TIMEOUT = 3.0
CHUNK = 1 << 16


class Relay:
    """``127.0.0.1:<port>`` (host namespace) → ``target`` reached from namespace ``netns``."""

    def __init__(self, netns: str, targets: list[tuple[str, int]]) -> None:
        self.netns = netns
        self.targets = targets
        self.ports: list[int] = []
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> list[tuple[str, int]]:
        """Listen for every target; returns the loopback addresses, in the targets' order."""
        for target in self.targets:
            server = await asyncio.start_server(lambda r, w, t=target: self._accept(t, r, w), "127.0.0.1", 0)
            self._servers.append(server)
            self.ports.append(server.sockets[0].getsockname()[1])
        return [("127.0.0.1", p) for p in self.ports]

    def _accept(self, target: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(target, reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, target: tuple[str, int], reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        up_writer: asyncio.StreamWriter | None = None
        try:
            sock = await loop.run_in_executor(None, socket_in_netns, self.netns, socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await bounded(loop.sock_connect(sock, target), CONNECT_TIMEOUT)
            except BaseException:
                sock.close()
                raise
            up_reader, up_writer = await asyncio.open_connection(sock=sock)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, TimeoutError) as exc:
            _log.debug("relay connection ended", target=f"{target[0]}:{target[1]}", error=repr(exc))
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
