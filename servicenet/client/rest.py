"""Async REST client for the Kubernetes API (works against servicenet or a real kube-apiserver)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from servicenet.api.views import meta as meta_of
from servicenet.client.kubeconfig import ClusterConfig, load
from servicenet.common import log

_log = log.get("client")
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE"})
# answers of a server that cannot do its job (e.g. cut off etcd): the client moves on after one
UNHEALTHY = frozenset({500, 503, 504})

TOKEN_RECHECK = 10.0  # seconds between looks at a kubeconfig's tokenFile
# How long an idle connection is kept for the next request: client-go's transport keeps them 90 s
# (IdleConnTimeout). aiohttp's default of 15 s closed a controller's connections between its sparse
# writes, so the next burst of writes waited for fresh TLS handshakes on both sides (the first
# readiness flip after a quiet spell, at 1,000 nodes: a 250 ms slice write).
IDLE_CONN_TIMEOUT = 90.0


def _mtime(path: str | None) -> tuple[int, int, int]:
    """What tells a rewritten file (inode, mtime, size: a swap makes a new inode within one clock tick)."""
    with contextlib.suppress(OSError):
        if path:
            st = os.stat(path)
            return st.st_ino, st.st_mtime_ns, st.st_size
    return 0, 0, 0


PATCH_TYPES = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


class ApiError(Exception):
    """A non-2xx answer from the API server; ``body`` is the Status object when there is one."""

    def __init__(self, status: int, body: dict[str, Any] | None, text: str = "") -> None:
        self.status = status
        self.body = body or {}
        self.reason = self.body.get("reason", "") if isinstance(self.body, dict) else ""
        self.message = self.body.get("message", text) if isinstance(self.body, dict) else text
        super().__init__(f"{status} {self.reason}: {self.message}")


def collection_path(api_version: str, plural: str, namespace: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    if namespace:
        return f"{base}/namespaces/{quote(namespace)}/{plural}"
    return f"{base}/{plural}"


def object_path(api_version: str, plural: str, namespace: str | None, name: str,
                subresource: str | None = None) -> str:
    p = f"{collection_path(api_version, plural, namespace)}/{quote(name)}"
    return f"{p}/{subresource}" if subresource else p


class ApiClient:
    def __init__(self, server: str, token: str | None = None, ca_data: bytes | None = None,
                 *, insecure: bool = False, config: ClusterConfig | None = None,
                 user_agent: str = "servicenet") -> None:
        self.config = config or ClusterConfig(server=server.rstrip("/"), token=token, ca_data=ca_data,
                                              insecure=insecure)
        # the server in use first, then the kubeconfig's failover servers: a connection that cannot be
        # made moves the client to the next one (see _next_server)
        self.servers = [self.config.server, *(u for u in self.config.failover if u != self.config.server)]
        self._current = 0
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if self.config.token:
            self._headers["Authorization"] = f"Bearer {self.config.token}"
        self._session: aiohttp.ClientSession | None = None
        self._streams: set[aiohttp.ClientResponse] = set()
        self._ssl = self.config.ssl_context()
        self._token_checked = time.monotonic()
        self._token_mtime = _mtime(self.config.token_file)

    @property
    def server(self) -> str:
        return self.servers[self._current]

    def _next_server(self, failed: str, exc: BaseException) -> bool:
        """After a connection to ``failed`` broke or could not be made: move to the next server
        (unless another call already did). False when there is no other server."""
        if len(self.servers) < 2:
            return False
        if self.server == failed:
            self._current = (self._current + 1) % len(self.servers)
            _log.warning("API server unreachable, failing over", failed=failed, to=self.server, error=repr(exc))
            for resp in [r for r in self._streams if str(r.url).startswith(failed)]:
                resp.close()  # its watches resume on the next server (a server cut off etcd sends no events)
        return True

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str] | None = None, context: str | None = None,
                        user_agent: str = "servicenet") -> ApiClient:
        cfg = load(path, context)
        return cls(cfg.server, config=cfg, user_agent=user_agent)

    def _refresh_token(self) -> None:
        """Take up a ``tokenFile`` that changed (checked at most every TOKEN_RECHECK seconds)."""
        now = time.monotonic()
        if self.config.token_file is None or now - self._token_checked < TOKEN_RECHECK:
            return
        self._token_checked = now
        mtime = _mtime(self.config.token_file)
        if mtime == self._token_mtime:
            return
        self._token_mtime = mtime
        try:
            token = Path(self.config.token_file).read_text().strip()
        except OSError:
            return
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
            if self._session is not None:
                self._session.headers["Authorization"] = self._headers["Authorization"]

    @property
    def session(self) -> aiohttp.ClientSession:
        self._refresh_token()
        if self._session is None or self._session.closed:
            conn = aiohttp.TCPConnector(ssl=self._ssl, limit=0, keepalive_timeout=IDLE_CONN_TIMEOUT)
            self._session = aiohttp.ClientSession(
                connector=conn, headers=self._headers, json_serialize=lambda o: orjson.dumps(o).decode(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            )
        return self._session

    async def close(self) -> None:
        """Close every connection, open watch streams included (a later call reconnects)."""
        for resp in list(self._streams):
            resp.close()
        self._streams.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                      body: Any = None, content_type: str = "application/json",
                      timeout: float | None = 60.0) -> dict[str, Any]:
        data = None
        headers = {}
        if body is not None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            headers["Content-Type"] = content_type
        clean = {k: _param(v) for k, v in (params or {}).items() if v is not None}
        for attempt in range(len(self.servers)):
            server = self.server
            try:
                async with self.session.request(method, server + path, params=clean, data=data, headers=headers,
                                                timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                    raw = await resp.read()
                    if resp.status >= 400:
                        try:
                            parsed = orjson.loads(raw)
                        except orjson.JSONDecodeError:
                            parsed = None
                        err = ApiError(resp.status, parsed if isinstance(parsed, dict) else None,
                                       raw.decode(errors="replace"))
                        if resp.status in UNHEALTHY:
                            self._next_server(server, err)  # the next call goes elsewhere (no resend)
                        raise err
                    return orjson.loads(raw) if raw else {}
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # a request that never reached a server (no connection), or an idempotent one, is
                # sent again to the next server; any other is the caller's to retry
                sent = not isinstance(exc, aiohttp.ClientConnectorError)
                if (not self._next_server(server, exc) or attempt == len(self.servers) - 1
                        or (sent and method not in IDEMPOTENT)):
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    # -- verbs -------------------------------------------------------------------------------------
    async def get(self, api_version: str, plural: str, namespace: str | None, name: str,
                  subresource: str | None = None) -> dict[str, Any]:
        return await self.request("GET", object_path(api_version, plural, namespace, name, subresource))

    async def list(self, api_version: str, plural: str, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   limit: int | None = None, continue_: str | None = None,
                   resource_version: str | None = None) -> dict[str, Any]:
        params = {"labelSelector": label_selector, "fieldSelector": field_selector, "limit": limit,
                  "continue": continue_, "resourceVersion": resource_version}
        return await self.request("GET", collection_path(api_version, plural, namespace), params=params)

    async def list_pages(self, api_version: str, plural: str, namespace: str | None = None, *,
                         label_selector: str | None = None, field_selector: str | None = None,
                         page: int = 500) -> AsyncIterator[dict[str, Any]]:
        """LIST in pages of ``page`` items following ``continue`` tokens; yields each page's List.
        Only one page is held at a time, so a large collection never sits in memory twice."""
        cont: str | None = None
        while True:
            res = await self.list(api_version, plural, namespace, label_selector=label_selector,
                                  field_selector=field_selector, limit=page, continue_=cont)
            cont = meta_of(res).get("continue")
            yield res
            if not cont:
                return

    async def list_all(self, api_version: str, plural: str, namespace: str | None = None, *,
                       label_selector: str | None = None, field_selector: str | None = None,
                       page: int = 500) -> dict[str, Any]:
        """LIST following ``continue`` tokens; returns one List with every item."""
        items: list[dict[str, Any]] = []
        async for res in self.list_pages(api_version, plural, namespace, label_selector=label_selector,
                                         field_selector=field_selector, page=page):
            items.extend(res.get("items") or [])
            if not meta_of(res).get("continue"):
                res["items"] = items
                return res
        raise AssertionError("unreachable: the last page has no continue token")

    async def create(self, api_version: str, plural: str, namespace: str | None, body: dict[str, Any], *,
                     field_manager: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        params = {"fieldManager": field_manager, "dryRun": "All" if dry_run else None}
        return await self.request("POST", collection_path(api_version, plural, namespace), params=params, body=body)

    async def update(self, api_version: str, plural: str, namespace: str | None, name: str,
                     body: dict[str, Any], *, subresource: str | None = None,
                     field_manager: str | None = None) -> dict[str, Any]:
        return await self.request("PUT", object_path(api_version, plural, namespace, name, subresource),
                                  params={"fieldManager": field_manager}, body=body)

    async def update_status(self, api_version: str, plural: str, namespace: str | None, name: str,
                            body: dict[str, Any]) -> dict[str, Any]:
        return await self.update(api_version, plural, namespace, name, body, subresource="status")

    async def patch(self, api_version: str, plural: str, namespace: str | None, name: str, patch: Any, *,
                    patch_type: str = "merge", subresource: str | None = None,
                    field_manager: str | None = None, force: bool = False) -> dict[str, Any]:
        ctype = PATCH_TYPES.get(patch_type, patch_type)
        params: dict[str, Any] = {"fieldManager": field_manager}
        if ctype == PATCH_TYPES["apply"]:
            params["fieldManager"] = field_manager or "servicenet"
            params["force"] = "true" if force else None
        return await self.request("PATCH", object_path(api_version, plural, namespace, name, subresource),
                                  params=params, body=patch, content_type=ctype)

    async def delete(self, api_version: str, plural: str, namespace: str | None, name: str, *,
                     grace_period_seconds: int | None = None, propagation_policy: str | None = None,
                     preconditions: dict[str, str] | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy:
            body["propagationPolicy"] = propagation_policy
        if preconditions:
            body["preconditions"] = preconditions
        return await self.request("DELETE", object_path(api_version, plural, namespace, name), body=body)

    async def watch(self, api_version: str, plural: str, namespace: str | None = None, *,
                    resource_version: str | None = None, label_selector: str | None = None,
                    field_selector: str | None = None, timeout_seconds: int | None = None,
                    allow_bookmarks: bool = True) -> AsyncIterator[dict[str, Any]]:
        """Yield watch events (``{"type": ..., "object": ...}``) until the server ends the stream."""
        params = {"watch": "true", "resourceVersion": resource_version, "labelSelector": label_selector,
                  "fieldSelector": field_selector, "timeoutSeconds": timeout_seconds,
                  "allowWatchBookmarks": "true" if allow_bookmarks else None}
        clean = {k: _param(v) for k, v in params.items() if v is not None}
        path = collection_path(api_version, plural, namespace)
        tmo = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=(timeout_seconds or 600) + 30)
        for attempt in range(len(self.servers)):
            server = self.server
            try:
                resp = await self.session.get(server + path, params=clean, timeout=tmo)
                break
            except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                if not self._next_server(server, exc) or attempt == len(self.servers) - 1:
                    raise
        async with resp:
            if resp.status >= 400:
                raw = await resp.read()
                try:
                    parsed = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    parsed = None
                raise ApiError(resp.status, parsed if isinstance(parsed, dict) else None, raw.decode(errors="replace"))
            self._streams.add(resp)
            try:
                buf = b""
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    while True:
                        nl = buf.find(b"\n")
                        if nl < 0:
                            break
                        line, buf = buf[:nl], buf[nl + 1:]
                        if line.strip():
                            yield orjson.loads(line)
                if buf.strip():
                    yield orjson.loads(buf)
            finally:
                self._streams.discard(resp)


def _param(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


async def wait_for(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` (sync or async) until truthy; raise TimeoutError at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        res = predicate()
        if asyncio.iscoroutine(res):
            res = await res
        if res:
            return res
        if loop.time() > deadline:
            raise TimeoutError("condition not met before the deadline")
        await asyncio.sleep(interval)
