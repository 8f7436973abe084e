"""The audit log backend: one ``audit.k8s.io/v1`` Event per line (JSON), written by a middleware
around authentication, at the level the policy file gives; size-based rotation (``path.1`` …
``path.N``); the file is the owner's only (0600).

Stages: ``RequestReceived`` and ``ResponseComplete`` for every audited request (both written when
the request ends), ``ResponseStarted`` as well for long-running requests (watch, exec, …).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from servicenet.api.audit_policy import Decision, Policy
from servicenet.api.errors import ApiStatusError
from servicenet.api.pb import wire
from servicenet.api.rbac import ANONYMOUS, UNAUTHENTICATED, Attributes, User, attributes_of
from servicenet.apiserver.authapi import ATTRS, DECISION, USER
from servicenet.apiserver.flowcontrol import is_long_running
from servicenet.common import log

_log = log.get("apiserver.audit")


def _as_json(body: bytes, media_type: str) -> Any:
    """A request or response body as the JSON object an audit event shows (upstream logs objects as
    JSON whatever the wire format), or None when it is neither JSON nor a decodable protobuf object."""
    try:
        if media_type == wire.PROTOBUF:
            return wire.decode(body, find_unknown=False).obj
        if media_type.endswith("json") or not media_type:
            return orjson.loads(body)
    except (orjson.JSONDecodeError, wire.ProtobufError, ValueError, RecursionError):
        pass
    return None


def micro_time(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class AuditLog:
    def __init__(self, policy_path: Path, log_path: Path, max_size_mb: int = 100, max_backups: int = 10) -> None:
        self.policy = Policy(yaml.safe_load(policy_path.read_text()) or {})
        self.path = log_path
        self.max_bytes = max_size_mb * 1024 * 1024
        self.max_backups = max_backups
        self._f: Any = None
        self._size = 0
        self._open()

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._f = os.fdopen(fd, "ab", buffering=0)
        self._size = os.fstat(fd).st_size

    def _rotate(self) -> None:
        self._f.close()
        for i in range(self.max_backups - 1, 0, -1):
            src = self.path.with_name(f"{self.path.name}.{i}")
            if src.exists():
                src.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.max_backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._open()

    def write(self, events: list[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(e) + b"\n" for e in events)
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        self._f.write(data)
        self._size += len(data)

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    # -- the middleware ------------------------------------------------------------------------------
    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        received = dt.datetime.now(dt.UTC)
        code, status_obj, resp = 500, None, None
        try:
            resp = await handler(request)
            code = resp.status
            return resp  # type: ignore[no-any-return]
        except ApiStatusError as exc:
            code, status_obj = exc.code, exc.status()
            raise
        except web.HTTPException as exc:
            code = exc.status
            raise
        finally:
            try:
                self._record(request, received, code, status_obj, resp)
            except Exception as exc:  # auditing must never break a request
                _log.warning("audit write failed", error=repr(exc))

    def _record(self, request: web.Request, received: dt.datetime, code: int, status_obj: Any,
                resp: web.StreamResponse | None) -> None:
        user: User = request.get(USER) or User(ANONYMOUS, (UNAUTHENTICATED,))
        attrs: Attributes = request.get(ATTRS) or attributes_of(request.method, request.path, request.query)
        decision: Decision = self.policy.decide(user, attrs)
        if decision.level == "None":
            return
        ev: dict[str, Any] = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": decision.level,
                              "auditID": str(uuid.uuid4()), "stage": "", "requestURI": request.rel_url.raw_path_qs,
                              "verb": attrs.verb, "user": {k: v for k, v in user.info().items() if k != "extra"},
                              "sourceIPs": [request.remote or ""],
                              "userAgent": request.headers.get("User-Agent", "")}
        imp = request.headers.get("Impersonate-User")
        if imp:
            ev["impersonatedUser"] = {"username": imp}
        if attrs.resource_request:
            ref = {"resource": attrs.resource, "namespace": attrs.namespace, "name": attrs.name,
                   "apiGroup": attrs.api_group, "apiVersion": attrs.api_version, "subresource": attrs.subresource}
            ev["objectRef"] = {k: v for k, v in ref.items() if v}
        rs: dict[str, Any] = {"metadata": {}, "code": code}
        if status_obj is not None:
            rs.update({k: status_obj[k] for k in ("status", "message", "reason") if status_obj.get(k)})
        ev["responseStatus"] = rs
        if decision.at_least("Request"):
            body = getattr(request, "_read_bytes", None)
            if body:
                obj = _as_json(body, wire.body_media_type(request.headers.get("Content-Type", "")))
                if obj is not None:
                    ev["requestObject"] = obj
        if decision.at_least("RequestResponse"):
            if status_obj is not None:
                ev["responseObject"] = status_obj
            elif isinstance(resp, web.Response) and isinstance(resp.body, bytes | bytearray):
                obj = _as_json(bytes(resp.body), resp.content_type or "")
                if obj is not None:
                    ev["responseObject"] = obj
        ev["requestReceivedTimestamp"] = micro_time(received)
        dec = request.get(DECISION)
        if dec is not None:
            ev["annotations"] = {"authorization.k8s.io/decision": "allow" if dec[0] else "forbid",
                                 "authorization.k8s.io/reason": dec[1]}
        elif code == 403:
            ev["annotations"] = {"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""}
        now = micro_time(dt.datetime.now(dt.UTC))
        stages = ["RequestReceived"] + (["ResponseStarted"] if is_long_running(request) else []) \
            + ["ResponseComplete"]
        out = []
        for stage in stages:
            if stage in decision.omit_stages:
                continue
            e = dict(ev, stage=stage, stageTimestamp=micro_time(received) if stage == "RequestReceived" else now)
            if stage == "RequestReceived":
                for k in ("responseStatus", "responseObject", "annotations"):
                    e.pop(k, None)
            out.append(e)
        if out:
            self.write(out)
