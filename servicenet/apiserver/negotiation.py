"""Content negotiation at the HTTP edge: request bodies in JSON, YAML or protobuf, answers in what the
client's Accept header asks for.

The handlers and the registry only ever see JSON dicts and produce JSON bodies. Here a protobuf
request body is decoded to the same dict kubectl would have sent as JSON, and a JSON answer (object,
list or ``Status``) is re-encoded as protobuf when the client prefers it (client-go's typed clients
send ``Accept: application/vnd.kubernetes.protobuf,application/json``).
"""

from __future__ import annotations

from typing import Any

import orjson
import yaml
from aiohttp import web

from servicenet.api import errors
from servicenet.api.pb import wire
from servicenet.api.pb.convert import ConversionError
from servicenet.apiserver.answer import Answer
from servicenet.common import log
from servicenet.store import Record

_log = log.get("apiserver")
JSON = "application/json"
PROTOBUF = wire.PROTOBUF
MAX_BODY = wire.MAX_BODY
ACCEPTED_BODIES = "application/json, application/yaml, application/vnd.kubernetes.protobuf"
_WARNINGS = web.RequestKey("servicenet.body_warnings", list)
_PROTOBUF_BODY = web.RequestKey("servicenet.protobuf_body", bool)
_JSON_TYPES = frozenset({"", "application/json", "text/json"})
_YAML_TYPES = frozenset({"application/yaml", "text/yaml", "application/x-yaml"})


def too_large() -> errors.ApiStatusError:
    return errors.ApiStatusError(413, "RequestEntityTooLarge", f"Request entity too large: limit is {MAX_BODY}")


def unsupported_body(media_type: str) -> errors.ApiStatusError:
    return errors.ApiStatusError(
        415, "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {ACCEPTED_BODIES}")


async def read_raw(request: web.Request) -> bytes:
    """The request body, refused with 413 above upstream's 3 MiB limit."""
    if (request.content_length or 0) > MAX_BODY:
        raise too_large()
    raw = await request.read()
    if len(raw) > MAX_BODY:
        raise too_large()
    return raw


def decode_body(request: web.Request, raw: bytes, *, share_pod_spec: bool = False) -> dict[str, Any]:
    """A create/update body as a JSON dict, whatever its media type; 4xx Status on bad input.

    Fields a protobuf body carries that its message does not define are handled by the request's
    ``fieldValidation`` right here (Strict: 400; Warn: a warning, see :func:`body_warnings`).
    ``share_pod_spec``: see :func:`servicenet.api.pb.wire.decode` (pod creates only).
    """
    media = wire.body_media_type(request.headers.get("Content-Type", ""))
    if not raw:
        raise errors.bad_request("the request body is empty")
    if media == PROTOBUF:
        return _decode_protobuf(request, raw, share_pod_spec)
    try:
        if media in _JSON_TYPES:
            obj = orjson.loads(raw)
        elif media in _YAML_TYPES:
            obj = yaml.safe_load(raw)
        else:
            raise unsupported_body(media)
    except (orjson.JSONDecodeError, yaml.YAMLError) as exc:
        what = "JSON" if media in _JSON_TYPES else "YAML"
        raise errors.bad_request(f"the object provided is unrecognized (must be of type {what}): {exc}") from None
    if not isinstance(obj, dict):
        raise errors.bad_request("the object provided is unrecognized (must be of type JSON object)")
    return obj


def _decode_protobuf(request: web.Request, raw: bytes, share_pod_spec: bool = False) -> dict[str, Any]:
    request[_PROTOBUF_BODY] = True
    fv = request.query.get("fieldValidation") or "Warn" if request.query_string else "Warn"
    try:
        decoded = wire.decode(raw, find_unknown=fv != "Ignore", share_pod_spec=share_pod_spec)
    except wire.ProtobufError as exc:
        raise errors.ApiStatusError(exc.code, exc.reason, exc.message) from None
    except RecursionError:
        raise errors.bad_request("the protobuf body is nested too deeply") from None
    if decoded.unknown:
        names = [f'unknown field "{u}"' for u in decoded.unknown]
        if fv == "Strict":
            raise errors.bad_request(f'{decoded.kind} in version "{decoded.api_version.rsplit("/", 1)[-1]}" '
                                     f"cannot be handled as a {decoded.kind}: strict decoding error: "
                                     + ", ".join(names))
        request[_WARNINGS] = names
    return decoded.obj


def fields_checked(request: web.Request) -> bool:
    """Whether the body's unknown fields were already found while decoding it: a protobuf body can
    only carry fields its messages define, and :func:`decode_body` reported any other field number
    under the request's ``fieldValidation``; the JSON-schema walk would find nothing more."""
    return request.get(_PROTOBUF_BODY, False)


def body_warnings(request: web.Request) -> list[str]:
    """Warnings found while decoding the body (unknown protobuf fields under ``fieldValidation=Warn``)."""
    found: list[str] = request.get(_WARNINGS, [])
    return list(found)


def delete_options(request: web.Request, raw: bytes) -> dict[str, Any]:
    """A DELETE body (DeleteOptions) in JSON or protobuf."""
    if wire.body_media_type(request.headers.get("Content-Type", "")) == PROTOBUF:
        try:
            return wire.decode(raw, find_unknown=False).obj
        except wire.ProtobufError as exc:
            raise errors.ApiStatusError(exc.code, exc.reason, exc.message) from None
    try:
        opts = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise errors.bad_request("the DeleteOptions body is not valid JSON") from None
    if not isinstance(opts, dict):
        raise errors.bad_request("the DeleteOptions body is not a JSON object")
    return opts


def wants_protobuf(request: web.Request) -> bool:
    return wire.wants_protobuf(request.headers.get("Accept", ""))


def protobuf_response(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """``resp`` re-encoded as protobuf when the client prefers it and its kind has a message."""
    accept = request.headers.get("Accept", "")
    if "protobuf" not in accept or not isinstance(resp, web.Response):
        return resp
    ctype = resp.headers.get("Content-Type", "")  # the raw header: aiohttp's content_type parses it
    if ctype != JSON and ctype.partition(";")[0].strip().lower() != JSON:
        return resp
    if not wire.wants_protobuf(accept):
        return resp
    body = resp.body
    if not isinstance(body, bytes | bytearray) or not body:
        return resp
    try:
        encoded = wire.encode(orjson.loads(body))
    except wire.NotEncodable as exc:
        if wire.only_protobuf(accept):
            return _status(errors.not_acceptable(str(exc)), protobuf=True)
        return resp
    except (orjson.JSONDecodeError, ConversionError, TypeError, ValueError, RecursionError) as exc:
        _log.warning("protobuf encoding failed, answering JSON", path=request.path, error=str(exc))
        return resp
    out = Answer(body=encoded, status=resp.status, content_type=PROTOBUF)
    for k, v in resp.headers.items():
        if k.lower() not in ("content-type", "content-length"):
            out.headers.add(k, v)
    return out


def created_answer(request: web.Request, obj: dict[str, Any], rec: Any, status: int,
                   headers: dict[str, str] | None) -> web.Response | None:
    """A create's answer in protobuf, encoded straight from the dict the store wrote, for a client
    that prefers protobuf; None when the JSON answer (and :func:`protobuf_response`) must serve.

    A store's ``create(key, obj)`` returns the record of exactly ``obj`` with its resourceVersion set
    (the Store contract, tests/store/test_store_api.py), and nothing touches ``obj`` after the write,
    so ``obj`` stamped with the record's revision is the stored object: no JSON answer is built, and
    the stored JSON is not decoded to encode it."""
    if type(rec) is not Record or not wire.wants_protobuf(request.headers.get("Accept", "")):
        return None
    md = obj.get("metadata")
    if type(md) is not dict:
        return None
    try:
        encoded = wire.encode({**obj, "metadata": {**md, "resourceVersion": str(rec.mod_revision)}})
    except (wire.NotEncodable, ConversionError, TypeError, ValueError, RecursionError):
        return None  # the JSON path answers (and says 406 where protobuf was the only choice)
    return Answer(body=encoded, status=status, content_type=PROTOBUF, headers=headers)


def _status(err: errors.ApiStatusError, protobuf: bool) -> web.Response:
    if protobuf:
        return Answer(body=wire.encode(err.status()), status=err.code, content_type=PROTOBUF)
    return Answer(body=orjson.dumps(err.status()), status=err.code, content_type=JSON)


def watch_encoder(request: web.Request) -> tuple[str, Any] | None:
    """For a protobuf watch: its Content-Type and a ``(type, object dict) -> frame`` encoder."""
    if not wants_protobuf(request):
        return None

    def frame(event_type: str, obj: dict[str, Any]) -> bytes:
        return wire.watch_frame(event_type, wire.encode(obj))
    return wire.PROTOBUF_WATCH, frame


# Stored objects encoded for protobuf watchers, by (key, revision): every watcher of a prefix gets the
# same event, and encoding is far dearer than framing. Bounded; cleared when full.
_ENCODED: dict[tuple[str, int], bytes] = {}
_ENCODED_MAX = 4096


def record_frame(event_type: str, rec: Record) -> bytes:
    """A protobuf watch frame for a stored record, its encoding shared between watchers."""
    key = (rec.key, rec.mod_revision)
    enveloped = _ENCODED.get(key)
    if enveloped is None:
        enveloped = wire.encode(rec.obj())
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        _ENCODED[key] = enveloped
    return wire.watch_frame(event_type, enveloped)
