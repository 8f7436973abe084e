"""Client-side load generators. Each entry point runs in its own process (its own event loop).

Times are ``time.monotonic()`` (CLOCK_MONOTONIC, shared by every process on the machine), so a
watcher process can subtract a send time stamped by a writer process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson

from bench.api import objects
from bench.api.conn import Conn, HttpError, Target

SENT_ANNOTATION = "bench.servicenet.io/sent"


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def collection(namespace: str, plural: str) -> str:
    return f"/api/v1/namespaces/{namespace}/{plural}"


# --------------------------------------------------------------------------------------------- creates
def create_burst(target: Target, kind: str, namespace: str, names: list[str], conns: int,
                 start_at: float, deadline: float) -> dict[str, Any]:
    """Create ``names`` as fast as possible over ``conns`` connections (closed loop)."""
    return _run(_create_burst(target, kind, namespace, names, conns, start_at, deadline))


PROTOBUF = "application/vnd.kubernetes.protobuf"
PROTOBUF_ACCEPT = PROTOBUF + ",application/json"  # what client-go's typed clients send


def _body(kind: str, name: str, i: int) -> bytes:
    if kind == "pods":
        return orjson.dumps(objects.pod(name, i))
    if kind == "pods-protobuf":
        from servicenet.api.pb import wire

        return wire.encode(objects.pod(name, i))
    if kind == "services":
        return orjson.dumps(objects.service(name))
    return orjson.dumps(objects.configmap(name))


async def _create_burst(target: Target, kind: str, namespace: str, names: list[str], conns: int,
                        start_at: float, deadline: float) -> dict[str, Any]:
    ctx = target.ssl_context()
    pool = [await Conn.open(target, ctx) for _ in range(conns)]
    bodies = [_body(kind, n, i) for i, n in enumerate(names)]
    pb = kind.endswith("-protobuf")
    path = collection(namespace, kind.removesuffix("-protobuf"))
    ctype, accept = (PROTOBUF, PROTOBUF_ACCEPT) if pb else ("application/json", "application/json")
    it = iter(range(len(names)))
    lat: list[float] = []
    errors: list[str] = []  # the first few failures' words
    done = failed = 0

    async def worker(c: Conn) -> None:
        nonlocal done, failed
        for i in it:
            if time.monotonic() > deadline:
                return
            t0 = time.monotonic()
            try:
                await c.request("POST", path, bodies[i], ctype, accept)
            except HttpError as exc:
                failed += 1
                if len(errors) < 5:
                    errors.append(str(exc))
                continue
            lat.append(time.monotonic() - t0)
            done += 1

    delay = start_at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
    t0 = time.monotonic()
    cpu0 = time.process_time()
    await asyncio.gather(*(worker(c) for c in pool))
    t1 = time.monotonic()
    cpu = time.process_time() - cpu0
    for c in pool:
        c.close()
    return {"done": done, "failed": failed, "errors": errors, "t0": t0, "t1": t1, "lat": lat, "cpu": cpu}


# ------------------------------------------------------------------------------------ steady writes
def steady_writes(target: Target, namespace: str, rate: float, duration: float,
                  max_conns: int = 64) -> dict[str, Any]:
    """Open-loop ConfigMap creates at ``rate``/s for ``duration`` s; per-write latencies."""
    return _run(_steady(target, namespace, rate, duration, max_conns))


async def _steady(target: Target, namespace: str, rate: float, duration: float,
                  max_conns: int) -> dict[str, Any]:
    ctx = target.ssl_context()
    free: list[Conn] = [await Conn.open(target, ctx) for _ in range(16)]
    opened = len(free)
    path = collection(namespace, "configmaps")
    n = int(rate * duration)
    bodies = [orjson.dumps(objects.configmap(f"steady-{i}")) for i in range(n)]
    lat: list[float] = []     # from the moment the request is written
    lat_co: list[float] = []  # from the scheduled time (no coordinated omission)
    errors: list[str] = []
    skipped = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, sched: float) -> None:
        nonlocal opened
        if free:
            c = free.pop()
        else:
            opened += 1
            c = await Conn.open(target, ctx)
        t0 = time.monotonic()
        try:
            await c.request("POST", path, bodies[i])
        except HttpError as exc:
            if len(errors) < 5:
                errors.append(str(exc))
            free.append(c)
            return
        t1 = time.monotonic()
        lat.append(t1 - t0)
        lat_co.append(t1 - sched)
        free.append(c)

    start = time.monotonic() + 0.05
    for i in range(n):
        sched = start + i / rate
        delay = sched - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(tasks) >= max_conns:
            skipped += 1  # the server is that far behind: do not pile up more connections
            continue
        t = asyncio.create_task(one(i, sched))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*list(tasks)), 30)
    elapsed = time.monotonic() - start
    for c in free:
        c.close()
    return {"done": len(lat), "errors": errors, "lat": lat, "lat_co": lat_co, "skipped": skipped,
            "elapsed": elapsed, "conns": opened}


# ------------------------------------------------------------------------------------------ watches
def watchers(target: Target, namespace: str, count: int, resource_version: str, expect: int,
             ready: Any, deadline: float) -> dict[str, Any]:
    """``count`` watch streams on ConfigMaps in ``namespace``; sets ``ready`` once all are open."""
    return _run(_watchers(target, namespace, count, resource_version, expect, ready, deadline))


async def _watchers(target: Target, namespace: str, count: int, rv: str, expect: int, ready: Any,
                    deadline: float) -> dict[str, Any]:
    ctx = target.ssl_context()
    path = collection(namespace, "configmaps") + f"?watch=true&resourceVersion={rv}&timeoutSeconds=120"
    conns = [await Conn.open(target, ctx) for _ in range(count)]
    for c in conns:
        c.send("GET", path)
    for c in conns:
        status, headers = await c.read_head()
        if status != 200:
            raise RuntimeError(f"watch failed: HTTP {status}")
    ready.set()
    recv: list[list[tuple[str, float, float]]] = [[] for _ in conns]

    async def consume(k: int, c: Conn) -> None:
        out = recv[k]
        stamped = 0  # events of the writer's: others (the namespace's kube-root-ca.crt) do not count
        async for line in c.lines():
            now = time.monotonic()
            ev = orjson.loads(line)
            md = ev["object"]["metadata"]
            sent = float((md.get("annotations") or {}).get(SENT_ANNOTATION, "nan"))
            out.append((md["name"], sent, now))
            stamped += sent == sent  # not NaN
            if stamped >= expect:
                return

    tasks = [asyncio.create_task(consume(k, c)) for k, c in enumerate(conns)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), max(1.0, deadline - time.monotonic()))
    for c in conns:
        c.close()
    return {"recv": recv}


def watch_writer(target: Target, namespace: str, rate: float, n: int) -> dict[str, Any]:
    """Create ``n`` ConfigMaps at ``rate``/s, each stamped with its send time; returns ack times."""
    return _run(_watch_writer(target, namespace, rate, n))


async def _watch_writer(target: Target, namespace: str, rate: float, n: int) -> dict[str, Any]:
    ctx = target.ssl_context()
    free = [await Conn.open(target, ctx) for _ in range(8)]
    path = collection(namespace, "configmaps")
    acks: dict[str, float] = {}
    sends: dict[str, float] = {}
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        c = free.pop() if free else await Conn.open(target, ctx)
        name = f"w-{i}"
        obj = objects.configmap(name)
        t0 = time.monotonic()
        obj["metadata"]["annotations"] = {SENT_ANNOTATION: repr(t0)}
        sends[name] = t0
        await c.request("POST", path, orjson.dumps(obj))
        acks[name] = time.monotonic()
        free.append(c)

    start = time.monotonic() + 0.05
    for i in range(n):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = asyncio.create_task(one(i))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    await asyncio.wait_for(asyncio.gather(*list(tasks)), 30)
    for c in free:
        c.close()
    return {"acks": acks, "sends": sends}
