"""Run a routing table through a real HAProxy without the API (for tables compiled directly)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from servicenet.ingress import render as rd
from servicenet.ingress.certs import self_signed
from servicenet.ingress.haproxy import HAProxy
from servicenet.ingress.model import Table

from .harness import free_port


@contextlib.asynccontextmanager
async def table_haproxy(tmp: Path, table: Table) -> AsyncIterator[int]:
    """HAProxy serving ``table`` on a free loopback HTTP port (yielded)."""
    hp = HAProxy(tmp / "hap")
    hp.prepare()
    (tmp / "hap" / "certs" / "default.pem").write_bytes(self_signed())
    files = rd.Files(str(tmp / "hap"), gen=".t")
    hp.write_files(rd.map_files(table, ".t") | {"crt-list.t.txt": rd.crt_list(table, files)})
    port = free_port()
    await hp.start(rd.render(table, rd.plan_slots(table), rd.Listen(("127.0.0.1",), port, free_port()), files))
    try:
        yield port
    finally:
        await hp.stop()
