"""Responses and cheap object views for the resource handlers.

Kept apart from the verbs: how a LIST body is streamed, how a stored record is decoded without
its bulky ``managedFields`` (byte-identical on the way out), and content negotiation.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import re
from collections.abc import Iterator
from typing import Any

import orjson
from aiohttp import web

from servicenet.api import tables
from servicenet.api.crd import present, served
from servicenet.api.crd import schema as crd_schema
from servicenet.api.resources import ResourceInfo
from servicenet.apiserver.answer import Answer
from servicenet.store import Record

JSON = "application/json"
TRUE = ("true", "1", "True")


# kube-apiserver's JSON encoder ends every document with a newline; clients compare error texts with it.
NL = b"\n"


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = obj + NL if isinstance(obj, bytes) else orjson.dumps(obj, option=orjson.OPT_APPEND_NEWLINE)
    return Answer(body=body, status=status, content_type=JSON, headers=headers)


def as_requested(info: ResourceInfo, rec: Any) -> Any:
    """``rec`` (a Record or a dict) as the requested version of a custom resource shows it: the
    ``None`` conversion rewrites ``apiVersion``, and the version's schema defaults apply on read too
    (a default added to the CRD after the object was written shows, as upstream). Built-ins pass."""
    cv = served.version(info)
    if cv is None:
        return rec
    want = info.api_version
    if isinstance(rec, dict):
        return {**rec, "apiVersion": want} if rec.get("apiVersion") != want else rec
    obj = orjson.loads(rec.value)
    changed = crd_schema.default(obj, cv.schema)
    if obj.get("apiVersion") != want:
        obj["apiVersion"] = want
        changed = True
    if not changed:
        return rec
    return Record(rec.key, orjson.dumps(obj), rec.create_revision, rec.mod_revision)


def record_response(rec: Record | dict[str, Any], status: int = 200,
                    headers: dict[str, str] | None = None) -> web.Response:
    if isinstance(rec, Record):
        return Answer(body=rec.value + NL, status=status, content_type=JSON, headers=headers)
    return json_response(rec, status, headers)


# LIST bodies above this size are streamed in pieces instead of joined into one buffer: a 10,000-pod
# list is ~45 MB, and building it with concatenations copied it three times (page faults included).
_STREAM_LIST_OVER = 1 << 20
_STREAM_PIECE = 256 * 1024


async def send_list(request: web.Request, prefix: bytes, items: list[bytes], suffix: bytes) -> web.StreamResponse:
    """Answer ``prefix + b",".join(items) + suffix`` (a JSON list) with Content-Length, copying little."""
    suffix += NL
    size = len(prefix) + len(suffix) + sum(map(len, items)) + max(0, len(items) - 1)
    if size <= _STREAM_LIST_OVER or "protobuf" in request.headers.get("Accept", ""):
        # one body: a client that asked for protobuf gets it re-encoded at the edge (negotiation)
        return Answer(body=b"".join((prefix, b",".join(items), suffix)), content_type=JSON)
    resp = web.StreamResponse(status=200)
    resp.content_type = JSON
    resp.content_length = size
    await resp.prepare(request)
    piece: list[bytes] = [prefix]
    filled = len(prefix)
    for i, item in enumerate(items):
        if i:
            piece.append(b",")
        piece.append(item)
        filled += len(item)
        if filled >= _STREAM_PIECE:
            await resp.write(b"".join(piece))
            piece, filled = [], 0
    piece.append(suffix)
    await resp.write(b"".join(piece))
    await resp.write_eof()
    return resp


_MANAGED_FIELDS = b'"managedFields":['
_MF_THEN_RV = b'],"resourceVersion":"'
_PLACEHOLDER = "\x00servicenet:managedFields"
_PLACEHOLDER_JSON = orjson.dumps(_PLACEHOLDER)


def _array_end(value: bytes, start: int) -> int:
    """Index just past the ``]`` closing the array opened at ``value[start]``; -1 when unsure.

    Only for arrays without nested arrays (managedFields: objects of strings and objects): the first
    ``]`` outside a string closes it. A ``]`` is outside strings when the unescaped quotes before it
    are even in number; any ``[`` or escaped backslash in between makes us give up (the caller then
    decodes normally).
    """
    # Objects written here usually have managedFields right before the resourceVersion the store
    # appends. A ``],"resourceVersion":"`` can only be structural (a quote after a comma is never
    # escaped, and a string cannot be followed by ``resourceVersion"``), and with no ``[`` after
    # ``start`` it closes the array at ``start`` if that array is metadata's own (checked by the caller).
    end = value.find(_MF_THEN_RV, start)
    if end >= 0 and value.find(b"[", start + 1, end) < 0:
        return end + 1
    pos = start + 1
    while True:
        end = value.find(b"]", pos)
        if end < 0:
            return -1
        if value.find(b"[", start + 1, end) >= 0 or value.find(b"\\\\", start + 1, end) >= 0:
            return -1
        if (value.count(b'"', start + 1, end) - value.count(b'\\"', start + 1, end)) % 2 == 0:
            return end + 1
        pos = end + 1


# how the store writes nearly every object: apiVersion, kind, then metadata (strings without escapes)
_HEAD = re.compile(rb'\{"apiVersion":"[^"\\]*","kind":"[^"\\]*","metadata":\{')


def metadata_view(rec: Record) -> dict[str, Any]:
    """``{"metadata": ...}`` of ``rec`` without ``managedFields``, decoding only the metadata's bytes,
    for readers of metadata alone (the garbage collector reads every write).

    The store writes ``resourceVersion`` last in metadata, so its metadata is the bytes from the
    ``{`` after a leading ``"metadata":`` to the first ``"resourceVersion":"<revision>"}``: if that
    text closed an object nested inside metadata instead, the bytes would not be one JSON object and
    would not decode. Anything unexpected falls back to :func:`view_obj`.
    """
    value = rec.value
    m = _HEAD.match(value)
    if m is not None:
        start = m.end() - 1
        tail = b'"resourceVersion":"%d"}' % rec.mod_revision
        end = value.find(tail, start)
        if end > 0:
            md = _metadata_only(value[start:end + len(tail)])
            if md is not None and md.get("resourceVersion") == str(rec.mod_revision):
                return {"metadata": md}
    return view_obj(rec)


def _metadata_only(piece: bytes) -> dict[str, Any] | None:
    i = piece.find(_MANAGED_FIELDS)
    try:
        if i < 0:
            md = orjson.loads(piece)
        else:
            start = i + len(_MANAGED_FIELDS) - 1
            end = _array_end(piece, start)
            if end < 0:
                return None
            md = orjson.loads(piece[:start] + _PLACEHOLDER_JSON + piece[end:])
            if not isinstance(md, dict) or md.get("managedFields") != _PLACEHOLDER:
                return None
            del md["managedFields"]
    except orjson.JSONDecodeError:
        return None
    return md if isinstance(md, dict) else None


def view_obj(rec: Record) -> dict[str, Any]:
    """``rec.obj()`` for read-only uses that re-encode with orjson (Tables, selector matching).

    ``metadata.managedFields`` (about half of a typical object's bytes, and many small dicts) is not
    decoded: it stays the original JSON text as an ``orjson.Fragment``, which ``orjson.dumps`` writes
    back verbatim. Falls back to a full decode whenever the text is not as expected.
    """
    value = rec.value
    i = value.find(_MANAGED_FIELDS)
    if i < 0:
        return rec.obj()
    start = i + len(_MANAGED_FIELDS) - 1
    end = _array_end(value, start)
    if end < 0:
        return rec.obj()
    try:
        obj: dict[str, Any] = orjson.loads(value[:start] + _PLACEHOLDER_JSON + value[end:])
    except orjson.JSONDecodeError:  # the span was not metadata's array after all
        return rec.obj()
    md = obj.get("metadata")
    if not isinstance(md, dict) or md.get("managedFields") != _PLACEHOLDER:
        return rec.obj()  # the key found was not metadata's own
    md["managedFields"] = orjson.Fragment(value[start:end])
    return obj


@contextlib.contextmanager
def collector_paused(pause: bool = True) -> Iterator[None]:
    """Keep the cyclic GC from running inside a synchronous stretch that decodes many objects.

    A LIST page decoded for a Table or a selector is thousands of short-lived, acyclic objects that
    reference counting frees right after; a collection in the middle would scan them, promote them
    and bring the next full collection (which walks every stored record) closer.
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def _obj(rec: Record | dict[str, Any]) -> dict[str, Any]:
    return rec.obj() if isinstance(rec, Record) else rec


def render_table(info: ResourceInfo, objs: list[dict[str, Any]], request: web.Request, rv: str,
                 continue_token: str | None = None) -> dict[str, Any]:
    """The ``meta.k8s.io/v1`` Table kubectl asked for (``includeObject`` defaults to Metadata)."""
    cv = served.version(info)
    if cv is not None:  # a custom resource: its additionalPrinterColumns
        return present.to_table(cv, objs, now=dt.datetime.now(dt.UTC), include_object=request.query.get(
            "includeObject"), resource_version=rv, continue_token=continue_token)
    include = request.query.get("includeObject") or "Metadata"
    return tables.to_table(info.kind, objs, now=dt.datetime.now(dt.UTC), include_object=include,
                           resource_version=rv, continue_token=continue_token)
