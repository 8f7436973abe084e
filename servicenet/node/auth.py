"""The node agent's API authentication and authorization, as the kubelet's webhook modes do it.

A verified client certificate (the agent's TLS checks it against its client CA) names the user by
its CN and O entries; otherwise a bearer token is checked with a TokenReview. Then the user's right to the request with a
SubjectAccessReview on ``nodes/<subresource>`` named after this node (``/containerLogs`` →
``nodes/log`` is upstream's ``/logs`` mapping only for node logs; container logs, exec, attach,
port-forward and ``/pods`` are ``nodes/proxy``). Answers are cached briefly (upstream: 2 min
authenticated, 5 min allowed, 30 s denied); no credentials is 401, a denial 403.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from aiohttp import web

from servicenet.common import log
from servicenet.common.tls import peer_user

_log = log.get("node.auth")

OPEN_PATHS = ("/healthz", "/readyz", "/livez")
_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def subresource_for(path: str) -> str:
    """The ``nodes`` subresource a kubelet path is authorized against."""
    first = path.strip("/").split("/", 1)[0]
    return {"stats": "stats", "metrics": "metrics", "logs": "log", "spec": "spec", "configz": "configz",
            "healthz": "healthz"}.get(first, "proxy")


class NodeAuth:
    def __init__(self, client: Any, node_name: str, ttl_ok: float = 120.0, ttl_denied: float = 30.0) -> None:
        self.client = client
        self.node_name = node_name
        self.ttl_ok = ttl_ok
        self.ttl_denied = ttl_denied
        self._users: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._decisions: dict[tuple[str, str, str], tuple[float, bool, str]] = {}

    async def _review_token(self, token: str) -> dict[str, Any] | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        hit = self._users.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        out = await self.client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body={
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
        status = out.get("status") or {}
        user = status.get("user") if status.get("authenticated") else None
        self._users[key] = (now + (self.ttl_ok if user else self.ttl_denied), user)
        if len(self._users) > 4096:
            self._users.clear()
        return user

    async def _review_access(self, user: dict[str, Any], verb: str, sub: str) -> tuple[bool, str]:
        key = (user.get("username", ""), verb, sub)
        now = time.monotonic()
        hit = self._decisions.get(key)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        spec = {"user": user.get("username", ""), "groups": user.get("groups") or [],
                "uid": user.get("uid", ""), "extra": user.get("extra") or {},
                "resourceAttributes": {"verb": verb, "resource": "nodes", "subresource": sub,
                                       "name": self.node_name, "group": "", "version": "v1"}}
        out = await self.client.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body={
            "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
        st = out.get("status") or {}
        ok, reason = bool(st.get("allowed")), st.get("reason", "")
        self._decisions[key] = (now + (self.ttl_ok if ok else self.ttl_denied), ok, reason)
        if len(self._decisions) > 4096:
            self._decisions.clear()
        return ok, reason

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        if any(path == p or path.startswith(p + "/") for p in OPEN_PATHS):
            return await handler(request)  # type: ignore[no-any-return]
        transport = request.transport
        user = peer_user(transport.get_extra_info("peercert") if transport is not None else None)
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if user is None and (scheme.lower() != "bearer" or not token.strip()):
            return web.Response(status=401, text="Unauthorized")
        if user is None:
            try:
                user = await self._review_token(token.strip())
            except Exception as exc:  # the API server is unreachable: fail closed
                _log.warning("token review failed", error=repr(exc))
                return web.Response(status=503, text="cannot verify credentials now")
        if user is None:
            return web.Response(status=401, text="Unauthorized")
        sub = subresource_for(path)
        verb = _VERBS.get(request.method, request.method.lower())
        try:
            ok, _ = await self._review_access(user, verb, sub)
        except Exception as exc:
            _log.warning("access review failed", error=repr(exc))
            return web.Response(status=503, text="cannot verify access now")
        if not ok:
            return web.Response(status=403, text=(
                f"Forbidden (user={user.get('username', '')}, verb={verb}, resource=nodes, subresource(s)=[{sub}])"))
        return await handler(request)  # type: ignore[no-any-return]
