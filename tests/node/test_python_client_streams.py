"""exec and port-forward through the API server as the official Python client drives them.

That client writes ``str`` stdin as websocket TEXT frames and asks for port-forward with the API's
``ports`` parameter (the node agent knows the kubelet's ``port``).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from servicenet.apiserver.kubelet_proxy import portforward_query
from servicenet.testing import RunningApi

from .test_portforward import serve_hostname_pod, wait_ready


def _exec_with_str_stdin(kc: str, pod: str) -> tuple[str, str]:
    from kubernetes import client, config
    from kubernetes.stream import stream

    core = client.CoreV1Api(config.new_client_from_config(kc))
    resp = stream(core.connect_get_namespaced_pod_exec, pod, "default", command=["head", "-n", "2"],
                  stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
    resp.write_stdin("first line\n")  # str: a TEXT frame
    resp.write_stdin(b"second line\n")  # bytes: a BINARY frame
    out = ""
    deadline = time.monotonic() + 15
    while resp.is_open() and time.monotonic() < deadline:
        resp.update(timeout=1)
        out += resp.read_stdout() if resp.peek_stdout() else ""
    resp.close()
    err = resp.read_channel(3)
    return out, err


def _port_forward_get(kc: str, pod: str) -> bytes:
    from kubernetes import client, config
    from kubernetes.stream import portforward

    core = client.CoreV1Api(config.new_client_from_config(kc))
    pf = portforward(core.connect_get_namespaced_pod_portforward, pod, "default", ports="9376")
    sock = pf.socket(9376)
    sock.setblocking(True)
    sock.settimeout(15)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: pf\r\nConnection: close\r\n\r\n")
    data = b""
    while True:  # the client does not pass the pod's close on: read up to Content-Length
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = [int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")[1:])
                      if k.strip().lower() == b"content-length"]
            if length and len(body) >= length[0]:
                break
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    pf.close()
    return data


async def test_python_client_exec_text_stdin_and_portforward_ports(api: RunningApi, tmp_path: Path,
                                                                   loop_cidr: str, node_agent: Any) -> None:
    await node_agent("node-py")
    await api.client.create("v1", "pods", "default", serve_hostname_pod("web-py", "node-py"))
    await wait_ready(api, "web-py")
    kc = str(api.kubeconfig)
    out, err = await asyncio.wait_for(asyncio.to_thread(_exec_with_str_stdin, kc, "web-py"), 30)
    assert out == "first line\nsecond line\n", (out, err)
    data: Any = await asyncio.wait_for(asyncio.to_thread(_port_forward_get, kc, "web-py"), 30)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n")[0], data[:200]
    assert body.decode() == "web-py"


def test_portforward_query_translates_ports() -> None:
    from multidict import MultiDict

    assert portforward_query(MultiDict([("ports", "80")])) == "port=80"
    assert portforward_query(MultiDict([("ports", "80,443"), ("ports", "8080")])) == "port=80&port=443&port=8080"
    assert portforward_query(MultiDict([("port", "80")])) == "port=80"
