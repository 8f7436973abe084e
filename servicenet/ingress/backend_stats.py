"""Per-backend request counters from HAProxy's own statistics, for when the access log is off.

HAProxy counts every backend's responses by status class and the bytes it sent (``show stat``,
backend rows). Reading them every few seconds costs nothing per request, unlike a log line; it gives
requests by backend and status class and response bytes, but no per-route split, exact status code
or latency histogram (those come from the access log). A reload starts a worker with fresh
counters: :class:`Totals` keeps the counts monotonic across it (the old worker's requests after the
last read are lost).

Pure: :func:`parse` and :class:`Totals` do no I/O; the controller feeds them the admin socket's
answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily

COMMAND = "show stat -1 2 -1"  # every proxy's BACKEND row
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "other")
FIELDS = tuple(f"hrsp_{c}" for c in CLASSES) + ("bout",)


def parse(text: str) -> dict[str, tuple[int, ...]]:
    """``show stat`` CSV → backend name → the values of :data:`FIELDS` (empty cells count 0)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        return {}
    header = lines[0][2:].split(",")
    try:
        idx = [header.index(f) for f in FIELDS]
        name_i, sv_i = header.index("pxname"), header.index("svname")
    except ValueError:
        return {}
    out: dict[str, tuple[int, ...]] = {}
    for ln in lines[1:]:
        cells = ln.split(",")
        if len(cells) < len(header) - 1 or cells[sv_i] != "BACKEND":
            continue
        out[cells[name_i]] = tuple(int(cells[i]) if cells[i].isdigit() else 0 for i in idx)
    return out


class Totals:
    """Monotonic totals per backend from successive readings, across counter resets (reloads)."""

    def __init__(self) -> None:
        self.base: dict[str, list[int]] = {}  # what earlier workers counted before a reset
        self.last: dict[str, tuple[int, ...]] = {}

    def update(self, reading: dict[str, tuple[int, ...]]) -> None:
        for be, vals in reading.items():
            prev = self.last.get(be)
            if prev is not None and any(v < p for v, p in zip(vals, prev, strict=True)):
                base = self.base.setdefault(be, [0] * len(FIELDS))
                for i, p in enumerate(prev):
                    base[i] += p
            self.last[be] = vals

    def totals(self) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for be, vals in self.last.items():
            base = self.base.get(be)
            out[be] = tuple(v + b for v, b in zip(vals, base, strict=True)) if base else vals
        return out


class Collector:
    """``servicenet_ingress_backend_responses_total{backend,code_class}`` and
    ``servicenet_ingress_backend_response_bytes_total{backend}``."""

    def __init__(self, totals: Totals) -> None:
        self.totals = totals

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        resp = CounterMetricFamily("servicenet_ingress_backend_responses",
                                   "Responses by HAProxy backend and status class (HAProxy's counters)",
                                   labels=["backend", "code_class"])
        out = CounterMetricFamily("servicenet_ingress_backend_response_bytes",
                                  "Bytes sent to clients by HAProxy backend (HAProxy's counters)", labels=["backend"])
        for be, vals in sorted(self.totals.totals().items()):
            for c, v in zip(CLASSES, vals, strict=False):
                resp.add_metric([be, c], v)
            out.add_metric([be], vals[-1])
        yield resp
        yield out
