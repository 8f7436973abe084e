"""The documented path and host vectors, through HAProxy: the same answers as the pure core."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from servicenet.ingress.match import backend_for

from .backends import serve
from .harness import Stack, free_port, ingress_stack
from .objects import ingress, path, rule, service, slice_
from .vectors import HOST_CASES, PATH_CASES


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[Stack, list[int]]]:
    ports = [free_port() for _ in range(3)]
    runner = await serve("s:", "127.0.0.1", ports)
    try:
        async with ingress_stack(tmp_path) as s:
            for i, p in enumerate(ports):
                await s.create(service(f"s{i}", [("http", 80)]))
                await s.create(slice_(f"s{i}", ["127.0.0.1"], [("http", p)]))
            yield s, ports
    finally:
        await runner.cleanup()


def _expect(stack: Stack, ports: list[int], host: str, req_path: str) -> str | None:
    """What the pure core says for this request, in the echo's terms."""
    t = stack.ctl.table
    be = backend_for(t, host, req_path)
    if not be:
        return None
    svc = t.upstream(be).service  # default/sN:80
    return f"s:{ports[int(svc.split('/')[1].split(':')[0][1:])]}"


async def test_path_vectors_through_haproxy(stack: tuple[Stack, list[int]]) -> None:
    s, ports = stack
    written = []
    for i, (rules, _, _) in enumerate(PATH_CASES):
        written.append(await s.create(ingress(f"p{i}", [rule(f"p{i}.test", *(
            path(p, f"s{j}", 80, t) for j, (t, p) in enumerate(rules)))])))
    await s.applied(*written)
    for i, (_, req, want) in enumerate(PATH_CASES):
        host = f"p{i}.test"
        got = await s.name(host, req)
        expected = f"s:{ports[want]}" if want is not None else None
        assert got == expected == _expect(s, ports, host, req), (i, PATH_CASES[i], got)


async def test_host_vectors_through_haproxy(stack: tuple[Stack, list[int]]) -> None:
    s, ports = stack
    for i, (hosts, req_host, want) in enumerate(HOST_CASES):
        obj = await s.put(ingress("hosts", [rule(h, path("/", f"s{j}")) for j, h in enumerate(hosts)]))
        await s.applied(obj)
        got = await s.name(req_host, "/")
        expected = f"s:{ports[want]}" if want is not None else None
        assert got == expected == _expect(s, ports, req_host, "/"), (i, HOST_CASES[i], got)
