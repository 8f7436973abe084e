"""A small core/v1 Event recorder with aggregation.

``record`` never blocks: events are queued and written by a background task. An event equal
to a recent one (same object, type, reason, message) bumps ``count``/``lastTimestamp`` of
the existing Event instead of creating a new one, like client-go's EventCorrelator.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from servicenet.common import log
from servicenet.common.component import cancel_and_wait

from .actions import Obj, fmt_time, meta

_log = log.get("events")

MAX_CACHE = 4096
MAX_QUEUE = 10000


def involved_object(o: Obj) -> Obj:
    md = meta(o)
    ref: Obj = {
        "kind": o.get("kind", ""),
        "name": md.get("name", ""),
        "uid": md.get("uid", ""),
        "apiVersion": o.get("apiVersion", ""),
        "resourceVersion": md.get("resourceVersion", ""),
    }
    if md.get("namespace"):
        ref["namespace"] = md["namespace"]
    return ref


def new_event(involved: Obj, type_: str, reason: str, message: str, component: str, now: datetime, instance: str) -> Obj:
    ref = involved_object(involved)
    ns = ref.get("namespace") or "default"
    ts = fmt_time(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{ref['name']}.{time.time_ns():x}", "namespace": ns},
        "involvedObject": ref,
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component},
        "count": 1,
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "reportingComponent": component,
        "reportingInstance": instance,
    }


class EventRecorder:
    def __init__(self, client: Any, component: str) -> None:
        self.client = client
        self.component = component
        self.instance = f"{component}-{socket.gethostname()}"
        self._queue: asyncio.Queue[tuple[Obj, str, str, str]] = asyncio.Queue(MAX_QUEUE)
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0

    def record(self, involved: Obj, type_: str, reason: str, message: str) -> None:
        try:
            self._queue.put_nowait((involved, type_, reason, message))
        except asyncio.QueueFull:
            self.dropped += 1

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-recorder")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def flush(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not self._queue.empty() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                await self._write(*item)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.debug("event write failed", error=repr(exc))

    async def _write(self, involved: Obj, type_: str, reason: str, message: str) -> None:
        ref = involved_object(involved)
        key = (ref.get("namespace", ""), ref["kind"], ref["name"], ref["uid"], type_, reason, message)
        now = datetime.now(UTC)
        prev = self._seen.get(key)
        if prev is not None:
            ns, name, count = prev
            patch = {"count": count + 1, "lastTimestamp": fmt_time(now)}
            try:
                await self.client.patch("v1", "events", ns, name, patch, patch_type="merge")
                self._seen[key] = (ns, name, count + 1)
                self._seen.move_to_end(key)
                self.written += 1
                return
            except Exception:
                self._seen.pop(key, None)  # fall through: create a fresh event
        ev = new_event(involved, type_, reason, message, self.component, now, self.instance)
        out = await self.client.create("v1", "events", ev["metadata"]["namespace"], ev)
        self.written += 1
        self._seen[key] = (ev["metadata"]["namespace"], meta(out).get("name", ev["metadata"]["name"]), 1)
        while len(self._seen) > MAX_CACHE:
            self._seen.popitem(last=False)
