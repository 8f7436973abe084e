"""The node agent's HTTP API (kubelet paths): container logs, exec and port-forward over websockets.

Exec speaks the ``v5/v4.channel.k8s.io`` framing (first byte = stream: 0 stdin, 1 stdout,
2 stderr, 3 error/status JSON, 4 resize, 255 close-stream in v5); port-forward speaks the
kubelet's websocket port-forward protocol (per requested port a data and an error channel,
each announced by a frame carrying the port as uint16 little-endian) or, as kubectl does, SPDY
``portforward.k8s.io`` (tunneled in a websocket or over an HTTP upgrade; see ``portforward.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import socket
import struct
import subprocess
import termios
from typing import Any

from aiohttp import WSMsgType, web

from servicenet.api.wire import meta as meta_of
from servicenet.common.netns import socket_in_netns
from servicenet.node import portforward as pf
from servicenet.node.pod import PodWorker
from servicenet.node.runtime import PodRuntime

__all__ = ["EXEC_PROTOCOLS", "PORTFORWARD_PROTOCOLS", "exec_status", "make_routes"]

EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io",
                  "channel.k8s.io")
PORTFORWARD_PROTOCOLS = ("v4.channel.k8s.io", "portforward.k8s.io")


def channel_frame(msg: Any) -> bytes:
    """The bytes of a channel-protocol websocket message: the stream byte, then the payload.

    Binary frames carry them as is; the official Python client sends ``str`` input as TEXT frames
    (``chr(channel) + data``), which upstream accepts too, so their UTF-8 bytes count the same."""
    if msg.type == WSMsgType.BINARY:
        return bytes(msg.data or b"")
    if msg.type == WSMsgType.TEXT:
        return str(msg.data or "").encode("utf-8")
    return b""
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255


def exec_status(code: int, argv: list[str]) -> dict[str, Any]:
    """The Status the kubelet sends on the error stream when an exec'd command ends."""
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(argv)}], exit code {code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


def _truthy(v: str | None) -> bool:
    return (v or "").lower() in ("1", "true", "yes")


def make_routes(runtime: PodRuntime) -> list[web.RouteDef]:
    def worker_for(req: web.Request) -> PodWorker:
        w = runtime.by_name(req.match_info["ns"], req.match_info["pod"])
        if w is None:
            raise web.HTTPNotFound(text=f'pod "{req.match_info["pod"]}" not found on this node')
        return w

    async def logs(req: web.Request) -> web.StreamResponse:
        w = worker_for(req)
        run = w.run_by_name(req.match_info["container"])
        if run is None or not run.log_path:
            raise web.HTTPBadRequest(text=f'container "{req.match_info["container"]}" in pod '
                                          f'"{req.match_info["pod"]}" is waiting to start')
        path = run.log_path
        if _truthy(req.query.get("previous")):
            path = os.path.join(os.path.dirname(path), f"{max(run.restart_count - 1, 0)}.log")
            if run.restart_count == 0 or not os.path.exists(path):
                raise web.HTTPBadRequest(text=f'previous terminated container "{run.name}" not found')
        follow = _truthy(req.query.get("follow"))
        tail = req.query.get("tailLines")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await resp.prepare(req)
        with open(path, "rb") as f:
            data = f.read()
            if tail is not None and tail.lstrip("-").isdigit():
                n = int(tail)
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-n:]) if n > 0 else b""
            if data:
                await resp.write(data)
            proc = run.proc
            while follow and not w.finished and run.proc is proc:
                chunk = f.read()
                if chunk:
                    await resp.write(chunk)
                    continue
                if proc is not None and not proc.alive():
                    rest = f.read()
                    if rest:
                        await resp.write(rest)
                    break
                await asyncio.sleep(0.1)
        await resp.write_eof()
        return resp

    async def exec_(req: web.Request) -> web.StreamResponse:
        w = worker_for(req)
        run = w.run_by_name(req.match_info["container"])
        argv = req.query.getall("command", [])
        if run is None or run.proc is None or not run.proc.alive():
            raise web.HTTPBadRequest(text="container not found or not running")
        if not argv:
            raise web.HTTPBadRequest(text="you must specify at least 1 command")
        ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, max_msg_size=0)
        await ws.prepare(req)
        tty = _truthy(req.query.get("tty"))
        want_in = _truthy(req.query.get("stdin"))
        full = w.exec_argv(run, argv)
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **run.env}
        if tty:
            env.setdefault("TERM", "xterm")
        await _exec_session(ws, full, argv, env, tty, want_in, _truthy(req.query.get("stderr", "true")))
        return ws

    async def port_forward(req: web.Request) -> web.StreamResponse:
        w = worker_for(req)
        spdy_resp = await _spdy_port_forward(req, w)
        if spdy_resp is not None:
            return spdy_resp
        ports = [int(p) for p in req.query.getall("port", []) if p.isdigit()]
        if not ports:
            raise web.HTTPBadRequest(text="query parameter \"port\" is required")
        ws = web.WebSocketResponse(protocols=PORTFORWARD_PROTOCOLS, max_msg_size=0)
        await ws.prepare(req)
        await _port_forward(ws, w, ports)
        return ws

    async def pods(req: web.Request) -> web.Response:
        items = [w.pod for w in runtime.workers.values()]
        return web.json_response({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items})

    return [
        web.get("/containerLogs/{ns}/{pod}/{container}", logs),
        web.get("/exec/{ns}/{pod}/{container}", exec_),
        web.post("/exec/{ns}/{pod}/{container}", exec_),
        web.get("/portForward/{ns}/{pod}", port_forward),
        web.post("/portForward/{ns}/{pod}", port_forward),
        web.get("/pods", pods),
    ]


async def _exec_session(ws: web.WebSocketResponse, full: list[str], argv: list[str], env: dict[str, str],
                        tty: bool, want_in: bool, want_err: bool) -> None:
    loop = asyncio.get_running_loop()
    master = -1
    if tty:
        master, slave = pty.openpty()
        proc = subprocess.Popen(["setsid", "-c", *full], stdin=slave, stdout=slave, stderr=slave, env=env,
                                close_fds=True)
        os.close(slave)
        outs = [(STDOUT, master)]
    else:
        proc = subprocess.Popen(full, stdin=subprocess.PIPE if want_in else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                start_new_session=True, close_fds=True)
        assert proc.stdout is not None and proc.stderr is not None
        outs = [(STDOUT, proc.stdout.fileno()), (STDERR, proc.stderr.fileno())]
    for _, fd in outs:
        os.set_blocking(fd, False)

    async def pump(chan: int, fd: int) -> None:
        q: asyncio.Queue[bytes] = asyncio.Queue()

        def readable() -> None:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:  # EIO on a pty once the child is gone
                data = b""
            q.put_nowait(data)
            if not data:
                loop.remove_reader(fd)

        loop.add_reader(fd, readable)
        try:
            while True:
                data = await q.get()
                if not data:
                    return
                if chan == STDERR and not want_err:
                    continue
                await ws.send_bytes(bytes([chan]) + data)
        finally:
            loop.remove_reader(fd)

    async def feed() -> None:
        stdin_fd = master if tty else (proc.stdin.fileno() if proc.stdin is not None else -1)
        async for msg in ws:
            frame = channel_frame(msg)
            if not frame:
                continue
            chan, payload = frame[0], frame[1:]
            if chan == STDIN and stdin_fd >= 0 and payload:
                with contextlib.suppress(OSError):
                    await loop.run_in_executor(None, os.write, stdin_fd, payload)
            elif chan == RESIZE and tty:
                with contextlib.suppress(ValueError, OSError, KeyError):
                    size = json.loads(payload)
                    fcntl.ioctl(master, termios.TIOCSWINSZ,
                                struct.pack("HHHH", int(size["Height"]), int(size["Width"]), 0, 0))
            elif chan == CLOSE and payload[:1] == bytes([STDIN]) and not tty and proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()

    feeder = asyncio.create_task(feed())
    try:
        await asyncio.gather(*(pump(c, fd) for c, fd in outs))
        code = await loop.run_in_executor(None, proc.wait)
        if code < 0:
            code = 128 - code
        await ws.send_bytes(bytes([ERROR]) + json.dumps(exec_status(code, argv)).encode())
    finally:
        feeder.cancel()
        if proc.poll() is None:
            proc.kill()
            await loop.run_in_executor(None, proc.wait)
        if master >= 0:
            os.close(master)
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        await ws.close()


async def _spdy_port_forward(req: web.Request, w: PodWorker) -> web.StreamResponse | None:
    """SPDY port-forward: tunneled in a websocket, or over an ``Upgrade: SPDY/3.1`` connection.

    Returns None when the request asks for neither (the channel websocket protocol is used)."""
    meta = meta_of(w.pod)
    pod_name, uid = f"{meta.get('name', '')}_{meta.get('namespace', '')}", str(meta.get("uid", ""))

    async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await pf.dial_pod(w, port)

    upgrade = req.headers.get("Upgrade", "").lower()
    if upgrade == "websocket":
        offered = [p.strip() for p in req.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if pf.WS_TUNNEL_PROTOCOL not in offered:
            return None
        ws = web.WebSocketResponse(protocols=(pf.WS_TUNNEL_PROTOCOL,), max_msg_size=0)
        await ws.prepare(req)
        await pf.serve_port_forward(pf.WebSocketChannel(ws), dial, pod=pod_name, uid=uid)
        return ws
    if not upgrade.startswith("spdy/"):
        return None
    if upgrade != pf.SPDY_UPGRADE.lower() or "upgrade" not in req.headers.get("Connection", "").lower():
        raise web.HTTPBadRequest(text="unable to upgrade: missing upgrade headers in request")
    client = [v.strip() for h in req.headers.getall("X-Stream-Protocol-Version", []) for v in h.split(",")
              if v.strip()]
    proto = pf.negotiate(client, (pf.PORTFORWARD_PROTOCOL,))
    if proto is None:
        raise web.HTTPForbidden(
            text=f"unable to upgrade: unable to negotiate protocol: client supports {client}, "
                 f"server accepts {[pf.PORTFORWARD_PROTOCOL]}",
            headers={"X-Accepted-Stream-Protocol-Versions": pf.PORTFORWARD_PROTOCOL})
    chan = pf.hijack(req, pf.upgrade_response_head(pf.SPDY_UPGRADE, proto or None))
    try:
        await pf.serve_port_forward(chan, dial, pod=pod_name, uid=uid)
    finally:
        await chan.close()
    return web.Response(status=101)


async def _port_forward(ws: web.WebSocketResponse, w: PodWorker, ports: list[int]) -> None:
    streams: dict[int, asyncio.StreamWriter] = {}
    tasks: list[asyncio.Task[None]] = []

    async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        sb = w.sandbox
        if sb is not None and sb.netns:  # like the kubelet: connect to localhost inside the pod
            loop = asyncio.get_running_loop()
            sock = await loop.run_in_executor(None, socket_in_netns, sb.netns, socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", port))
            return await asyncio.open_connection(sock=sock)
        return await asyncio.open_connection(w.pod_ip(), port)

    async def upstream(i: int, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(65536):
            await ws.send_bytes(bytes([2 * i]) + data)

    for i, port in enumerate(ports):
        hdr = struct.pack("<H", port)
        await ws.send_bytes(bytes([2 * i]) + hdr)
        await ws.send_bytes(bytes([2 * i + 1]) + hdr)
        try:
            reader, writer = await dial(port)
        except OSError as exc:
            await ws.send_bytes(bytes([2 * i + 1]) + f"error forwarding port {port} to pod: {exc}".encode())
            continue
        streams[i] = writer
        tasks.append(asyncio.create_task(upstream(i, reader)))
    try:
        async for msg in ws:
            frame = channel_frame(msg)
            if not frame:
                continue
            chan = frame[0]
            if chan % 2 == 0 and chan // 2 in streams:
                streams[chan // 2].write(frame[1:])
                await streams[chan // 2].drain()
    finally:
        for t in tasks:
            t.cancel()
        for wr in streams.values():
            wr.close()
