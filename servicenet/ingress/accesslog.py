"""The access log: HAProxy writes one JSON line per request to a pipe; this reads it in batches, keeps
the lines (optionally in a file) and turns them into per-route and per-backend Prometheus metrics.

The hot path is the data plane's: each worker thread writes its line to stdout, a non-blocking pipe
(one ``writev`` per request, as nginx writes its access log; no lock shared with a forwarder task;
a full pipe drops the line rather than block). The controller wakes every 100 ms (10 ms under heavy
logging) and reads whatever the pipe holds in one or a few ``read`` calls. The metric fields lead every line in a fixed order
(see ``render.LOG_FORMAT``): per line there is only C-level work (split, partition at the first
other field, a ``Counter`` folding identical heads — most small responses share route, backend,
status, duration and size), and only the distinct heads are parsed and added up in :class:`_Stats`,
exposed through a custom collector. Every line is counted: nothing is sampled.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

import prometheus_client
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

from servicenet.ingress.haproxy import LOG_PIPE_SIZE

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_BUCKETS_MS = tuple(b * 1000 for b in BUCKETS)
PREFIX = '{"route":"'  # every line starts with the metric fields: route, backend, status, t_total_ms, bytes_out
# a line's head (the metric fields) ends where its first non-metric field starts
_HEAD_END = b',"time":'
_HEAD = re.compile(rb'\{"route":"([^",]*)","backend":"([^",]*)","status":(-?\d+),"t_total_ms":(-?\d+),"bytes_out":(-?\d+)$')
_first = itemgetter(0)


class _Stats:
    """Counts by (route id, backend, status): requests, bytes, duration buckets and sum."""

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str, str], list[float]] = {}

    def add(self, route: str, backend: str, status: str, ta: int, b: int, n: int = 1) -> None:
        """``n`` requests with this head."""
        row = self.by_key.get((route, backend, status))
        if row is None:
            if len(self.by_key) > 100_000:
                self.by_key.clear()
            row = self.by_key[(route, backend, status)] = [0.0] * (len(BUCKETS) + 4)
        row[0] += n
        row[1] += max(b, 0) * n
        if ta >= 0:
            row[2 + bisect.bisect_left(_BUCKETS_MS, ta)] += n
            row[-1] += n * ta / 1000


class _Collector:
    def __init__(self, stats: _Stats, route_name: Callable[[str], str]) -> None:
        self.stats = stats
        self.route_name = route_name

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        req = CounterMetricFamily("servicenet_ingress_requests", "Requests by route, backend and status code",
                                  labels=["route", "backend", "code"])
        out = CounterMetricFamily("servicenet_ingress_response_bytes", "Bytes sent to clients by route and backend",
                                  labels=["route", "backend"])
        lat = HistogramMetricFamily("servicenet_ingress_request_duration_seconds",
                                    "Request time (HAProxy Ta) by route and backend", labels=["route", "backend"])
        merged: dict[tuple[str, str], list[float]] = {}
        for (rid, backend, status), row in list(self.stats.by_key.items()):
            route = self.route_name(rid)
            req.add_metric([route, backend, status], row[0])
            m = merged.setdefault((route, backend), [0.0] * len(row))
            for i, v in enumerate(row):
                m[i] += v
        for (route, backend), m in merged.items():
            out.add_metric([route, backend], m[1])
            acc, buckets = 0.0, []
            for i, bound in enumerate(BUCKETS):
                acc += m[2 + i]
                buckets.append((str(bound), acc))
            buckets.append(("+Inf", acc + m[2 + len(BUCKETS)]))
            lat.add_metric([route, backend], buckets, m[-1])
        yield req
        yield out
        yield lat


class AccessLog:
    """Reads the data plane's log pipe every ``period`` seconds, ten times as often while a period
    brings more than a quarter of the pipe (one wake-up per batch however many requests it holds;
    the pipe buffers 1 MB meanwhile), into metrics and, optionally, a file."""

    def __init__(self, registry: prometheus_client.CollectorRegistry, route_name: Callable[[str], str],
                 file: Path | None = None, period: float = 0.1) -> None:
        self.route_name = route_name
        self.file_path = file
        self.period = period
        self._file: IO[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self.stats = _Stats()
        registry.register(_Collector(self.stats, self._name))
        self.lines = 0
        self.cpu_seconds = 0.0  # CPU time spent reading and counting (benchmarks)
        self._names: dict[str, str] = {}

    def _name(self, rid: str) -> str:
        name = self._names.get(rid)
        if name is None:
            name = self._names[rid] = self.route_name(rid)
        return name

    def forget_routes(self) -> None:
        """Route ids change with the table: resolve them again (counts stay with their ids)."""
        self._names.clear()

    async def start(self, fd: int) -> None:
        """Read the non-blocking pipe ``fd`` (the caller owns and closes it)."""
        if self.file_path is not None:
            f = os.open(self.file_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._file = os.fdopen(f, "a", buffering=1 << 16)
        self._task = asyncio.get_running_loop().create_task(self._poll(fd), name="ingress-access-log")

    async def _poll(self, fd: int) -> None:
        rest = b""
        eof = False
        pause = self.period
        while not eof:
            await asyncio.sleep(pause)
            t0 = time.thread_time()
            chunks = [rest]
            while True:
                try:
                    data = os.read(fd, 1 << 20)
                except BlockingIOError:
                    break
                except OSError:  # closed under us (the data plane stopped)
                    data = b""
                if not data:
                    eof = True
                    break
                chunks.append(data)
            got = sum(map(len, chunks))
            # a quarter of the pipe in one period: come back sooner than the pipe can fill
            pause = self.period / 10 if got > LOG_PIPE_SIZE // 4 else self.period
            if len(chunks) > 1:
                buf = b"".join(chunks)
                end = buf.rfind(b"\n") + 1
                self.handle(buf[:end])
                rest = buf[end:]
            self.cpu_seconds += time.thread_time() - t0

    def handle(self, data: bytes) -> None:
        """Whole lines (a batch from the pipe): count every one, keep them in the file if any. Per
        line, only C-level work (split, partition, hashing into a Counter); Python-level parsing
        runs once per distinct head."""
        heads = Counter(map(_first, map(bytes.partition, data.split(b"\n"), repeat(_HEAD_END))))
        add = self.stats.add
        n = 0
        for head, k in heads.items():
            m = _HEAD.match(head)
            if m is None:
                continue  # not an access-log line (or the empty tail after the last newline)
            route, backend, status, ta, b = m.groups()
            add(route.decode(errors="replace"), backend.decode(errors="replace"), status.decode(), int(ta), int(b), k)
            n += k
        self.lines += n
        f = self._file
        if f is not None and n:
            if n == data.count(b"\n"):
                f.write(data.decode(errors="replace"))
            else:  # only the access-log lines
                f.writelines(ln + "\n" for ln in data.decode(errors="replace").splitlines() if ln.startswith(PREFIX))
            f.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._file is not None:
            self._file.close()
            self._file = None
