"""Encodings already known for JSON trees that a write hands on, by the tree's identity.

A pod create's spec usually comes out of a cache (:mod:`servicenet.api.spec_cache`) together with
its JSON text, and with a recipe for its protobuf bytes. The steps after it that would write the
spec out again (the store's ``orjson.dumps``, the shape key of managedFields, the protobuf answer)
ask here first and splice the known encoding in.

An entry is only ever made for a tree that nothing changes any more (a kept tree, or a spec the
write path finished); a tree that may still change must be :func:`forget`-ten before it does. The
table holds its trees (so an ``id`` cannot be reused while its entry lives) and starts again empty
when :data:`MAX_ENTRIES` are held: a tree that fell out is simply written out again. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_ENTRIES = 1024

# id(tree) -> (tree, JSON text, protobuf bytes | a function that makes them (None: cannot) | None)
_known: dict[int, tuple[Any, bytes, Any]] = {}


def note(tree: Any, text: bytes, protobuf: bytes | Callable[[], bytes | None] | None = None) -> None:
    """``text`` is ``orjson.dumps(tree)``; ``protobuf`` (or what it returns when called, once) is the
    tree's message bytes. The caller promises that ``tree`` does not change while it is noted."""
    if len(_known) >= MAX_ENTRIES:
        _known.clear()
    _known[id(tree)] = (tree, text, protobuf)


def text(tree: Any) -> bytes | None:
    """The noted JSON text of exactly this tree object, or None."""
    e = _known.get(id(tree))
    return e[1] if e is not None and e[0] is tree else None


def protobuf(tree: Any) -> bytes | None:
    """The noted protobuf bytes of exactly this tree object (made now if only their recipe was
    noted), or None."""
    k = id(tree)
    e = _known.get(k)
    if e is None or e[0] is not tree:
        return None
    pb = e[2]
    if callable(pb):
        pb = pb()
        _known[k] = (tree, e[1], pb)  # made once, kept for the next reader of the same tree
    return pb if type(pb) is bytes else None


def forget(tree: Any) -> None:
    """Drop ``tree``'s entry (before anything changes it)."""
    e = _known.get(id(tree))
    if e is not None and e[0] is tree:
        del _known[id(tree)]


def clear() -> None:
    _known.clear()
