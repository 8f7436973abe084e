"""Test backends: a plain HTTP/1.1 echo server (what it saw, as JSON), run in-process or as a
subprocess inside a network namespace (``python -m tests.ingress.backends NAME HOST PORT...``)."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from aiohttp import web


def app(name: str) -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        label = name
        if name.endswith(":") and request.transport is not None:  # "name:" answers as name:<local port>
            label = name + str(request.transport.get_extra_info("sockname")[1])
        if request.headers.get("Upgrade", "").lower() == "websocket":
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            async for msg in ws:
                await ws.send_str(f"{label}:{msg.data}")
            return ws
        n = 0
        while chunk := await request.content.read(1 << 16):
            n += len(chunk)
        body = {"name": label, "method": request.method, "path": request.path_qs, "body_bytes": n,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "x_forwarded_for": request.headers.getall("X-Forwarded-For", [])}
        return web.json_response(body)

    a = web.Application(client_max_size=1 << 40)
    a.router.add_route("*", "/{tail:.*}", echo)
    return a


async def serve(name: str, host: str, ports: list[int], ssl_context: Any = None) -> web.AppRunner:
    runner = web.AppRunner(app(name), access_log=None)
    await runner.setup()
    for p in ports:
        await web.TCPSite(runner, host, p, ssl_context=ssl_context).start()
    return runner


async def _main(name: str, host: str, ports: list[int]) -> None:
    await serve(name, host, ports)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]))
