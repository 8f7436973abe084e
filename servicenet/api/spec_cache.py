"""Per-spec results of a pod create, kept for the next pod with the same spec.

Pods are written in bulk from templates (a ReplicaSet's, a Job's, a DaemonSet's): their specs are
equal, only the metadata differs. Two steps of a pod create read nothing but the spec:

* the create-time defaulting (``defaults.apply_defaults`` + ``prepare_for_create`` and the
  DefaultTolerationSeconds admission): it rewrites ``spec`` and sets ``status`` from it alone;
* the spec's validation (``validate_pod_spec``): a spec found valid once is valid again.

Both are kept under the spec's JSON text, so the second pod of a ReplicaSet costs an ``orjson.dumps``
of its spec instead of walking it. A key is the whole spec: two specs share a result only when they
encode alike. Specs that orjson cannot encode, or encodes lossily (datetimes, subclasses, NaN or
infinities as ``null``: any ``null`` in the text), are never kept; their results are computed every
time.

A third step changes the spec after those two: the service-account admission adds a token volume
whose name ends in five random characters, and mounts it in every container. Its result is kept
too (:func:`admitted_spec`), per defaulted spec text and admission inputs, as a template written
once with a placeholder name: each pod gets the template with its own name put in, and with it the
spec's JSON text and protobuf bytes, the placeholder replaced, noted in :mod:`servicenet.api.known`
for the store and the protobuf answer.

**Kept trees are shared, never copied.** With the C extension (``jsontree.FAST``), the defaulted
spec a create gets is the kept tree itself, and an admitted spec shares everything but the path to
each name with its template. Nothing on a create's path changes a spec after the defaulting except
the admission, which goes through :func:`admitted_spec`; code that must change a spec in place
first takes a copy of its own (:func:`own_spec`). tests/apiserver/test_spec_sharing.py checks that
every kept tree still equals its text after creates through every path.

Pure functions and two bounded dicts; no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import orjson

from servicenet.api import jsontree, known

MAX_ENTRIES = 512
# what plain JSON cannot hold makes orjson raise instead of writing a look-alike
STRICT = _STRICT = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATACLASS

_created: dict[tuple[Hashable, bytes], tuple[bytes, bytes, Any, Any]] = {}  # texts, trees
_valid: dict[tuple[Hashable, bytes], bool] = {}


def known_text(spec: Any) -> bytes | None:
    """The JSON text of ``spec`` if this very object's text is known (:mod:`servicenet.api.known`)."""
    return known.text(spec)


def spec_key(spec: Any) -> bytes | None:
    """The spec's JSON text, or None when it is not a dict or does not encode exactly."""
    noted = known.text(spec)
    if noted is not None:  # the text of a kept or admitted spec, already known
        return noted
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

    The kept spec is handed out shared (see the module's notes): the caller must not change it in
    place without :func:`own_spec`. Its text is noted in :mod:`servicenet.api.known`."""
    key = spec_key(obj.get("spec"))
    if key is None:
        fill(obj)
        return
    hit = _created.get((context, key))
    if hit is not None:
        if hit[2] is not None:
            obj["spec"] = hit[2]  # shared: nothing changes it
            try:
                obj["status"] = jsontree.copy(hit[3])
            except (TypeError, RecursionError):  # deeper than the C copy goes: parse the text
                obj["status"] = orjson.loads(hit[1])
        else:
            obj["spec"], obj["status"] = orjson.loads(hit[0]), orjson.loads(hit[1])
        known.note(obj["spec"], hit[0])  # kept texts hold no null (below): what spec_key would answer
        return
    own_spec(obj)  # a spec handed out shared (a protobuf body's kept spec) is filled in as a copy
    fill(obj)
    spec, status = obj.get("spec"), obj.get("status")
    if type(spec) is dict and type(status) is dict:
        try:
            texts = orjson.dumps(spec, option=_STRICT), orjson.dumps(status, option=_STRICT)
        except TypeError:
            return
        if jsontree.has_null(texts[0]):  # written lossily: handed out, never kept
            return
        # the kept trees are parsed from the texts: plain JSON, shared with no caller yet
        trees = (orjson.loads(texts[0]), orjson.loads(texts[1])) if jsontree.FAST else (None, None)
        _put(_created, (context, key), (*texts, *trees))
        known.note(spec, texts[0])  # this create's own tree, unchanged since it was written


def own_spec(obj: dict[str, Any]) -> dict[str, Any] | Any:
    """``obj["spec"]``, made the caller's own first if it may be shared (a kept tree, or any tree
    whose text is noted): after this, changing it in place is safe."""
    spec = obj.get("spec")
    if spec is None:
        spec = obj["spec"] = {}
    elif known.text(spec) is not None:
        try:
            spec = jsontree.copy(spec)
        except (TypeError, RecursionError):
            spec = orjson.loads(known.text(spec) or b"{}")
        obj["spec"] = spec
    return spec


# -- the service-account admission's result, per defaulted spec --------------------------------------

class _Admitted:
    """A spec as an admission left it, written with a placeholder name: the tree, the paths where the
    name stands, the text, and the protobuf bytes (made on first use; b"" when they cannot be)."""

    __slots__ = ("tree", "count", "plan", "text", "pb", "placeholder")

    def __init__(self, tree: dict[str, Any], paths: tuple[tuple[Any, ...], ...], text: bytes,
                 placeholder: bytes) -> None:
        self.tree, self.text, self.placeholder = tree, text, placeholder
        self.count, self.plan = len(paths), _plan(paths)
        self.pb: bytes | None = None

    def protobuf(self, name: bytes) -> bytes | None:
        if self.pb is None:
            self.pb = _encode_spec(self.tree, self.placeholder, self.count)
        return self.pb.replace(self.placeholder, name) if self.pb else None


_admitted: dict[tuple[Hashable, bytes], _Admitted | None] = {}

#: what writes a PodSpec's protobuf bytes (set by servicenet.api.pb.wire; None: not available)
spec_encoder: Callable[[dict[str, Any]], bytes] | None = None


def _encode_spec(tree: dict[str, Any], placeholder: bytes, count: int) -> bytes:
    """The template's protobuf bytes, or b"" when they cannot be used: the encoder is missing or
    fails, or the placeholder does not stand exactly where the name does."""
    if spec_encoder is None:
        return b""
    try:
        pb = spec_encoder(tree)
    except Exception:  # noqa: BLE001 - any failure: the answer is encoded the usual way
        return b""
    return pb if pb.count(placeholder) == count else b""


def _fill(node: Any, plan: dict[Any, Any], name: str) -> Any:
    """``node`` with ``name`` at the plan's paths: fresh dicts and lists along each path, everything
    else shared with ``node``."""
    c = dict(node) if type(node) is dict else list(node)
    for step, below in plan.items():
        c[step] = name if below is None else _fill(node[step], below, name)
    return c


def _plan(paths: tuple[tuple[Any, ...], ...]) -> dict[Any, Any]:
    """The paths as a tree of steps: ``{step: {step: None}}`` where None marks the name itself."""
    plan: dict[Any, Any] = {}
    for path in paths:
        at = plan
        for step in path[:-1]:
            at = at.setdefault(step, {})
        at[path[-1]] = None
    return plan


def admitted_spec(obj: dict[str, Any], inputs: Hashable, admit: Callable[[dict[str, Any], str], list[tuple[Any, ...]]],
                  name: str, placeholder: str) -> None:
    """``admit(obj["spec"], name)``, or its kept result. ``admit`` must read only the spec and
    ``inputs`` (part of the key), change only the spec, and return the paths (within the spec) where
    it wrote ``name``; ``placeholder`` is a stand-in of ``name``'s length that the template is
    written with. The admitted spec's text, and its protobuf bytes on demand, are noted."""
    spec = obj.get("spec")
    pre = known.text(spec)
    if pre is None or type(spec) is not dict or len(placeholder) != len(name):
        admit(own_spec(obj), name)
        return
    key = (inputs, pre)
    t = _admitted.get(key, _MISSING)
    if t is _MISSING:
        t = _template(spec, admit, placeholder)
        _put(_admitted, key, t)
    if t is None:  # the result cannot be kept for this spec: admitted afresh
        admit(own_spec(obj), name)
        return
    assert isinstance(t, _Admitted)
    new = _fill(t.tree, t.plan, name)
    obj["spec"] = new
    raw = name.encode()
    known.note(new, t.text.replace(t.placeholder, raw), lambda: t.protobuf(raw))


_MISSING: Any = object()


def _template(spec: dict[str, Any], admit: Callable[[dict[str, Any], str], list[tuple[Any, ...]]],
              placeholder: str) -> _Admitted | None:
    try:
        tree = jsontree.copy(spec)
    except (TypeError, RecursionError):
        return None
    paths = tuple(tuple(p) for p in admit(tree, placeholder))
    try:
        text = orjson.dumps(tree, option=_STRICT)
    except TypeError:
        return None
    ph = placeholder.encode()
    if jsontree.has_null(text) or text.count(ph) != len(paths):  # the stand-in is not only where we put it
        return None
    # the kept tree is parsed from its text: plain JSON, shared with no caller yet
    return _Admitted(orjson.loads(text), paths, text, ph)


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
