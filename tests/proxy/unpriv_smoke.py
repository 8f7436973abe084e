"""Run the userspace proxy as an unprivileged user (spawned by test_userspace via setpriv).

Prints one JSON line: the backend names seen through the VIP, and whether a VIP without
endpoints refused the connection.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from servicenet.api import wellknown as wk  # noqa: E402
from servicenet.proxy.model import compute  # noqa: E402
from servicenet.proxy.userspace import UserspaceProxy  # noqa: E402


def _svc(ip: str, port: int, eps: list[str], target: int) -> tuple[dict, dict]:
    svc = {"metadata": {"namespace": "ns", "name": f"s{port}"},
           "spec": {"clusterIP": ip, "ports": [{"name": "p", "port": port, "protocol": "TCP"}]}}
    es = {"metadata": {"namespace": "ns", "name": f"s{port}-x", "labels": {wk.SERVICE_NAME_LABEL: f"s{port}"}},
          "addressType": "IPv4", "endpoints": [{"addresses": [e], "conditions": {"ready": True}} for e in eps],
          "ports": [{"name": "p", "port": target, "protocol": "TCP"}]}
    return svc, es


async def main() -> None:
    vip, base = sys.argv[1], sys.argv[2]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        target = s.getsockname()[1]
    servers = []
    for i in range(2):
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter, name: str = f"pod{i}") -> None:
            w.write(name.encode())
            w.close()
        servers.append(await asyncio.start_server(handle, f"{base}.{10 + i}", target))
    proxy = UserspaceProxy()
    s1, e1 = _svc(vip, 20080, [f"{base}.10", f"{base}.11"], target)
    s2, e2 = _svc(vip, 20081, [], target)
    proxy.apply(compute([s1, s2], [e1, e2], "node1", ["127.0.0.1"]))
    names = []
    for _ in range(4):
        r, w = await asyncio.open_connection(vip, 20080)
        names.append((await r.read()).decode())
        w.close()
    try:
        await asyncio.open_connection(vip, 20081)
        refused = False
    except ConnectionRefusedError:
        refused = True
    proxy.close()
    print(json.dumps({"uid": os.getuid(), "names": names, "refused": refused}))


asyncio.run(main())
