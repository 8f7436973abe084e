"""servicenet.store: the revisioned key-value log under the API server (memory, SQLite; etcd in ``store.etcd``, imported only when used).

May import: api, common; only the API server imports it. Every object's resourceVersion is the
global revision. Pure parts: ``index`` (MVCC index), ``_plan``; shells: ``sqlite``, ``watch``.
"""

from ._types import (
    ADDED,
    DELETED,
    MODIFIED,
    CommitFailed,
    Compacted,
    Event,
    EventType,
    FutureRevision,
    KeyExists,
    KeyNotFound,
    Record,
    RevisionConflict,
    Store,
    StoreClosed,
    StoreError,
    WatchClosed,
)
from .index import Index
from .memory import MemoryStore
from .sqlite import SQLiteStore
from .watch import Watch

__all__ = [
    "ADDED",
    "DELETED",
    "MODIFIED",
    "CommitFailed",
    "Compacted",
    "Event",
    "EventType",
    "FutureRevision",
    "Index",
    "KeyExists",
    "KeyNotFound",
    "MemoryStore",
    "Record",
    "RevisionConflict",
    "SQLiteStore",
    "Store",
    "StoreClosed",
    "StoreError",
    "Watch",
    "WatchClosed",
]
