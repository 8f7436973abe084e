"""Ten tiny HTTP/1.1 keep-alive backends on 127.77.0.{1..10}:PORT in one asyncio process.

``python -m bench.clientlb.backends PORT FAST_MS SLOW_MS FAIL_PCT [N]``: backend 1 answers after
SLOW_MS (the others after FAST_MS) and, when FAIL_PCT > 0, backend 2 answers 503 to that share of
requests. Prints ``ready`` once every listener is up; stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys


class Http(asyncio.Protocol):
    def __init__(self, name: str, delay: float, fail: float) -> None:
        self.name = name.encode()
        self.delay = delay
        self.fail = fail
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        loop = asyncio.get_running_loop()
        while b"\r\n\r\n" in self.buf:
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            close = b"connection: close" in head.lower()
            bad = self.fail and random.random() < self.fail
            loop.call_later(self.delay, self.answer, bad, close)

    def answer(self, bad: bool, close: bool) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        status = b"503 Service Unavailable" if bad else b"200 OK"
        t.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(self.name)).encode()
                + (b"\r\nConnection: close" if close else b"") + b"\r\n\r\n" + self.name)
        if close:
            t.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def main(port: int, fast_ms: float, slow_ms: float, fail_pct: float, n: int) -> None:
    loop = asyncio.get_running_loop()
    servers = []
    for i in range(1, n + 1):
        delay = (slow_ms if i == 1 else fast_ms) / 1000.0
        fail = fail_pct / 100.0 if i == 2 else 0.0
        name = f"b{i}"
        servers.append(await loop.create_server(lambda name=name, d=delay, f=fail: Http(name, d, f),
                                                f"127.77.0.{i}", port, backlog=1024))
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for s in servers:
        s.close()


if __name__ == "__main__":
    a = sys.argv[1:]
    asyncio.run(main(int(a[0]), float(a[1]), float(a[2]), float(a[3]), int(a[4]) if len(a) > 4 else 10))
