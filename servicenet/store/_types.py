"""Value types, errors and the ``Store`` protocol shared by every backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

EventType = Literal["ADDED", "MODIFIED", "DELETED"]
ADDED: EventType = "ADDED"
MODIFIED: EventType = "MODIFIED"
DELETED: EventType = "DELETED"


class StoreError(Exception):
    """Base class of every error the store raises."""


class KeyExists(StoreError):
    """``create`` of a key that is present."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key already exists: {key}")
        self.key = key


class KeyNotFound(StoreError):
    """``update``/``delete`` of a key that is absent."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class RevisionConflict(StoreError):
    """Compare-and-swap failure: the key's mod revision is not the expected one."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"revision conflict on {key}: expected {expected}, current {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class Compacted(StoreError):
    """The requested revision is older than the retained history (the API answers 410 Expired)."""

    def __init__(self, compact_revision: int, requested: int) -> None:
        super().__init__(
            f"required revision {requested} has been compacted (compact revision {compact_revision})"
        )
        self.compact_revision = compact_revision
        self.requested = requested


class FutureRevision(StoreError):
    """A read at a revision the store has not reached yet."""

    def __init__(self, revision: int, requested: int) -> None:
        super().__init__(f"requested revision {requested} is newer than the current revision {revision}")
        self.revision = revision
        self.requested = requested


class CommitFailed(StoreError):
    """The durable log could not commit the batch holding this write; the write did not happen."""


class StoreClosed(StoreError):
    """The store is not open."""


class WatchClosed(StoreError):
    """Reading from a watch that has been closed; ``reason`` says why."""

    def __init__(self, reason: str, error: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


@dataclass(frozen=True, slots=True)
class Record:
    """One version of one key. ``value`` is the encoded object, its resourceVersion already set."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int

    def obj(self) -> dict[str, Any]:
        """A freshly decoded copy of the object."""
        result: dict[str, Any] = orjson.loads(self.value)
        return result


@dataclass(frozen=True, slots=True)
class Event:
    """A committed change. For DELETED, ``record`` carries the last value at the deletion revision."""

    type: EventType
    record: Record
    prev: Record | None

    @property
    def revision(self) -> int:
        return self.record.mod_revision


Records = list[Record]


class WatchStream(Protocol):
    """What a backend's ``watch`` returns (implemented by :class:`servicenet.store.watch.Watch`)."""

    prefix: str
    closed_reason: str | None

    @property
    def closed(self) -> bool: ...

    @property
    def pending(self) -> int: ...

    def close(self, reason: str = "closed by client") -> None: ...

    async def next(self, timeout: float | None = None) -> Event | None: ...

    def __aiter__(self) -> AsyncIterator[Event]: ...


class Store(Protocol):
    """What the API server needs from storage. Reads are synchronous and served from memory."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    @property
    def revision(self) -> int:
        """Latest revision visible to readers (committed, applied and fanned out)."""
        ...

    @property
    def compact_revision(self) -> int:
        """History is kept for every revision strictly greater than this one."""
        ...

    def get(self, key: str) -> Record | None: ...

    def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        limit: int | None = None,
        revision: int | None = None,
    ) -> tuple[Records, int, bool]: ...

    def count(self, prefix: str, start_after: str | None = None) -> int: ...

    async def create(self, key: str, obj: dict[str, Any]) -> Record: ...

    async def update(
        self, key: str, obj: dict[str, Any], expected_mod_revision: int | None = None
    ) -> Record: ...

    async def delete(self, key: str, expected_mod_revision: int | None = None) -> Record: ...

    def watch(self, prefix: str, after_revision: int, *, queue_size: int = 10000) -> WatchStream: ...

    async def compact(self, revision: int) -> None: ...
