"""Run one probe check: httpGet, tcpSocket or exec (the I/O shell of :mod:`servicenet.node.probes`).

The connection and the exec are injected (``connect``, ``exec_fn``) so netns mode can dial from
the node namespace and tests can fake both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from servicenet.api.views import Obj
from servicenet.node.podspec import resolve_port
from servicenet.node.probes import ProbeSpec

__all__ = ["Connect", "ExecFn", "run_probe"]

Connect = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
ExecFn = Callable[[list[str], float], Awaitable[int]]


async def _http_get(h: Obj, host: str, port: int, connect: Connect) -> tuple[bool, str]:
    scheme = (h.get("scheme") or "HTTP").upper()
    if scheme != "HTTP":
        return False, f"scheme {scheme} not supported"
    path = h.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    target_host = h.get("host") or host
    headers = {"Host": f"{target_host}:{port}", "User-Agent": "kube-probe/1.32", "Accept": "*/*",
               "Connection": "close"}
    for hh in h.get("httpHeaders") or []:
        headers[hh["name"]] = hh["value"]
    reader, writer = await connect(target_host, port)
    try:
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(req.encode())
        await writer.drain()
        line = await reader.readline()
        parts = line.decode(errors="replace").split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return False, f"bad response {line[:60]!r}"
        code = int(parts[1])
        if 200 <= code < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {code}"
    finally:
        writer.close()


async def run_probe(spec: ProbeSpec, container: Obj, host: str, connect: Connect, exec_fn: ExecFn) -> tuple[bool, str]:
    """Run one check with the probe's timeout; ``(ok, failure message)``."""
    h = spec.handler
    try:
        async with asyncio.timeout(spec.timeout):
            if "httpGet" in h:
                port = resolve_port(container, h["httpGet"].get("port", 80))
                return await _http_get(h["httpGet"], host, port, connect)
            if "tcpSocket" in h:
                t = h["tcpSocket"]
                port = resolve_port(container, t.get("port", 0))
                _, writer = await connect(t.get("host") or host, port)
                writer.close()
                return True, ""
            if "exec" in h:
                code = await exec_fn(list(h["exec"].get("command") or []), spec.timeout)
                return code == 0, "" if code == 0 else f"command exited with {code}"
            return False, "probe has no supported handler"
    except TimeoutError:
        return False, f"probe timed out after {spec.timeout:g}s"
    except (OSError, ValueError) as exc:
        return False, str(exc)
