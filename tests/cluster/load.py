"""Steady load and fault bookkeeping for the fault tests (the pure part, plus the ConfigMap writer).

* :func:`parse_pod_log` reads what ``loadclient.py`` wrote in a pod: one sample per request.
* :class:`Writer` creates ConfigMaps through every API server, in turn, and keeps the name of each
  acknowledged create (to prove none is lost) and the time of every failure.
* :class:`Fault` is one injected fault's window; :func:`figures` turns the samples into its failed
  request counts (per stream) and its time to recover: from the injection to the last failed
  request of the window (0 when none failed), or to the fault's own recovery mark if later.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from servicenet.client import ApiClient, ApiError


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # unix time the request was sent
    stream: str  # e.g. "http@node-1", "dns@node-2", "write@api-0"
    ok: bool
    detail: str = ""
    done: float = 0.0  # unix time it ended

    @property
    def at(self) -> float:
        """Where the sample counts: a success when it was sent, a failure when it failed (a
        request in flight when a fault struck is that fault's failure)."""
        return self.t if self.ok else max(self.t, self.done)


def parse_pod_log(text: str, node: str) -> list[Sample]:
    out = []
    for line in text.splitlines():
        parts = line.split(" ", 4)
        if len(parts) < 4:
            continue  # a line being written
        try:
            t = float(parts[0])
        except ValueError:
            continue
        try:
            done = t + float(parts[3]) / 1000
        except ValueError:
            done = t
        out.append(Sample(t, f"{parts[1]}@{node}", parts[2] == "ok", parts[4] if len(parts) > 4 else "", done))
    return out


@dataclass
class Fault:
    name: str
    start: float  # unix time of the injection
    end: float = 0.0  # end of its window (the next fault, or the end of the run)
    recovered: float = 0.0  # the fault's own recovery mark (e.g. a new leader, endpoints gone), if any
    notes: dict[str, Any] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()  # streams not counted (a stopped node's own pod, the killed server's clients)


def figures(fault: Fault, samples: Iterable[Sample]) -> dict[str, Any]:
    """Failed requests per stream kind in the fault's window, and its time to recover (s)."""
    failed: dict[str, int] = {}
    total: dict[str, int] = {}
    last_fail = fault.start
    excluded: dict[str, int] = {}
    for s in samples:
        if not fault.start <= s.at < fault.end:
            continue
        kind = s.stream.split("@", 1)[0]
        if s.stream in fault.exclude:
            excluded[kind] = excluded.get(kind, 0) + (not s.ok)
            continue
        total[kind] = total.get(kind, 0) + 1
        if not s.ok:
            failed[kind] = failed.get(kind, 0) + 1
            last_fail = max(last_fail, s.at)
    recover = max(last_fail, fault.recovered or fault.start) - fault.start
    return {"fault": fault.name, "requests": total, "failed": failed, "failed_excluded_streams": excluded,
            "recover_s": round(recover, 2), **fault.notes}


def table(rows: list[dict[str, Any]]) -> str:
    kinds = sorted({k for r in rows for k in r["requests"]})
    head = f"{'fault':<34}" + "".join(f"{k + ' failed/total':>22}" for k in kinds) + f"{'recover s':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = "".join(f"{str(r['failed'].get(k, 0)) + '/' + str(r['requests'].get(k, 0)):>22}" for k in kinds)
        lines.append(f"{r['fault']:<34}{cells}{r['recover_s']:>11.2f}")
        extra = {k: v for k, v in r.items() if k not in ("fault", "requests", "failed", "recover_s")}
        if extra:
            lines.append("    " + json.dumps(extra, sort_keys=True))
    return "\n".join(lines)


class Writer:
    """Creates ConfigMaps ``w-<n>`` through each client in turn, ``rate`` per second in all."""

    def __init__(self, clients: dict[str, ApiClient], namespace: str = "default", rate: float = 10.0,
                 timeout: float = 5.0) -> None:
        self.clients = clients
        self.namespace = namespace
        self.period = 1.0 / rate
        self.timeout = timeout
        self.acked: list[str] = []
        self.samples: list[Sample] = []
        self._task: asyncio.Task[None] | None = None
        self._n = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _one(self, server: str, client: ApiClient, name: str) -> None:
        """One create, recorded at the time it was sent (a failure counts in the window it began in)."""
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"via": server}}
        sent = time.time()
        try:
            await client.request("POST", f"/api/v1/namespaces/{self.namespace}/configmaps", body=body,
                                 timeout=self.timeout)
        except (ApiError, OSError, TimeoutError, aiohttp.ClientError) as e:  # not acknowledged: counted
            self.samples.append(Sample(sent, f"write@{server}", False, f"{type(e).__name__}:{str(e)[:80]}",
                                       time.time()))
            return
        self.acked.append(name)
        self.samples.append(Sample(sent, f"write@{server}", True, "", time.time()))

    async def _run(self) -> None:
        servers = list(self.clients.items())
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                server, client = servers[self._n % len(servers)]
                name = f"w-{self._n}"
                self._n += 1
                t = asyncio.create_task(self._one(server, client, name))
                pending.add(t)
                t.add_done_callback(pending.discard)
                await asyncio.sleep(self.period)
        finally:
            for t in pending:
                t.cancel()

    async def missing(self, client: ApiClient) -> list[str]:
        """Acknowledged names not in the store, as ``client`` lists them."""
        have = {o["metadata"]["name"] for o in (await client.list_all("v1", "configmaps", self.namespace))["items"]}
        return [n for n in self.acked if n not in have]


def write_json(path: Path, rows: list[dict[str, Any]], samples: list[Sample], extra: dict[str, Any]) -> None:
    """The figures, plus every failed request (time, stream, why)."""
    failed = [[round(s.t, 3), round(s.done, 3), s.stream, s.detail]
              for s in sorted(samples, key=lambda s: s.t) if not s.ok]
    path.write_text(json.dumps({"faults": rows, "failed_requests": failed, **extra}, indent=2, sort_keys=True))
