"""The access log: HAProxy writes one JSON line per request into a ring buffer whose forwarder streams
them, in batches, to a unix socket this listens on; this keeps them (optionally in a file) and turns
them into per-route and per-backend Prometheus metrics.

The hot path is the data plane's: a ring write is a memory copy (no system call per request), and the
forwarder sends many lines per write. Here each batch is one ``recv``; the metric fields lead every
line in a fixed order (see ``render.LOG_FORMAT``), so one regular-expression pass over the batch (in
C) pulls them out, a ``Counter`` folds identical heads (most small responses share route, backend,
status, duration and size), and only the distinct heads reach Python-level arithmetic in
:class:`_Stats`, exposed through a custom collector. Every line is counted: nothing is sampled.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import prometheus_client
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_BUCKETS_MS = tuple(b * 1000 for b in BUCKETS)
PREFIX = '{"route":"'  # every line starts with the metric fields: route, backend, status, t_total_ms, bytes_out
# the head of every line of a batch, in one pass (route, backend, status, t_total_ms, bytes_out)
_HEADS = re.compile(rb'^\{"route":"([^",\n]*)","backend":"([^",\n]*)","status":(-?\d+),'
                    rb'"t_total_ms":(-?\d+),"bytes_out":(-?\d+),', re.M)


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
    def __init__(self, path: Path, registry: prometheus_client.CollectorRegistry,
                 route_name: Callable[[str], str], file: Path | None = None) -> None:
        self.path = path
        self.route_name = route_name
        self.file_path = file
        self._file: IO[str] | None = None
        self._server: asyncio.AbstractServer | None = None
        self.stats = _Stats()
        registry.register(_Collector(self.stats, self._name))
        self.lines = 0
        self._names: dict[str, str] = {}

    def _name(self, rid: str) -> str:
        name = self._names.get(rid)
        if name is None:
            name = self._names[rid] = self.route_name(rid)
        return name

    def forget_routes(self) -> None:
        """Route ids change with the table: resolve them again (counts stay with their ids)."""
        self._names.clear()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._conn, str(self.path), limit=1 << 20)
        os.chmod(self.path, 0o600)
        if self.file_path is not None:
            fd = os.open(self.file_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._file = os.fdopen(fd, "a", buffering=1 << 16)

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One forwarder connection (a worker's ring; a reload brings a new one): newline-ended lines."""
        rest = b""
        try:
            while data := await reader.read(1 << 18):
                end = data.rfind(b"\n") + 1
                if not end:
                    rest += data
                    continue
                self.handle(rest + data[:end])
                rest = data[end:]
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    def handle(self, data: bytes) -> None:
        """Whole lines (a batch from the forwarder): count every one, keep them in the file if any."""
        heads = _HEADS.findall(data)
        if not heads:
            return
        add = self.stats.add
        for (route, backend, status, ta, b), n in Counter(heads).items():
            add(route.decode(errors="replace"), backend.decode(errors="replace"), status.decode(), int(ta), int(b), n)
        self.lines += len(heads)
        f = self._file
        if f is not None:
            if len(heads) == data.count(b"\n"):
                f.write(data.decode(errors="replace"))
            else:  # only the access-log lines
                f.writelines(ln + "\n" for ln in data.decode(errors="replace").splitlines() if ln.startswith(PREFIX))
            f.flush()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        if self._file is not None:
            self._file.close()
            self._file = None
