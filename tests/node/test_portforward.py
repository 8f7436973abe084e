"""``kubectl port-forward`` end to end: real kubectl -> in-process API server -> node agent -> pod.

Both transports kubectl v1.32 knows are exercised: SPDY tunneled in a websocket (default) and the
``Upgrade: SPDY/3.1`` fallback (``KUBECTL_PORT_FORWARD_WEBSOCKETS=false``).  Plus the SPDY server
driven directly by a Python SPDY client (errors, pairing, pings) without kubectl.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from servicenet.node import portforward as pf
from servicenet.node import spdy
from servicenet.testing import RunningApi, kubectl_path

from .nodeutil import require_root, until

Obj = dict[str, Any]


def _ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


async def wait_ready(api: RunningApi, name: str, timeout: float = 20.0) -> Obj:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pod = await api.client.get("v1", "pods", "default", name)
        if _ready(pod):
            return pod
        if loop.time() > deadline:
            raise AssertionError(f"pod {name} not ready: {pod.get('status')}")
        await asyncio.sleep(0.05)


class PortForward:
    """``kubectl port-forward`` running in the background."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError("kubectl port-forward did not stop on SIGINT") from None


@pytest.fixture
async def port_forward(api: RunningApi) -> AsyncIterator[Any]:
    started: list[PortForward] = []

    async def start(pod: str, remote: int, websockets: bool = True) -> PortForward:
        env = dict(os.environ, KUBECONFIG=str(api.kubeconfig),
                   KUBECACHEDIR=str(api.kubeconfig.parent / "kubectl-cache"),
                   KUBECTL_PORT_FORWARD_WEBSOCKETS="true" if websockets else "false")
        proc = await asyncio.create_subprocess_exec(
            kubectl_path(), "port-forward", "--address", "127.0.0.1", f"pod/{pod}", f":{remote}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
        started.append(PortForward(proc, 0))
        assert proc.stdout is not None and proc.stderr is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
        except TimeoutError:
            raise AssertionError("kubectl port-forward printed nothing") from None
        m = re.match(rb"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)", line)
        if m is None:
            err = await asyncio.wait_for(proc.stderr.read(), 5) if proc.returncode is not None else b""
            raise AssertionError(f"unexpected kubectl output: {line!r} {err!r}")
        assert int(m.group(2)) == remote
        started[-1].port = int(m.group(1))
        return started[-1]

    yield start
    for p in started:
        if p.proc.returncode is None:
            p.proc.kill()
            await p.proc.wait()


async def http_get(port: int, path: str = "/") -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: pf\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], data[:200]
    return body.decode()


def serve_hostname_pod(name: str, node: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 2,
                     "containers": [{"name": "c", "image": "registry.k8s.io/serve_hostname",
                                     "ports": [{"containerPort": 9376}],
                                     "readinessProbe": {"tcpSocket": {"port": 9376},
                                                        "periodSeconds": 1}}]}}


async def _exercise(api: RunningApi, port_forward: Any, pod: str) -> None:
    for websockets in (True, False):
        fwd = await port_forward(pod, 9376, websockets=websockets)
        for _ in range(3):
            assert await http_get(fwd.port) == pod
        for _ in range(2):  # 5 at once: serve_hostname's listen backlog is 5 (socketserver default)
            bodies = await asyncio.gather(*(http_get(fwd.port) for _ in range(5)))
            assert bodies == [pod] * 5
        assert pf.live_sessions() == ["websocket" if websockets else "upgrade"]
        rc = await fwd.stop()
        assert rc == 0, (websockets, await fwd.proc.stderr.read() if fwd.proc.stderr else b"")
        await until(lambda: pf.live_sessions() == [], timeout=10)
        with pytest.raises(OSError):
            await http_get(fwd.port)


async def test_kubectl_port_forward_loopback(api: RunningApi, tmp_path: Path, loop_cidr: str,
                                             port_forward: Any, node_agent: Any) -> None:
    await node_agent("node-pf")
    await api.client.create("v1", "pods", "default", serve_hostname_pod("web-pf", "node-pf"))
    await wait_ready(api, "web-pf")
    await _exercise(api, port_forward, "web-pf")
    # logs and exec keep working next to port-forward
    rc, out, _ = await api.kubectl("exec", "web-pf", "--", "sh", "-c", "echo ok", check=False)
    assert (rc, out) == (0, "ok\n")


@pytest.mark.root
async def test_kubectl_port_forward_netns(api: RunningApi, tmp_path: Path, port_forward: Any, node_agent: Any) -> None:
    require_root()
    await node_agent("node-pfn", network="netns", pod_cidr="10.244.9.0/24")
    await api.client.create("v1", "pods", "default", serve_hostname_pod("web-pfn", "node-pfn"))
    await wait_ready(api, "web-pfn")
    await _exercise(api, port_forward, "web-pfn")


async def test_kubectl_port_forward_refused_port(api: RunningApi, tmp_path: Path, loop_cidr: str,
                                                 port_forward: Any, node_agent: Any) -> None:
    """Nothing listens on the port: kubectl reports the node's error and gives up the connection."""
    await node_agent("node-pfr")
    await api.client.create("v1", "pods", "default", serve_hostname_pod("web-pfr", "node-pfr"))
    await wait_ready(api, "web-pfr")
    fwd = await port_forward("web-pfr", 9999)
    reader, writer = await asyncio.open_connection("127.0.0.1", fwd.port)
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    assert fwd.proc.stderr is not None
    err = await asyncio.wait_for(fwd.proc.stderr.read(), 15)  # kubectl exits: lost connection
    assert b"error forwarding port 9999 to pod web-pfr_default" in err and b"connection refused" in err, err
    assert await asyncio.wait_for(fwd.proc.wait(), 10) != 0


# -- the pure core ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("headers", "expect"), [
    ((("port", "80"), ("streamtype", "data"), ("requestid", "7")), pf.StreamRequest(3, 80, "data", "7")),
    ((("port", "80"), ("streamtype", "error")), pf.StreamRequest(3, 80, "error", "3")),  # old client
    ((("port", "80"), ("streamtype", "data")), pf.StreamRequest(3, 80, "data", "1")),
    ((("streamtype", "data"),), '"port" header is required'),
    ((("port", "http"), ("streamtype", "data")), 'unable to parse "http" as a port'),
    ((("port", "70000"), ("streamtype", "data")), 'unable to parse "70000" as a port'),
    ((("port", "0"), ("streamtype", "data")), 'port "0" must be > 0'),
    ((("port", "80"),), '"streamtype" header is required'),
    ((("port", "80"), ("streamtype", "stdin")), 'invalid stream type "stdin"'),
])
def test_parse_stream(headers: spdy.Headers, expect: object) -> None:
    if isinstance(expect, str):
        with pytest.raises(pf.StreamRejected) as exc:
            pf.parse_stream(3, headers)
        assert str(exc.value) == expect
    else:
        assert pf.parse_stream(3, headers) == expect


def test_pair_tracker() -> None:
    t = pf.PairTracker(timeout=30)
    err, data = pf.StreamRequest(1, 80, "error", "0"), pf.StreamRequest(3, 80, "data", "0")
    p, msg = t.add(err, now=0)
    assert (p.complete, msg, list(t.pairs)) == (False, None, ["0"])
    p2, msg = t.add(pf.StreamRequest(5, 80, "error", "0"), now=1)
    assert p2 is p and msg == "error processing stream for request 0: error stream already assigned"
    p3, msg = t.add(data, now=2)
    assert p3.complete and (p3.error, p3.data, msg, t.pairs) == (err, data, None, {})
    t.add(pf.StreamRequest(7, 81, "data", "1"), now=10)
    assert t.expired(now=39.9) == [] and [p.request_id for p in t.expired(now=40)] == ["1"]
    assert t.pairs == {}


def test_negotiate_and_error_text() -> None:
    assert pf.negotiate(["portforward.k8s.io"], ("portforward.k8s.io",)) == "portforward.k8s.io"
    assert pf.negotiate([], ("portforward.k8s.io",)) == ""
    assert pf.negotiate(["v4.channel.k8s.io"], ("portforward.k8s.io",)) is None
    assert pf.forward_error(80, "web_default", "u1", ConnectionRefusedError(111, "x")) == (
        b'{"closeConnection": true, "message": "error forwarding port 80 to pod web_default, uid u1: '
        b'connection refused"}\n')
    assert pf.upgrade_response_head("SPDY/3.1", "portforward.k8s.io") == (
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
        b"X-Stream-Protocol-Version: portforward.k8s.io\r\n\r\n")


# -- the server, driven by a Python SPDY client -----------------------------------------------------
class MemChannel:
    """The server's end of an in-memory byte pipe; the test plays the client with a Session."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.closed = False

    async def read(self) -> bytes:
        return await self.inbox.get()

    async def write(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError
        self.outbox.put_nowait(data)

    async def close(self) -> None:
        self.closed = True


class Client:
    def __init__(self, chan: MemChannel) -> None:
        self.chan, self.s = chan, spdy.Session(server=False)
        self.events: list[spdy.Event] = []

    def send(self) -> None:
        self.chan.inbox.put_nowait(self.s.data_to_send())

    async def until(self, pred: Any, timeout: float = 5.0) -> list[spdy.Event]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not pred(self.events):
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"client saw only {self.events}")
            try:
                data = await asyncio.wait_for(self.chan.outbox.get(), left)
            except TimeoutError:
                continue
            self.events += self.s.receive_data(data)
        return self.events

    def data(self, sid: int) -> bytes:
        return b"".join(e.data for e in self.events if isinstance(e, spdy.DataReceived) and e.stream_id == sid)

    def ended(self, sid: int) -> bool:
        return spdy.StreamEnded(sid) in self.events

    def open_pair(self, port: int, rid: str) -> tuple[int, int]:
        base = (("port", str(port)), ("requestid", rid))
        err = self.s.open_stream((("streamtype", "error"), *base))
        self.s.end_stream(err)  # kubectl never writes on the error stream
        data = self.s.open_stream((("streamtype", "data"), *base))
        return err, data


@pytest.fixture
async def echo_pod() -> AsyncIterator[int]:
    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while chunk := await r.read(65536):
            w.write(chunk.upper())
            await w.drain()
        w.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield srv.sockets[0].getsockname()[1]
    srv.close()
    await srv.wait_closed()


async def _served(chan: MemChannel, pod_port: int, timeout: float = 30.0) -> asyncio.Task[None]:
    async def dial(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", pod_port if port == 80 else port)

    return asyncio.create_task(pf.serve_port_forward(chan, dial, pod="p_ns", uid="u",
                                                     stream_creation_timeout=timeout))


async def test_server_forwards_concurrent_connections(echo_pod: int) -> None:
    chan = MemChannel()
    task = await _served(chan, echo_pod)
    c = Client(chan)
    pairs = [c.open_pair(80, str(i)) for i in range(3)]
    for i, (_, data) in enumerate(pairs):
        c.s.send_data(data, f"conn-{i}|".encode() * 2000)  # 14 KB+ each, interleaved
    c.send()
    await c.until(lambda _: all(len(c.data(d)) == len(f"conn-{i}|") * 2000 for i, (_, d) in enumerate(pairs)))
    for i, (_, data) in enumerate(pairs):
        assert c.data(data) == f"CONN-{i}|".encode() * 2000
    pid = c.s.ping()
    for _, data in pairs:
        c.s.end_stream(data)  # client done: the pod sees EOF, closes, the node ends both streams
    c.send()
    evs = await c.until(lambda _: all(c.ended(e) and c.ended(d) for e, d in pairs) and spdy.PingAcked(pid) in _)
    assert all(c.data(e) == b"" for e, _ in pairs)  # nothing on the error streams
    assert {type(e) for e in evs} == {spdy.StreamReplied, spdy.DataReceived, spdy.StreamEnded, spdy.PingAcked}
    chan.inbox.put_nowait(b"")  # client hangs up
    await asyncio.wait_for(task, 5)
    assert chan.closed and pf.live_sessions() == []


async def test_server_reports_refused_port_and_rejects_bad_streams(echo_pod: int) -> None:
    chan = MemChannel()
    task = await _served(chan, echo_pod, timeout=0.3)
    c = Client(chan)
    with socket_closed_port() as dead:
        err, data = c.open_pair(dead, "0")
        c.s.send_data(data, b"GET / HTTP/1.0\r\n\r\n")
        bad = c.s.open_stream((("streamtype", "data"),))  # no port: reset
        lonely = c.s.open_stream((("streamtype", "error"), ("port", "80"), ("requestid", "9")))
        c.send()
        await c.until(lambda _: c.ended(err) and c.ended(data) and spdy.StreamReset(bad, 5) in _
                      and c.ended(lonely))
    assert c.data(err).startswith(b'{"closeConnection": true, "message": "error forwarding port ')
    assert b"to pod p_ns, uid u: connection refused" in c.data(err)
    assert c.data(data) == b""
    assert c.data(lonely) == b"(request=9) timed out waiting for streams"
    chan.inbox.put_nowait(b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01")  # SPDY/2 frame: garbage
    await asyncio.wait_for(task, 5)
    assert spdy.GoAwayReceived(lonely, spdy.GoAwayStatus.PROTOCOL_ERROR) in await c.until(
        lambda evs: any(isinstance(e, spdy.GoAwayReceived) for e in evs))


class socket_closed_port:  # noqa: N801 (used as a context manager)
    """A local port with nothing listening (bound, never listened, then released on exit)."""

    def __enter__(self) -> int:
        import socket
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
