"""Two helpers for JSON trees kept between requests, from C when the protobuf codec's extension is
built (``servicenet/api/pb/_cpb.c``), else in Python with the same answers.

* :func:`copy` hands out a kept tree without parsing its text again: dicts and lists are copied,
  the leaves (str, int, float, bool, None) are shared, being immutable. Anything else raises
  ``TypeError``, so only what ``orjson.loads`` could have produced is copied.
* :func:`has_null` says whether an ``orjson.dumps`` text holds ``null`` (``memmem``; Python's
  ``in`` is several times slower for this needle on a 2 KB spec).
"""

from __future__ import annotations

from typing import Any

try:
    from servicenet.api.pb._cpb import copy_json as _copy  # type: ignore[import-not-found]
    from servicenet.api.pb._cpb import has_null as _has_null  # type: ignore[import-not-found]
except ImportError:  # not built: the pure-Python forms serve
    _copy = _has_null = None

_LEAVES = (str, int, float, bool, type(None))


def copy_py(tree: Any) -> Any:
    """The pure-Python :func:`copy` (the reference)."""
    if type(tree) is dict:
        return {k: copy_py(v) for k, v in tree.items()}
    if type(tree) is list:
        return [copy_py(v) for v in tree]
    if type(tree) in _LEAVES:
        return tree
    raise TypeError(f"not a JSON value: {type(tree).__name__}")


def has_null_py(text: bytes) -> bool:
    return b"null" in text


#: the C forms serve (a kept tree is then cheaper to copy than its text is to parse)
FAST = _copy is not None
copy: Any = _copy or copy_py
has_null: Any = _has_null or has_null_py
