"""API-server side of pods/log, pods/exec, pods/attach and pods/portforward: forward to the node agent.

The resource handlers call :func:`node_proxy`, which finds the pod's node agent from the Node's
``daemonEndpoints.kubeletEndpoint.Port`` and calls :func:`proxy_to_node` with the node-side path; the client's query string is forwarded unchanged (the kubelet
uses the same ``command``/``stdin``/``stdout``/``stderr``/``tty``/``port``/``follow``/
``tailLines``/``previous`` parameters as the API).  A websocket upgrade is bridged frame by
frame with the subprotocol the node agreed to; a ``SPDY/3.1`` upgrade (kubectl's fallback for
port-forward) is repeated to the node and, once both sides switched, spliced byte for byte;
anything else is streamed as plain HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import aiohttp
from aiohttp import WSMsgType, web

from servicenet.api import errors
from servicenet.api import wellknown as wk
from servicenet.api.resources import ResourceInfo
from servicenet.api.views import annotations_of
from servicenet.common.component import bounded
from servicenet.common.hijack import hijack
from servicenet.store import Store

__all__ = ["node_proxy", "proxy_to_node", "set_node_credentials"]

# How the API server reaches node agents: HTTPS verified against the cluster CA, presenting its
# kubelet-client certificate (the agents map it to a user and check a SubjectAccessReview on
# nodes/proxy, as the kubelet does); without TLS material, its loopback token.
_NODE_HEADERS: dict[str, str] = {}
_NODE_TLS: list[ssl.SSLContext] = []


def set_node_credentials(token: str, tls: ssl.SSLContext | None = None) -> None:
    _NODE_HEADERS.clear()
    _NODE_TLS.clear()
    if tls is not None:
        _NODE_TLS.append(tls)
    elif token:
        _NODE_HEADERS["Authorization"] = f"Bearer {token}"


def _ssl() -> ssl.SSLContext | bool:
    return _NODE_TLS[0] if _NODE_TLS else False


class _Registry(Protocol):
    def get(self, info: ResourceInfo, namespace: str | None, name: str) -> dict[str, Any]: ...


async def node_proxy(registry: _Registry, store: Store, request: web.Request, info: ResourceInfo,
                     namespace: str | None, name: str, subresource: str) -> web.StreamResponse:
    """pods/log, pods/exec, pods/attach, pods/portforward: forwarded to the pod's node agent."""
    pod = registry.get(info, namespace, name)
    node_name = (pod.get("spec") or {}).get("nodeName")
    if not node_name:
        raise errors.bad_request(f"pod {name} does not have a host assigned")
    node_rec = store.get(f"/registry/core/nodes/{node_name}")
    if node_rec is None:
        raise errors.not_found("nodes", "", node_name)
    node = node_rec.obj()
    port = (((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    if not port:
        raise errors.ApiStatusError(503, "ServiceUnavailable", f"node {node_name} has no agent endpoint")
    container = request.query.get("container") or default_container(pod)
    query = None
    if subresource == "log":
        path = f"/containerLogs/{namespace}/{name}/{container}"
    elif subresource == "portforward":
        path = f"/portForward/{namespace}/{name}"
        query = portforward_query(request.query)
    else:
        path = f"/{subresource}/{namespace}/{name}/{container}"
    return await proxy_to_node(request, f"https://127.0.0.1:{port}", path, query)


def portforward_query(q: Any) -> str:
    """The API's ``ports`` parameter (repeated or comma-separated) becomes the node's ``port``s,
    as upstream's pod registry builds the kubelet URL; other parameters pass through."""
    out: list[tuple[str, str]] = []
    for k, v in q.items():
        if k == "ports":
            for p in v.split(","):
                p = p.strip()
                if not p.isdigit() or not 0 < int(p) < 65536:
                    raise errors.bad_request(f"invalid port {p!r}: ports must be integers within 1-65535")
                out.append(("port", p))
        else:
            out.append((k, v))
    return urlencode(out)


def default_container(pod: dict[str, Any]) -> str:
    """kubectl's ``default-container`` annotation, else the first container."""
    chosen = annotations_of(pod).get(wk.DEFAULT_CONTAINER_ANNOTATION)
    if chosen:
        return chosen
    cs = (pod.get("spec") or {}).get("containers") or [{}]
    return cs[0].get("name", "")


def _is_upgrade(request: web.Request) -> bool:
    return (request.headers.get("Upgrade", "").lower() == "websocket"
            and "upgrade" in request.headers.get("Connection", "").lower())


async def proxy_to_node(request: web.Request, node_url: str, path: str,
                        query: str | None = None) -> web.StreamResponse:
    """``query`` replaces the client's query string (the API server translates a few parameters)."""
    qs = request.query_string if query is None else query
    url = node_url.rstrip("/") + path
    if qs:
        url += "?" + qs
    if _is_upgrade(request):
        return await _proxy_websocket(request, url)
    if request.headers.get("Upgrade", "").lower().startswith("spdy/"):
        return await _proxy_raw_upgrade(request, node_url, path, qs)
    return await _proxy_http(request, url)


async def _proxy_raw_upgrade(request: web.Request, node_url: str, path: str, qs: str) -> web.StreamResponse:
    """A non-websocket upgrade (``SPDY/3.1``): repeat it to the node agent; on 101 splice the two
    connections byte for byte (the API server does not look inside)."""
    parts = urlsplit(node_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    tls = _ssl() if parts.scheme == "https" else False
    target = path + ("?" + qs if qs else "")
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: Upgrade",
             f"Upgrade: {request.headers['Upgrade']}", "Content-Length: 0"]
    lines += [f"{k}: {v}" for k, v in _NODE_HEADERS.items()]
    lines += [f"X-Stream-Protocol-Version: {v}" for v in request.headers.getall("X-Stream-Protocol-Version", [])]
    try:
        reader, writer = await bounded(asyncio.open_connection(
            host, port, limit=1 << 16, ssl=tls or None, server_hostname=host if tls else None), 10)
    except (OSError, TimeoutError) as exc:
        raise web.HTTPBadGateway(text=f"error dialing the node agent: {exc}") from exc
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await bounded(reader.readuntil(b"\r\n\r\n"), 30)
        status, headers = _parse_head(head)
        if status != 101:
            n = headers.get("content-length", "")
            body = await (reader.readexactly(int(n)) if n.isdigit() else reader.read(1 << 16))
            return web.Response(status=status, body=body, headers={
                k: v for k, v in headers.items() if k in ("content-type", "x-accepted-stream-protocol-versions")})
        out = ["HTTP/1.1 101 Switching Protocols", "Connection: Upgrade",
               f"Upgrade: {headers.get('upgrade', request.headers['Upgrade'])}"]
        if "x-stream-protocol-version" in headers:
            out.append(f"X-Stream-Protocol-Version: {headers['x-stream-protocol-version']}")
        client = hijack(request, ("\r\n".join(out) + "\r\n\r\n").encode())
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
        writer.close()
        raise web.HTTPBadGateway(text=f"error talking to the node agent: {exc}") from exc

    async def to_node() -> None:
        while data := await client.read():
            writer.write(data)
            await writer.drain()

    async def to_client() -> None:
        while data := await reader.read(1 << 16):
            await client.write(data)

    tasks = [asyncio.create_task(to_node()), asyncio.create_task(to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        writer.close()  # nothing awaited before both sockets are closed (the handler may be cancelled)
        await client.close()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return web.Response(status=101)


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


async def _proxy_http(request: web.Request, url: str) -> web.StreamResponse:
    session = aiohttp.ClientSession(headers=_NODE_HEADERS, timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
    try:
        async with session.request(request.method, url, data=await request.read() or None, ssl=_ssl()) as up:
            resp = web.StreamResponse(status=up.status, headers={
                "Content-Type": up.headers.get("Content-Type", "text/plain")})
            await resp.prepare(request)
            async for chunk in up.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
    except aiohttp.ClientError as exc:
        raise web.HTTPBadGateway(text=f"error talking to the node agent: {exc}") from exc
    finally:
        await session.close()


async def _proxy_websocket(request: web.Request, url: str) -> web.StreamResponse:
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    session = aiohttp.ClientSession(headers=_NODE_HEADERS)
    try:
        try:
            node_ws = await session.ws_connect(url.replace("http", "ws", 1), protocols=offered,
                                               max_msg_size=0, autoping=True, ssl=_ssl())
        except aiohttp.WSServerHandshakeError as exc:
            return web.Response(status=exc.status if exc.status >= 400 else 502,
                                text=f"node agent refused the stream: {exc.status} {exc.message}")
        except aiohttp.ClientError as exc:
            raise web.HTTPBadGateway(text=f"error dialing the node agent: {exc}") from exc
        chosen = node_ws.protocol
        client_ws = web.WebSocketResponse(protocols=[chosen] if chosen else [], max_msg_size=0)
        await client_ws.prepare(request)

        async def to_node() -> None:
            async for msg in client_ws:
                if msg.type == WSMsgType.BINARY:
                    await node_ws.send_bytes(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await node_ws.send_str(msg.data)
            await node_ws.close()

        async def to_client() -> None:
            async for msg in node_ws:
                if msg.type == WSMsgType.BINARY:
                    await client_ws.send_bytes(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await client_ws.send_str(msg.data)
            await client_ws.close()

        tasks = [asyncio.create_task(to_node()), asyncio.create_task(to_client())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        # when the node side ends (command finished) let the close reach the client; when the
        # client goes away, stop the node side
        for t in pending:
            if t is tasks[1]:
                with contextlib.suppress(asyncio.TimeoutError, Exception):
                    await bounded(t, 5)
            t.cancel()
        await node_ws.close()
        await client_ws.close()
        return client_ws
    finally:
        await session.close()
