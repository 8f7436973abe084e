"""A separate process that floods the API server with slow requests from one user.

Each of N connections sends a ConfigMap POST whose body trickles in (one byte every ``hold``
seconds: a slow client holding a seat) until a line arrives on stdin, then sends the rest, and
records the answer; a client stops sending once it has its answer. Prints one JSON line: status counts, the
Retry-After headers and 429 bodies seen, and the names of the ConfigMaps acknowledged with 201.

    python slow_flood.py URL TOKEN CA_FILE N SECONDS_PER_BYTE  (release: a line on stdin)
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import ssl
import sys
from urllib.parse import urlsplit


async def one(i: int, host: str, port: int, ctx: ssl.SSLContext, token: str, hold: float,
              gate: asyncio.Semaphore, release: asyncio.Event, out: dict) -> None:  # type: ignore[type-arg]
    name = f"flood-{i:05d}"
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                       "data": {"pad": "x" * 40}}).encode()
    async with gate:  # bound concurrent TLS handshakes
        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
        except OSError as exc:
            out["errors"].append(f"connect: {exc}")
            return
        head = (f"POST /api/v1/namespaces/flood/configmaps HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        writer.write(head)
        await writer.drain()

    async def trickle() -> None:
        b = 0
        while b < len(body) - 1 and not release.is_set():
            writer.write(body[b:b + 1])
            await writer.drain()
            b += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(release.wait(), hold)
        writer.write(body[b:])
        await writer.drain()

    t = asyncio.create_task(trickle())
    try:
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 300)
        clen = [ln for ln in raw.decode("latin-1").split("\r\n") if ln.lower().startswith("content-length:")]
        if clen:
            raw += await asyncio.wait_for(reader.readexactly(int(clen[0].split(":")[1])), 30)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        out["errors"].append(f"read: {exc!r}")
        return
    finally:
        t.cancel()
        writer.close()
    head_text, _, rest = raw.partition(b"\r\n\r\n")
    lines = head_text.decode("latin-1").split("\r\n")
    if not lines or len(lines[0].split()) < 2:
        out["errors"].append("no response")
        return
    status = int(lines[0].split()[1])
    out["status"][status] += 1
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if status == 429:
        out["retry_after"].add(headers.get("retry-after", ""))
        out["bodies"].add(rest.decode(errors="replace"))
    if status == 201:
        out["created"].append(name)


async def main() -> None:
    url, token, ca, n, hold = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), float(sys.argv[5])
    parts = urlsplit(url)
    ctx = ssl.create_default_context(cafile=ca)
    out: dict = {"status": collections.Counter(), "retry_after": set(), "bodies": set(), "created": [],  # type: ignore[type-arg]
                 "errors": []}
    gate = asyncio.Semaphore(64)
    release = asyncio.Event()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    async def wait_release() -> None:
        await stdin.readline()
        release.set()

    waiter = asyncio.create_task(wait_release())
    await asyncio.gather(*(one(i, parts.hostname or "127.0.0.1", parts.port or 443, ctx, token, hold, gate,
                               release, out) for i in range(n)))
    waiter.cancel()
    print(json.dumps({"status": dict(out["status"]), "retry_after": sorted(out["retry_after"]),
                      "bodies": sorted(out["bodies"]), "created": out["created"], "errors": out["errors"][:20],
                      "n_errors": len(out["errors"])}))


if __name__ == "__main__":
    asyncio.run(main())
