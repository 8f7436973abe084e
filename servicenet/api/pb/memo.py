"""Kept conversions of sub-messages that repeat, for the protobuf codec (:mod:`.decode`, :mod:`.encode`).

Objects of one kind repeat most of their bytes: a ReplicaSet's pods share their spec, a pod's status
updates keep it, containers share probes, ports and env. A conversion is a pure function of the
message type and its bytes (decoding) or its JSON text (encoding), so it can be kept by that key.

Each message type has its own :class:`Memo`: bounded in entries and in the size of what it keeps
(cleared when full), and switched off for a while when its hit rate is poor (an ``ObjectMeta`` never
repeats: keeping it would only cost). Types with a float anywhere below them are never kept: JSON text
does not tell ``NaN`` from ``null``.
"""

from __future__ import annotations

from functools import cache

from google.protobuf.descriptor import Descriptor, FieldDescriptor

MIN_BYTES = 24  # smaller messages convert faster than they are looked up
MAX_BYTES = 16 * 1024  # larger ones are not kept (a memo holds at most MAX_ENTRIES of them)
MAX_ENTRIES = 512
WINDOW = 256  # lookups per hit-rate check
MIN_HITS = WINDOW // 16  # fewer hits than this in a window: off for OFF_FOR lookups
OFF_FOR = 4096
BUDGET = 32 * 1024 * 1024  # bytes kept by all memos together (keys and values)
_held = [0]  # bytes kept now, all memos


class Memo:
    """Kept conversions of one message type, by key (the message's bytes or its JSON text)."""

    __slots__ = ("name", "kept", "tries", "hits", "off", "size")

    def __init__(self, name: str) -> None:
        self.name = name
        self.kept: dict[bytes, bytes] = {}
        self.tries = 0
        self.hits = 0
        self.off = 0
        self.size = 0  # bytes of keys and values kept

    def forget(self) -> None:
        _held[0] -= self.size
        self.size = 0
        self.kept.clear()

    def active(self) -> bool:
        """Whether to look this conversion up (counts down a switched-off period)."""
        if self.off:
            self.off -= 1
            return False
        return True

    def get(self, key: bytes) -> bytes | None:
        self.tries += 1
        out = self.kept.get(key)
        if out is not None:
            self.hits += 1
        elif self.tries >= WINDOW:
            if self.hits < MIN_HITS:
                self.off = OFF_FOR
                self.forget()
            self.tries = self.hits = 0
        return out

    def put(self, key: bytes, value: bytes) -> None:
        if len(key) > MAX_BYTES:
            return
        if len(self.kept) >= MAX_ENTRIES:
            self.forget()
        size = len(key) + len(value)
        if _held[0] + size > BUDGET:
            for m in _all:
                m.forget()
        self.kept[key] = value
        self.size += size
        _held[0] += size


@cache
def has_float(desc: Descriptor) -> bool:
    """Whether a message of this type can hold a float anywhere (itself or below)."""
    seen: set[str] = set()

    def walk(d: Descriptor) -> bool:
        if d.full_name in seen:
            return False
        seen.add(d.full_name)
        for fd in d.fields:
            if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
                return True
            if fd.type == FieldDescriptor.TYPE_MESSAGE and walk(fd.message_type):
                return True
        return False
    return walk(desc)


def clear() -> None:
    """Forget every kept conversion (tests)."""
    for m in _all:
        m.forget()
        m.tries = m.hits = m.off = 0


_all: list[Memo] = []


def new(name: str) -> Memo:
    m = Memo(name)
    _all.append(m)
    return m

