"""Optional active health checks: probe every endpoint on an interval (TCP connect or HTTP GET).

A probe that fails ``unhealthy`` times in a row takes the endpoint out; ``healthy`` passes bring it
back. Verdicts go to :meth:`Balancer.set_active`; passive outlier detection works independently.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from servicenet.common.component import bounded, cancel_and_wait
from servicenet.lb.balancer import Balancer
from servicenet.lb.model import Endpoint


@dataclass(frozen=True, slots=True)
class CheckConfig:
    interval: float = 5.0
    timeout: float = 1.0
    unhealthy: int = 3
    healthy: int = 1
    http_path: str | None = None  # None: a TCP connect is the probe


async def probe(ep: Endpoint, cfg: CheckConfig) -> bool:
    try:
        reader, writer = await bounded(asyncio.open_connection(ep.address, ep.port), cfg.timeout)
    except (OSError, TimeoutError):
        return False
    try:
        if cfg.http_path is None:
            return True
        writer.write(f"GET {cfg.http_path} HTTP/1.1\r\nHost: {ep.address}\r\nConnection: close\r\n\r\n".encode())
        line = await bounded(reader.readline(), cfg.timeout)
        parts = line.split()
        return len(parts) >= 2 and parts[1].isdigit() and 200 <= int(parts[1]) < 400
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


class ActiveChecker:
    def __init__(self, balancer: Balancer, config: CheckConfig = CheckConfig()) -> None:
        self.balancer = balancer
        self.config = config
        self._streak: dict[str, int] = {}  # >0 passes in a row, <0 failures in a row
        self._task: asyncio.Task[None] | None = None

    async def check_once(self) -> None:
        eps = [b.ep for b in self.balancer.members]
        results = await asyncio.gather(*(probe(e, self.config) for e in eps))
        for e, ok in zip(eps, results, strict=True):
            s = self._streak.get(e.key, 0)
            s = (max(s, 0) + 1) if ok else (min(s, 0) - 1)
            self._streak[e.key] = s
            if s <= -self.config.unhealthy:
                self.balancer.set_active(e.key, False)
            elif s >= self.config.healthy:
                self.balancer.set_active(e.key, True)

    async def _loop(self) -> None:
        while True:
            await self.check_once()
            await asyncio.sleep(self.config.interval)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="lb-active-checks")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
