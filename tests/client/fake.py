"""A fake of the informer's one I/O seam (``list_pages`` + ``watch`` of ``ApiClient``), no sockets.

Like httpcore's mock streams: the test scripts what each watch connection yields (events, or an
exception to raise), and the fake records what the informer asked for.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any

Obj = dict[str, Any]


def pod(name: str, rv: int, **labels: str) -> Obj:
    return {"metadata": {"name": name, "namespace": "a", "resourceVersion": str(rv), "labels": dict(labels)}}


def event(etype: str, obj: Obj) -> Obj:
    return {"type": etype, "object": obj}


class FakeApi:
    def __init__(self, items: list[Obj], revision: int) -> None:
        self.items = {o["metadata"]["name"]: o for o in items}
        self.revision = revision
        self.scripts: deque[Iterable[Any]] = deque()  # one per watch connection
        self.lists = 0
        self.pages = 0
        self.watches: list[str | None] = []  # resourceVersion of each watch request
        self.idle = asyncio.Event()  # set once a watch finds no script left (the informer is parked)

    async def list_pages(self, api_version: str, plural: str, namespace: str | None = None, *,
                         label_selector: str | None = None, field_selector: str | None = None,
                         page: int = 500) -> AsyncIterator[Obj]:
        """Pages of ``page`` items; every page but the last carries a continue token."""
        self.lists += 1
        items = [copy.deepcopy(o) for o in self.items.values()]
        for start in range(0, max(1, len(items)), page):
            more = start + page < len(items)
            md = {"resourceVersion": str(self.revision), **({"continue": str(start + page)} if more else {})}
            self.pages += 1
            yield {"kind": "PodList", "apiVersion": "v1", "metadata": md, "items": items[start:start + page]}

    def watch(self, api_version: str, plural: str, namespace: str | None = None, *,
              resource_version: str | None = None, label_selector: str | None = None,
              field_selector: str | None = None, timeout_seconds: int | None = None,
              allow_bookmarks: bool = True) -> AsyncIterator[Obj]:
        self.watches.append(resource_version)
        return self._stream(self.scripts.popleft() if self.scripts else None)

    async def _stream(self, script: Iterable[Any] | None) -> AsyncIterator[Obj]:
        if script is None:
            self.idle.set()
            await asyncio.Event().wait()  # an open watch with nothing to say (until cancelled)
            return
        for item in script:
            if isinstance(item, BaseException):
                raise item
            yield item


class SleepRecorder:
    """Stands in for ``asyncio.sleep``: records each delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)
