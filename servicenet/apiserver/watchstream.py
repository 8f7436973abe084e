"""WATCH over HTTP: replay, live events, bookmarks and selector filtering (I/O shell).

Which event a selector-filtered watcher sees is decided by the pure
:func:`servicenet.apiserver.watchfilter.filter_event`; this module only reads the store and
writes newline-delimited JSON events.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

import orjson
from aiohttp import web

from servicenet.api import errors
from servicenet.api.errors import ApiStatusError
from servicenet.api.resources import ResourceInfo
from servicenet.apiserver import negotiation
from servicenet.apiserver.registry import prefix_for
from servicenet.apiserver.responses import JSON, TRUE, as_requested, render_table, view_obj, wants_table
from servicenet.apiserver.watchfilter import Selection, filter_event
from servicenet.store import Compacted, Event, FutureRevision, Record, Store, WatchClosed

__all__ = ["serve_watch", "watch_error"]

# Above this many bytes queued on a watcher's socket, fan-out stops writing to it directly and the
# watch's own task takes over (buffering, with the backlog limit, and waiting for the socket).
_DIRECT_LIMIT = 1 << 16


async def serve_watch(store: Store, request: web.Request, info: ResourceInfo, namespace: str | None,
                      selection: Selection) -> web.StreamResponse:
    """Serve one WATCH request until its timeout, the client leaving, or the store closing it."""
    q = request.query
    table = wants_table(request)
    bookmarks = q.get("allowWatchBookmarks") in TRUE
    send_initial = q.get("sendInitialEvents") in TRUE
    rv = q.get("resourceVersion") or ""
    try:
        timeout = float(q.get("timeoutSeconds") or 0) or random.uniform(1800, 3600)
    except ValueError:
        raise errors.bad_request("timeoutSeconds must be a number") from None
    prefix = prefix_for(info, namespace)
    initial: list[Record] = []
    if rv in ("", "0") or send_initial:
        initial, start, _ = store.list(prefix)
    else:
        try:
            start = int(rv)
        except ValueError:
            raise errors.bad_request(f"invalid resource version: {rv}") from None
    try:
        w = store.watch(prefix, start)
    except Compacted as exc:
        return await watch_error(request, errors.expired(
            f"too old resource version: {rv} ({exc.compact_revision})"))
    except FutureRevision:
        raise errors.ApiStatusError(504, "Timeout", "Too large resource version: " + rv,
                                    {"causes": [{"reason": "ResourceVersionTooLarge",
                                                 "message": "Too large resource version"}],
                                     "retryAfterSeconds": 1}) from None
    pb = None if table else negotiation.watch_encoder(request)
    resp = web.StreamResponse(status=200, headers={"Content-Type": pb[0] if pb else JSON,
                                                   "Cache-Control": "no-cache"})
    resp.enable_chunked_encoding()
    first_table = [True]

    def event(etype: str, obj: dict[str, Any]) -> bytes:
        if pb is not None:
            return bytes(pb[1](etype, obj))
        return orjson.dumps({"type": etype, "object": obj}) + b"\n"

    def encode(etype: str, rec: Record, obj: dict[str, Any] | None) -> bytes:
        rec = as_requested(info, rec)
        if pb is not None:  # from the stored bytes (a view's managedFields is not a list)
            return negotiation.record_frame(etype, rec)
        if table:
            o = obj if obj is not None else view_obj(rec)
            tbl = render_table(info, [o], request, str(rec.mod_revision))
            if not first_table[0]:
                tbl["columnDefinitions"] = None
            first_table[0] = False
            return orjson.dumps({"type": etype, "object": tbl}) + b"\n"
        return b'{"type":"' + etype.encode() + b'","object":' + rec.value + b"}\n"

    selecting = selection.active

    def render(events: Sequence[Event]) -> bytearray:
        out = bytearray()
        for e in events:
            if not selecting:
                out += encode(e.type, e.record, None)
                continue
            cur = view_obj(e.record)
            prev = view_obj(e.prev) if e.prev is not None and e.type != "DELETED" else None
            seen = filter_event(e.type, cur, prev, selection)
            if seen is not None:
                out += encode(seen, e.record, cur)
        return out

    last_rev = start
    transport = request.transport

    def sink(events: Sequence[Event]) -> bool:
        """Fan-out writes a batch to this watcher's socket itself while this task waits idle:
        no task switch per event per watcher. Declines while the socket is backed up."""
        nonlocal last_rev
        if transport is None or transport.is_closing() or transport.get_write_buffer_size() > _DIRECT_LIMIT:
            return False
        out = render(events)
        last_rev = events[-1].revision
        if out:
            transport.write(b"%x\r\n" % len(out) + out + b"\r\n")  # one HTTP/1.1 chunk, as resp.write frames it
        return True

    try:
        await resp.prepare(request)  # a StreamResponse sends its headers here: the sink may write after them
        buf = bytearray()
        for rec in initial:
            o = view_obj(rec) if selecting else None
            if o is None or selection.matches(o):
                buf += encode("ADDED", rec, o)
        if send_initial and bookmarks:
            buf += event("BOOKMARK", {
                "kind": info.kind, "apiVersion": info.api_version,
                "metadata": {"resourceVersion": str(start),
                             "annotations": {"k8s.io/initial-events-end": "true"}}})
        if buf:
            await resp.write(bytes(buf))
        if not table:
            w.set_sink(sink)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                ev = await w.next(timeout=min(remaining, 60.0))
            except WatchClosed as exc:
                if exc.error:
                    await resp.write(event("ERROR", errors.expired(f"watch closed: {exc.reason}").status()))
                break
            if ev is None:
                if bookmarks and last_rev < store.revision:
                    last_rev = store.revision
                if bookmarks:
                    await resp.write(event("BOOKMARK", {
                        "kind": info.kind, "apiVersion": info.api_version,
                        "metadata": {"resourceVersion": str(last_rev)}}))
                continue
            pending = [ev]
            # drain whatever else is queued so one write carries a burst
            while w.pending and len(pending) < 256:
                nxt = await w.next(timeout=0)
                if nxt is None:
                    break
                pending.append(nxt)
            last_rev = pending[-1].revision
            out = render(pending)
            if out:
                await resp.write(bytes(out))
            # the sink's writes bypass aiohttp's own flow-control count: wait here for a backed-up
            # socket (meanwhile events queue in the watch, whose backlog limit ends a stuck one)
            while (transport is not None and not transport.is_closing() and not w.closed
                   and transport.get_write_buffer_size() > _DIRECT_LIMIT and loop.time() < deadline):
                await asyncio.sleep(0.01)
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        w.set_sink(None)
        w.close()
    try:
        await resp.write_eof()
    except (ConnectionResetError, ConnectionError, RuntimeError):
        pass
    return resp


async def watch_error(request: web.Request, err: ApiStatusError) -> web.StreamResponse:
    pb = negotiation.watch_encoder(request)
    resp = web.StreamResponse(status=200, headers={"Content-Type": pb[0] if pb else JSON})
    await resp.prepare(request)
    await resp.write(pb[1]("ERROR", err.status()) if pb else
                     orjson.dumps({"type": "ERROR", "object": err.status()}) + b"\n")
    await resp.write_eof()
    return resp
