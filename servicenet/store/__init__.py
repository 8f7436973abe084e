"""servicenet.store: the revisioned key-value log under the API server.

The global revision is every object's ``metadata.resourceVersion``. Reads (get, list, watch) are
served from the in-memory MVCC index; ``SQLiteStore`` adds a durable, group-committed log.
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
