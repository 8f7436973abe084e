"""The wire-dict type and its one metadata accessor (no imports: every module may use them).

``Obj`` is what the API and the informer hand around: a Kubernetes object as a JSON dict.
``meta(o)`` is its ``metadata`` (``{}`` when absent or not a dict, a fresh one each time).
Declare neither again elsewhere; :mod:`servicenet.api.views` re-exports both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Obj = dict[str, Any]


def meta(o: Mapping[str, Any] | None) -> dict[str, Any]:
    """``o["metadata"]`` or ``{}`` (never ``None``, never a non-dict)."""
    m = o.get("metadata") if o else None
    return m if isinstance(m, dict) else {}
