"""Publishing Service ports on the host (I/O shell of :mod:`servicenet.proxy.published`).

:class:`HostPorts` (userns mode) listens on the host's ``127.0.0.1:<nodePort>`` for every
NodePort/LoadBalancer Service port (plus fixed forwards such as the ingress) and relays each
connection to ``<node IP>:<nodePort>`` inside the node's network namespace: the dialling
socket is created by a worker thread that joined that namespace with ``setns`` (ctypes, see
:mod:`servicenet.common.netns`), and bytes move with asyncio streams.  It also keeps the
``servicenet.dev/host-ports`` annotation of each Service current.

:class:`LoopbackPortNotes` (loopback mode without root) only annotates: which of a Service's
ports below 1024 the userspace proxy serves at ``port + 10000``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
from collections.abc import Callable
from typing import Any

from servicenet.api.wire import meta as meta_of
from servicenet.client import ApiClient, ApiError
from servicenet.client.informer import Informer
from servicenet.common import log
from servicenet.common.component import bounded
from servicenet.common.netns import _setns, netns_path
from servicenet.proxy import published as pub

_log = log.get("proxy.hostports")
BUF = 1 << 16


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(BUF):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class _Annotator:
    """Keeps one annotation of every Service equal to ``text(svc)`` (merge patches, only on change)."""

    def __init__(self, client: ApiClient, key: str, text: Callable[[dict[str, Any]], str | None]) -> None:
        self.client, self.key, self.text = client, key, text
        self.informer = Informer(client, "v1", "services")
        self._dirty: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.informer.add_handler(self._on_event)

    def _on_event(self, etype: str, obj: dict[str, Any], old: Any) -> None:
        if etype != "DELETED":
            m = meta_of(obj)
            self._dirty.put_nowait((m.get("namespace", "default"), m.get("name", "")))

    async def _run(self) -> None:
        while True:
            ns, name = await self._dirty.get()
            svc = self.informer.get(ns, name)
            patch = pub.annotation_patch(svc, self.key, self.text(svc)) if svc else None
            if patch is None:
                continue
            try:
                await self.client.patch("v1", "services", ns, name, patch)
            except ApiError as exc:
                if exc.status != 404:
                    _log.warning("cannot annotate service", service=f"{ns}/{name}", error=str(exc))

    async def start(self) -> None:
        await self.informer.start()
        await self.informer.wait_synced(30)
        self._task = asyncio.create_task(self._run(), name=f"annotate-{self.key}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.informer.stop()


class HostPorts:
    """Host forwarders for the userns mode. ``where()`` gives (node netns, node IP) once the node
    network exists; ``fixed`` are forwards that do not come from Services (the ingress)."""

    name = "host-ports"

    def __init__(self, client: ApiClient, where: Callable[[], tuple[str, str]],
                 fixed: tuple[tuple[str, int, int], ...] = (), host: str = "127.0.0.1") -> None:
        self.client, self.where, self.host = client, where, host
        self.fixed_spec = fixed  # (owner, host port, node port)
        self.netns = ""
        self.node_ip = ""
        self.servers: dict[int, tuple[pub.Forward, asyncio.Server]] = {}
        self.errors: dict[int, str] = {}
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._annotator: _Annotator | None = None
        self._sync_task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.conns = 0

    def _enter(self) -> None:
        fd = os.open(netns_path(self.netns), os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)

    async def _dial(self, ip: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(self._executor, socket.socket, socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await bounded(loop.sock_connect(sock, (ip, port)), 5)
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    def _handler(self, fw: pub.Forward) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            self.conns += 1
            try:
                ur, uw = await self._dial(fw.target_ip, fw.target_port)
            except (TimeoutError, OSError):
                w.close()
                return
            try:
                await asyncio.gather(_pump(r, uw), _pump(ur, w))
            finally:
                for x in (w, uw):
                    x.close()
        return handle

    def _fixed(self) -> tuple[pub.Forward, ...]:
        return tuple(pub.Forward(hp, self.node_ip, np, owner) for owner, hp, np in self.fixed_spec)

    async def _sync(self) -> None:
        want = pub.desired_forwards(self._annotator.informer.list() if self._annotator else [],
                                    self.node_ip, self._fixed())
        for port in [p for p, (fw, _) in self.servers.items() if want.get(p) != fw]:
            _, srv = self.servers.pop(port)
            srv.close()
        for port, fw in want.items():
            if port in self.servers:
                continue
            try:
                srv = await asyncio.start_server(self._handler(fw), self.host, port, reuse_address=True)
            except OSError as exc:
                if self.errors.get(port) != str(exc):
                    _log.warning("cannot publish on the host", port=port, target=fw.owner, error=str(exc))
                self.errors[port] = str(exc)
                continue
            self.errors.pop(port, None)
            self.servers[port] = (fw, srv)
            _log.info("published", listen=f"{self.host}:{port}", target=f"{fw.target_ip}:{fw.target_port}",
                      owner=fw.owner)

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._sync()
            except Exception:
                _log.exception("host port sync failed")

    async def start(self) -> None:
        self.netns, self.node_ip = self.where()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="hostports-dial", initializer=self._enter)
        self._annotator = _Annotator(self.client, pub.HOST_PORTS,
                                     lambda s: pub.host_ports_annotation(s, self.node_ip, self.host))
        self._annotator.informer.add_handler(lambda *_: self._wake.set())
        await self._annotator.start()
        await self._sync()
        self._sync_task = asyncio.create_task(self._loop(), name="hostports-sync")

    async def stop(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sync_task
        for _, srv in self.servers.values():
            srv.close()
        self.servers.clear()
        if self._annotator is not None:
            await self._annotator.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def describe(self) -> dict[str, str]:
        out = {}
        for port, (fw, _) in sorted(self.servers.items()):
            out[fw.owner] = f"{self.host}:{port} -> {fw.target_ip}:{fw.target_port}"
        return out or {"published": "none yet (NodePort/LoadBalancer Services appear here)"}


def unprivileged_port_start() -> int:
    """``net.ipv4.ip_unprivileged_port_start`` (1024 when unreadable): ports below need privilege."""
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            return min(int(f.read()), pub.PRIVILEGED_BELOW)
    except (OSError, ValueError):
        return pub.PRIVILEGED_BELOW


class LoopbackPortNotes:
    """Loopback mode without root: annotate Services whose low ports are served at an offset."""

    name = "loopback-ports"

    def __init__(self, client: ApiClient, offset: int = pub.LOW_PORT_OFFSET) -> None:
        self.offset = offset
        self.below = unprivileged_port_start()
        self._annotator = _Annotator(client, pub.LOOPBACK_PORTS,
                                     lambda s: pub.loopback_ports_annotation(s, offset, self.below))

    async def start(self) -> None:
        await self._annotator.start()

    async def stop(self) -> None:
        await self._annotator.stop()

    def describe(self) -> dict[str, str]:
        if self.below == 0:
            return {"offset": "none needed (net.ipv4.ip_unprivileged_port_start is 0)"}
        return {"offset": f"Service ports below {self.below} are served at port+{self.offset} "
                          f"(annotation {pub.LOOPBACK_PORTS})"}
