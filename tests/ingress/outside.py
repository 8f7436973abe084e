"""Machines outside the cluster, for netns-mode tests: each a network namespace of the test's own
(``sn-<id>-<name>``) joined to the node namespace by a veth pair on its own /30."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from .harness import run

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class Machine:
    netns: str
    ip: str
    node_side: str
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns]

    async def echo(self, name: str, *ports: int) -> None:
        """Start the echo HTTP server (``tests.ingress.backends``) in this namespace."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(*self.prefix, sys.executable, "-m", "tests.ingress.backends",
                                                    name, "0.0.0.0", *map(str, ports), env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        self.procs.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.strip() == b"ready", line

    async def start(self, *argv: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*self.prefix, *argv, stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL)
        self.procs.append(proc)
        return proc


async def _ip(*args: str) -> None:
    rc, out = await run("ip", *args)
    assert rc == 0, f"ip {' '.join(args)}: {out}"


@contextlib.asynccontextmanager
async def outside_machines(node_netns: str, names: list[str], node_cidr: str = "10.244.0.0/16"
                           ) -> AsyncIterator[dict[str, Machine]]:
    """Namespaces ``sn-<id>-<name>`` with a veth to the node namespace; 10.250.<i>.2/30 each, the
    node side .1, and a route to the node network through it. Removed on exit."""
    nid = secrets.token_hex(2)
    made: dict[str, Machine] = {}
    try:
        for i, name in enumerate(names, start=1):
            ns = f"sn-{nid}-{name}"
            out_if, node_if = f"sn-{nid}-{name}o", f"sn-{nid}-{name}n"
            assert len(node_if) <= 15, node_if
            await _ip("netns", "add", ns)
            made[name] = Machine(ns, f"10.250.{i}.2", f"10.250.{i}.1")
            await _ip("-n", ns, "link", "set", "lo", "up")
            await _ip("-n", ns, "link", "add", out_if, "type", "veth", "peer", "name", node_if, "netns", node_netns)
            await _ip("-n", ns, "addr", "add", f"10.250.{i}.2/30", "dev", out_if)
            await _ip("-n", ns, "link", "set", out_if, "up")
            await _ip("-n", node_netns, "addr", "add", f"10.250.{i}.1/30", "dev", node_if)
            await _ip("-n", node_netns, "link", "set", node_if, "up")
            await _ip("-n", ns, "route", "add", node_cidr, "via", f"10.250.{i}.1")
        yield made
    finally:
        for m in made.values():
            for p in m.procs:
                if p.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                    await p.wait()
            await run("ip", "netns", "del", m.netns)
