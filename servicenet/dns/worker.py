"""Extra serving processes: each binds the same addresses with SO_REUSEPORT, starts from a
snapshot of the parent's objects and applies the watch events the parent streams to it."""

from __future__ import annotations

import asyncio
import signal
import socket
from multiprocessing.connection import Connection
from typing import Any

from servicenet.common.runner import install_uvloop

from .forwarder import Forwarder
from .model import DnsConfig
from .records import RecordIndex
from .responder import Forward, Responder
from .transport import Latency, make_socket, serve

STATS_INTERVAL = 1.0


def worker_main(config: DnsConfig, listens: list[tuple[str | None, str, int]],
                socks: list[tuple[socket.socket, socket.socket]] | None,
                snapshot: list[tuple[str, dict[str, Any]]], synced: bool, conn: Connection,
                upstreams: list[tuple[str, int]], idle_timeout: float) -> None:
    install_uvloop()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    asyncio.run(_run(config, listens, socks, snapshot, synced, conn, upstreams, idle_timeout))


async def _run(config: DnsConfig, listens: list[tuple[str | None, str, int]],
               socks: list[tuple[socket.socket, socket.socket]] | None,
               snapshot: list[tuple[str, dict[str, Any]]], synced: bool, conn: Connection,
               upstreams: list[tuple[str, int]], idle_timeout: float) -> None:
    loop = asyncio.get_running_loop()
    index = RecordIndex(config)
    index.load(snapshot)
    index.set_synced(synced)
    responder = Responder(index)
    latency = Latency()
    fwd = Forwarder(upstreams, [(h, p) for _, h, p in listens]) if config.forward else None

    async def forward(f: Forward) -> bytes | None:
        if fwd is None:
            return responder.error(f.query, 5)
        return await fwd.forward(f, responder)

    servers = []
    if socks is None:  # our own sockets in the parent's SO_REUSEPORT group
        socks = [(make_socket(host, port, socket.SOCK_DGRAM, netns), make_socket(host, port, socket.SOCK_STREAM, netns))
                 for netns, host, port in listens]
    for udp, tcp in socks:  # else the parent's very sockets: whichever process is free reads next
        udp.setblocking(False)
        tcp.setblocking(False)
        servers.append(await serve(loop, responder, forward, latency, udp, tcp, idle_timeout))
    done = loop.create_future()

    def on_message() -> None:
        try:
            while conn.poll():
                msg = conn.recv()
                if msg[0] == "ev":
                    index.apply(msg[1], msg[2], msg[3])
                elif msg[0] == "synced":
                    index.set_synced(msg[1])
                elif msg[0] == "stop" and not done.done():
                    done.set_result(None)
        except (EOFError, OSError):
            if not done.done():
                done.set_result(None)

    loop.add_reader(conn.fileno(), on_message)

    async def report() -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            stats = {k: v[0] for k, v in responder.stats.items()}
            try:
                conn.send(("stats", stats, responder.misses, list(latency.counts), latency.total, latency.n))
            except OSError:
                return

    reporter = asyncio.ensure_future(report())
    conn.send(("ready",))
    try:
        await done
    finally:
        reporter.cancel()
        loop.remove_reader(conn.fileno())
        for udp, tcp in servers:
            udp.close()
            tcp.close()
