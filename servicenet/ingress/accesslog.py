"""The access log: HAProxy sends one JSON line per request to a unix datagram socket; this keeps
them (optionally in a file) and turns them into per-route and per-backend Prometheus metrics."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import prometheus_client

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class AccessLog:
    def __init__(self, path: Path, registry: prometheus_client.CollectorRegistry,
                 route_name: Callable[[str], str], file: Path | None = None) -> None:
        self.path = path
        self.route_name = route_name
        self.file_path = file
        self._file: IO[str] | None = None
        self._sock: socket.socket | None = None
        self.requests = prometheus_client.Counter(
            "servicenet_ingress_requests", "Requests by route, backend and status code",
            ["route", "backend", "code"], registry=registry)
        self.latency = prometheus_client.Histogram(
            "servicenet_ingress_request_duration_seconds", "Request time (HAProxy Ta) by route and backend",
            ["route", "backend"], buckets=BUCKETS, registry=registry)
        self.bytes_out = prometheus_client.Counter(
            "servicenet_ingress_response_bytes", "Bytes sent to clients by route and backend",
            ["route", "backend"], registry=registry)
        self.lines = 0
        self._children: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}

    def forget_routes(self) -> None:
        """Route ids change with the table: resolve them again."""
        self._children.clear()

    def start(self, loop: Any) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(str(self.path))
        os.chmod(self.path, 0o600)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setblocking(False)
        self._sock = s
        if self.file_path is not None:
            fd = os.open(self.file_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._file = os.fdopen(fd, "a", buffering=1 << 16)
        loop.add_reader(s.fileno(), self._read)

    def _read(self) -> None:
        assert self._sock is not None
        for _ in range(256):
            try:
                data = self._sock.recv(8192)
            except BlockingIOError:
                break
            self.handle(data)
        if self._file is not None:
            self._file.flush()

    def handle(self, data: bytes) -> None:
        text = data.decode(errors="replace").strip()
        start = text.find("{")
        if start < 0:
            return
        line = text[start:]
        try:
            rec = json.loads(line)
        except ValueError:
            return
        self.lines += 1
        if self._file is not None:
            self._file.write(line + "\n")
        key = (str(rec.get("route") or "-"), str(rec.get("backend") or "-"), str(rec.get("status")))
        children = self._children.get(key)
        if children is None:  # label lookups once per (route, backend, status), not per request
            route = self.route_name(key[0])
            children = (self.requests.labels(route, key[1], key[2]), self.latency.labels(route, key[1]),
                        self.bytes_out.labels(route, key[1]))
            if len(self._children) > 100_000:
                self._children.clear()
            self._children[key] = children
        children[0].inc()
        ta = rec.get("t_total_ms")
        if isinstance(ta, int) and ta >= 0:
            children[1].observe(ta / 1000)
        b = rec.get("bytes_out")
        if isinstance(b, int):
            children[2].inc(b)

    def stop(self, loop: Any) -> None:
        if self._sock is not None:
            loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        if self._file is not None:
            self._file.close()
            self._file = None
