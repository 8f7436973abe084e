"""Proxy health: the kube-proxy ``/healthz`` + ``/livez`` semantics and healthCheckNodePort servers.

:class:`ProxierHealth` is pure state (clock passed in): the proxy is unhealthy when an
update has been queued for longer than ``timeout`` without a successful sync.
:class:`ServiceHealthServers` serves, on each healthCheckNodePort, the JSON upstream
load balancers probe: 200 when the node has local endpoints for the service, else 503.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from servicenet.api.views import meta
from servicenet.common import log
from servicenet.common.component import bounded

_log = log.get("proxy.health")


def _go_time(ts: float | None) -> str:
    if ts is None:
        return "0001-01-01 00:00:00 +0000 UTC"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC")


class ProxierHealth:
    def __init__(self, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.last_updated: float | None = None
        self.oldest_pending: float | None = None
        self.node_eligible = True

    def queued(self, now: float) -> None:
        if self.oldest_pending is None:
            self.oldest_pending = now

    def updated(self, now: float) -> None:
        self.last_updated = now
        self.oldest_pending = None

    def healthy(self, now: float) -> bool:
        return self.oldest_pending is None or now - self.oldest_pending < self.timeout

    def response(self, now: float, *, livez: bool = False) -> tuple[int, str]:
        ok = self.healthy(now) and (livez or self.node_eligible)
        body = (f'{{"lastUpdated": {json.dumps(_go_time(self.last_updated))},'
                f'"currentTime": {json.dumps(_go_time(now))}, "nodeEligible": {str(self.node_eligible).lower()}}}')
        return (200 if ok else 503), body


def node_eligible(node: Mapping[str, object] | None) -> bool:
    """False when the Node is being deleted or tainted for deletion by the autoscaler."""
    if not node:
        return True
    if meta(node).get("deletionTimestamp"):
        return False
    spec = node.get("spec") or {}
    taints = spec.get("taints") if isinstance(spec, Mapping) else None
    return not any(t.get("key") == "ToBeDeletedByClusterAutoscaler" for t in taints or ())


@dataclass(frozen=True, slots=True)
class HealthCheckService:
    namespace: str
    name: str
    port: int
    local_endpoints: int


def service_health_response(svc: HealthCheckService, proxy_healthy: bool) -> tuple[int, bytes]:
    body = json.dumps({"service": {"namespace": svc.namespace, "name": svc.name},
                       "localEndpoints": svc.local_endpoints, "serviceProxyHealthy": proxy_healthy})
    code = 200 if svc.local_endpoints > 0 and proxy_healthy else 503
    reason = "OK" if code == 200 else "Service Unavailable"
    head = (f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\n"
            f"X-Load-Balancing-Endpoint-Weight: {svc.local_endpoints}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return code, head.encode() + body.encode()


SocketFactory = Callable[[tuple[str, int]], socket.socket]


class ServiceHealthServers:
    """One tiny HTTP server per healthCheckNodePort, on each node address."""

    def __init__(self, addresses: Iterable[str], proxy_healthy: Callable[[], bool],
                 socket_factory: SocketFactory | None = None) -> None:
        self.addresses = tuple(addresses)
        self.proxy_healthy = proxy_healthy
        self.socket_factory = socket_factory or _plain_socket
        self.services: dict[int, HealthCheckService] = {}
        self._servers: dict[int, list[asyncio.AbstractServer]] = {}

    async def sync(self, services: Iterable[HealthCheckService]) -> None:
        want = {s.port: s for s in services}
        for port in [p for p in self._servers if p not in want]:
            for srv in self._servers.pop(port):
                srv.close()
        self.services = want
        for port in want:
            if port in self._servers:
                continue
            servers = []
            for ip in self.addresses:
                try:
                    sock = self.socket_factory((ip, port))
                    servers.append(await asyncio.start_server(
                        lambda r, w, p=port: self._handle(r, w, p), sock=sock))
                except OSError as exc:
                    _log.warning("cannot serve healthCheckNodePort", addr=f"{ip}:{port}", error=str(exc))
            self._servers[port] = servers

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, port: int) -> None:
        try:
            await bounded(r.readuntil(b"\r\n\r\n"), 5)
            svc = self.services.get(port)
            if svc is not None:
                w.write(service_health_response(svc, self.proxy_healthy())[1])
                await w.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            w.close()

    async def close(self) -> None:
        for servers in self._servers.values():
            for srv in servers:
                srv.close()
        self._servers.clear()


def _plain_socket(addr: tuple[str, int]) -> socket.socket:
    s = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(addr)
    except OSError:
        s.close()
        raise
    return s
