"""The API server's HTTP front: what runs around every request before the handlers see it.

aiohttp's low-level :class:`web.Server` calls one coroutine per request; the filter chain (audit,
authentication + authorization, flow control) is composed once, at start, into one callable (no
``web.Application``: no router, match info or per-request middleware plumbing for a server that
routes every path itself). The request metrics are plain counters in the event loop, exported by a
Prometheus collector under the names the client library's ``Counter``/``Histogram`` would use.
"""

from __future__ import annotations

import bisect
import functools
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

import prometheus_client
from aiohttp import hdrs, web
from aiohttp.http import HttpVersion11
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[..., Awaitable[web.StreamResponse]]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)
_WATCH = ("true", "1")
K = TypeVar("K")
V = TypeVar("V")


def compose(handler: Handler, middlewares: Sequence[Middleware]) -> Handler:
    """``middlewares`` (outermost first, each ``async (request, handler)``) around ``handler``."""
    for m in reversed(middlewares):
        handler = functools.partial(m, handler=handler)
    return handler


def request_factory(loop: Any, client_max_size: int) -> Callable[..., web.Request]:
    """Makes the ``web.Request`` objects aiohttp's low-level server hands to the front."""

    def make(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.Request:
        return web.Request(message, payload, protocol, writer, task, loop, client_max_size=client_max_size)

    return make


async def expect_continue(request: web.Request) -> None:
    """Answer ``Expect: 100-continue`` before the body is read (as ``web.Application`` does)."""
    expect = request.headers.get(hdrs.EXPECT, "")
    if request.version != HttpVersion11:
        return
    if expect.lower() != "100-continue":
        raise web.HTTPExpectationFailed(text=f"Unknown Expect: {expect}")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    await request.writer.drain()


def resource_label(path: str) -> str:
    """The ``resource`` label of the request metrics: the plural of a resource URL, else a path part."""
    parts = path.split("/")
    if len(parts) < 4:
        resource = parts[-1]
    elif parts[1] == "apis" and len(parts) > 4:
        resource = parts[4]
    else:
        resource = parts[3]
    if resource == "namespaces" and len(parts) > 5:
        resource = parts[6] if parts[1] == "apis" and len(parts) > 6 else parts[5]
    return resource[:40]


class Kept(Generic[K, V]):
    """Results per request key (method, path, query string...: they repeat, every create in a
    namespace has the same path), all forgotten at once past ``limit`` entries."""

    __slots__ = ("limit", "_kept")

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._kept: dict[K, V] = {}

    def get(self, key: K, default: V | None = None) -> V | None:
        return self._kept.get(key, default)

    def put(self, key: K, value: V) -> V:
        if len(self._kept) >= self.limit:
            self._kept.clear()
        self._kept[key] = value
        return value

    def clear(self) -> None:
        self._kept.clear()

    def __len__(self) -> int:
        return len(self._kept)


class PathLabels:
    """``resource_label`` per path, kept."""

    def __init__(self, limit: int = 4096) -> None:
        self._kept: Kept[str, str] = Kept(limit)

    def __call__(self, path: str) -> str:
        got = self._kept.get(path)
        return got if got is not None else self._kept.put(path, resource_label(path))


def verb_label(request: web.Request) -> str:
    if request.query_string and request.query.get("watch") in _WATCH:
        return "WATCH"
    return request.method


class RequestMetrics(Collector):
    """``apiserver_request_total`` (verb, resource, code) and ``apiserver_request_duration_seconds``
    (verb, resource), counted in plain Python numbers by the event loop and read by ``collect``."""

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.bounds = [float(b) for b in buckets] + [float("inf")]
        self._counts: dict[tuple[str, str, str], list[float]] = {}  # [count, created]
        self._hists: dict[tuple[str, str], list[float]] = {}  # per-bucket counts..., sum, created

    def record(self, verb: str, resource: str, code: int, seconds: float | None) -> None:
        key = (verb, resource, str(code))
        c = self._counts.get(key)
        if c is None:
            c = self._counts[key] = [0.0, time.time()]
        c[0] += 1.0
        if seconds is None:
            return
        hkey = (verb, resource)
        h = self._hists.get(hkey)
        if h is None:
            h = self._hists[hkey] = [0.0] * len(self.bounds) + [0.0, time.time()]
        h[bisect.bisect_left(self.bounds, seconds)] += 1.0
        h[-2] += seconds

    def collect(self) -> Iterator[Metric]:
        created = bool(getattr(prometheus_client.metrics, "_use_created", True))
        counter = CounterMetricFamily("apiserver_request", "API requests by verb, resource and code",
                                      labels=["verb", "resource", "code"])
        for key, (value, at) in list(self._counts.items()):
            counter.add_metric(list(key), value, created=at if created else None)
        yield counter
        hist = HistogramMetricFamily("apiserver_request_duration_seconds",
                                     "API request latency by verb and resource", labels=["verb", "resource"])
        names = [floatToGoString(b) for b in self.bounds]
        for (verb, resource), h in list(self._hists.items()):
            counts = h[:len(self.bounds)]
            acc, buckets = 0.0, []
            for name, n in zip(names, counts, strict=True):
                acc += n
                buckets.append((name, acc))
            hist.add_metric([verb, resource], buckets, h[-2])
            if created:
                hist.samples.append(Sample(hist.name + "_created", {"verb": verb, "resource": resource}, h[-1], None))
        yield hist
