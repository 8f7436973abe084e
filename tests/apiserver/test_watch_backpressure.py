"""A watcher that stops reading: fan-out stops writing to its socket once that backs up, the events
queue in its watch instead (where the backlog limit applies), and other watchers are unaffected."""

from __future__ import annotations

import asyncio
import socket
import time
from urllib.parse import urlsplit

from servicenet.client import kubeconfig
from servicenet.testing import RunningApi

N, SIZE = 40, 200_000  # 8 MB of events: more than the kernel's socket buffers absorb


def _watches(api: RunningApi) -> list:
    return [w for ws in api.server.store._hub._by_prefix.values() for w in ws]


async def test_stalled_watcher_backs_up_into_its_queue_and_others_get_everything(api: RunningApi) -> None:
    rv = (await api.client.list("v1", "configmaps", "default"))["metadata"]["resourceVersion"]
    cfg = kubeconfig.load(api.kubeconfig)
    u = urlsplit(cfg.server)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (u.hostname, u.port))
    reader, writer = await asyncio.open_connection(sock=sock, ssl=cfg.ssl_context(), server_hostname=u.hostname)
    writer.write(f"GET /api/v1/namespaces/default/configmaps?watch=true&resourceVersion={rv} HTTP/1.1\r\n"
                 f"Host: {u.netloc}\r\nAuthorization: Bearer {cfg.token}\r\n\r\n".encode())
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 200")
    before = len(_watches(api))
    got: list[str] = []

    async def reading() -> None:
        async for ev in api.client.watch("v1", "configmaps", "default", resource_version=rv, timeout_seconds=60,
                                         allow_bookmarks=False):
            got.append(ev["object"]["metadata"]["name"])
            if len(got) == N:
                return
    task = asyncio.create_task(reading())
    for i in range(N):
        await api.client.create("v1", "configmaps", "default",
                                {"metadata": {"name": f"big-{i}"}, "data": {"v": "x" * SIZE}})
    await asyncio.wait_for(task, 30)
    assert got == [f"big-{i}" for i in range(N)]
    # the stalled stream's events wait in its watch queue, not in an ever-growing socket buffer
    assert max(w.pending for w in _watches(api)) > 0
    writer.close()
    deadline = time.monotonic() + 10
    while len(_watches(api)) >= before:  # the stalled stream's task notices the closed socket and ends
        assert time.monotonic() < deadline, "the stalled watch was not cleaned up after its client left"
        await asyncio.sleep(0.05)
