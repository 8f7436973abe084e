"""Per-spec results of a pod create, kept for the next pod with the same spec.

Pods are written in bulk from templates (a ReplicaSet's, a Job's, a DaemonSet's): their specs are
equal, only the metadata differs. Two steps of a pod create read nothing but the spec:

* the create-time defaulting (``defaults.apply_defaults`` + ``prepare_for_create`` and the
  DefaultTolerationSeconds admission): it rewrites ``spec`` and sets ``status`` from it alone;
* the spec's validation (``validate_pod_spec``): a spec found valid once is valid again.

Both are kept under the spec's JSON text, so the second pod of a ReplicaSet costs an ``orjson.dumps``
of its spec (and a copy of the kept result: nothing is shared between objects) instead of walking
it. The kept result is a tree copied by :func:`servicenet.api.jsontree.copy` (containers copied,
immutable leaves shared) when that is built in C, else its text, parsed again. A key is the whole spec: two specs share a result only when they encode alike. Specs
that orjson cannot encode, or encodes lossily (datetimes, subclasses, NaN or infinities as ``null``:
any ``null`` in the text), are never kept; their results are computed every time.

Pure functions and two bounded dicts; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import orjson

from servicenet.api import jsontree

MAX_ENTRIES = 512
# what plain JSON cannot hold makes orjson raise instead of writing a look-alike
_STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS

_created: dict[tuple[Hashable, bytes], tuple[bytes, bytes, Any, Any]] = {}  # texts, trees
_valid: dict[tuple[Hashable, bytes], bool] = {}


# The JSON text of the spec a pod create's defaulting just handed out, while the create's synchronous
# steps run (defaulting, validation, managedFields: none of them changes the spec): (spec, text).
# The registry clears it before anything that may change the spec (the service-account admission).
_hint: tuple[Any, bytes] | None = None


def known_text(spec: Any) -> bytes | None:
    """The JSON text of ``spec`` if it is the spec the current pod create's defaulting handed out."""
    h = _hint
    return h[1] if h is not None and h[0] is spec else None


def clear_hint() -> None:
    global _hint
    _hint = None


def spec_key(spec: Any) -> bytes | None:
    """The spec's JSON text, or None when it is not a dict or does not encode exactly."""
    h = _hint
    if h is not None and h[0] is spec:  # the text of the defaulted spec, already known
        return h[1]
    if type(spec) is not dict:
        return None
    try:
        text = orjson.dumps(spec, option=_STRICT)
    except TypeError:  # orjson.JSONEncodeError: unencodable, too deep, a non-str key, a big int...
        return None
    return None if jsontree.has_null(text) else text


def _put(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= MAX_ENTRIES:
        cache.clear()
    cache[key] = value


def pod_create_defaults(obj: dict[str, Any], context: Hashable, fill: Callable[[dict[str, Any]], None]) -> None:
    """``fill(obj)``, or its kept result. ``fill`` must read only ``obj["spec"]`` (and ``context``,
    which is part of the key), rewrite only ``spec`` and set ``status``; ``obj["status"]`` is replaced.

    When the defaulted spec's text is known (kept), it is noted for :func:`spec_key` and
    :func:`known_text` until :func:`clear_hint`: the caller must clear it before anything may change
    ``obj["spec"]``."""
    key = spec_key(obj.get("spec"))
    if key is None:
        fill(obj)
        return
    global _hint
    hit = _created.get((context, key))
    if hit is not None:
        if hit[2] is not None:
            try:
                obj["spec"], obj["status"] = jsontree.copy(hit[2]), jsontree.copy(hit[3])
            except (TypeError, RecursionError):  # deeper than the C copy goes: parse the text
                obj["spec"], obj["status"] = orjson.loads(hit[0]), orjson.loads(hit[1])
        else:
            obj["spec"], obj["status"] = orjson.loads(hit[0]), orjson.loads(hit[1])
        if not jsontree.has_null(hit[0]):  # what spec_key would answer for it
            _hint = (obj["spec"], hit[0])
        return
    fill(obj)
    spec, status = obj.get("spec"), obj.get("status")
    if type(spec) is dict and type(status) is dict:
        try:
            texts = orjson.dumps(spec, option=_STRICT), orjson.dumps(status, option=_STRICT)
        except TypeError:
            return
        # the kept trees are parsed from the texts: plain JSON, shared with no caller, never changed
        trees = (orjson.loads(texts[0]), orjson.loads(texts[1])) if jsontree.FAST else (None, None)
        _put(_created, (context, key), (*texts, *trees))
        if not jsontree.has_null(texts[0]):
            _hint = (spec, texts[0])


def spec_valid(spec: Any, context: Hashable, validate: Callable[[], list[Any]]) -> list[Any]:
    """``validate()`` (the errors of ``spec``, which it alone decides), skipped for a spec found valid
    before. Only valid specs are kept: errors are computed afresh."""
    key = spec_key(spec)
    if key is not None and (context, key) in _valid:
        return []
    errs = validate()
    if key is not None and not errs:
        _put(_valid, (context, key), True)
    return errs
