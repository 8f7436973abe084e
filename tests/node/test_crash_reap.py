"""A crash at any moment leaks nothing (issue 13): the node agent's runtime is killed with SIGKILL
at random points of pod start-up and teardown, 100 times; each time a restarted runtime (what
``NodeAgent.start`` does: load the saved pods, reap with the intent journal, then drop the pods no
one claims) must leave no pod process, no pod namespace and no veth of ours behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from servicenet.common.netns import list_netns
from servicenet.node import journal as jn
from servicenet.node.network import NetnsNetwork
from servicenet.node.podsecurity import NOBODY
from servicenet.node.runtime import PodRuntime, RuntimeConfig

from .nodeutil import require_root

CHILD = Path(__file__).with_name("crash_child.py")
ROOT = Path(__file__).resolve().parents[2]
ITERATIONS = int(os.environ.get("SN_CRASH_ITERATIONS", "100"))
PODS = 2
CALIBRATE = 3


def marked_processes(marker: str) -> list[int]:
    out = []
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        out.append(int(e))
            except OSError:
                pass
    return out


def node_links(node_ns: str) -> list[str]:
    out = subprocess.run(["ip", "-n", node_ns, "-o", "link", "show"], capture_output=True, text=True).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def test_replay_and_plan_are_pure() -> None:
    lines = [jn.encode(r) for r in (
        {"op": "netns", "uid": "a", "name": "sn-x-p1", "veth": "sn-x-v1"},
        {"op": "spawn", "uid": "a", "container": "c", "netns": "sn-x-p1", "ip": "10.0.0.2", "t": 1.0},
        {"op": "pid", "uid": "a", "container": "c", "pid": 10, "ticks": 5},
        {"op": "netns", "uid": "b", "name": "sn-x-p2", "veth": "sn-x-v2"},
        {"op": "gone", "uid": "b"},
        {"op": "spawn", "uid": "l", "container": "c", "netns": None, "ip": "127.64.1.2", "t": 7.0},
    )] + [b'{"op": "pid", "uid": "a", "contai']  # torn by the crash
    trails = jn.replay(lines)
    assert set(trails) == {"a", "l"}
    p = jn.plan(trails, set(), ["sn-x-node", "sn-x-p1", "sn-x-p9", "sn-y-p1"], "sn-x-", "sn-x-node", set())
    assert p.procs == ((10, 5),) and p.ips == ("127.64.1.2",) and p.since == 7.0
    assert p.netns == ("sn-x-p1", "sn-x-p9")  # journal + prefix sweep; never another agent's or the node's
    kept = jn.plan(trails, {"a"}, ["sn-x-node", "sn-x-p1"], "sn-x-", "sn-x-node", {"sn-x-p1"})
    assert kept.procs == () and kept.netns == ()
    assert [r["op"] for r in jn.compacted(trails, {"a"})] == ["netns", "spawn", "pid"]


async def _restart_and_reap(data_dir: str, net_id: str, cidr: str) -> dict[str, int]:
    """What a restarted agent does with nothing left in the API: reap, then drop unclaimed pods."""
    net = NetnsNetwork(cidr, net_id)
    await net.setup()
    rt = PodRuntime(RuntimeConfig(node_name="crash", data_dir=data_dir, default_user=NOBODY), net)
    rt.load_state()
    counts = await rt.reap_leftovers()
    counts["orphans"] = await rt.cleanup_orphans()
    rt.journal.close()
    return counts


@pytest.mark.root
@pytest.mark.slow  # about a minute: started first under xdist (tests/conftest.py)
async def test_kill_9_at_random_points_leaks_nothing(tmp_path: Path) -> None:
    require_root()
    net_id, cidr = secrets.token_hex(2), f"10.244.{random.randint(10, 200)}.0/24"
    prefix, node_ns = f"sn-{net_id}-", f"sn-{net_id}-node"
    data = tmp_path / "node"
    data.mkdir()
    os.chmod(tmp_path, 0o755)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    rng = random.Random(int(os.environ.get("SN_CRASH_SEED", str(random.randrange(1 << 30)))))
    leaks: list[tuple[int, float, str, Any]] = []
    phases = {"start-up": 0, "teardown": 0, "finished": 0}
    reaped = {"processes": 0, "netns": 0, "orphans": 0}
    settled = 0  # iterations whose leftovers vanished only while we waited
    transient = {"processes": 0, "netns": 0, "veths": 0}
    span = 60.0  # ready -> done, measured by the first (unkilled) runs
    started = time.monotonic()

    async def spawn() -> tuple[asyncio.subprocess.Process, str]:
        """A child that imports and then waits for ``go``: started one iteration ahead, so that
        the interpreter's start-up overlaps the previous iteration instead of adding to it."""
        marker = f"{rng.randrange(10**11, 10**12)}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), str(data), net_id, cidr, marker, str(PODS),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env)
        return proc, marker

    upcoming: tuple[asyncio.subprocess.Process, str] | None = None
    try:
        upcoming = await spawn()
        for i in range(ITERATIONS + CALIBRATE):
            proc, marker = upcoming
            upcoming = None
            assert proc.stdout is not None and proc.stdin is not None
            assert (await asyncio.wait_for(proc.stdout.readline(), 30)).strip() == b"ready"
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            t0 = time.monotonic()
            if i + 1 < ITERATIONS + CALIBRATE:
                upcoming = await spawn()
            seen: list[bytes] = []

            async def read_lines(out: asyncio.StreamReader = proc.stdout, seen: list[bytes] = seen) -> None:
                while line := await out.readline():
                    seen.append(line.strip())

            reader = asyncio.create_task(read_lines())
            if i < CALIBRATE:  # calibration: let it run to the end (the shortest run sets the span)
                await asyncio.wait_for(proc.wait(), 60)
                await reader
                assert seen == [b"running", b"done"], seen
                span = min(span, time.monotonic() - t0)
                continue
            delay = rng.uniform(0, span)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), delay)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):  # it may have ended just now
                    proc.kill()
            await proc.wait()
            await reader
            phases["finished" if b"done" in seen else "teardown" if b"running" in seen else "start-up"] += 1
            counts = await _restart_and_reap(str(data), net_id, cidr)
            for k in reaped:
                reaped[k] += counts.get(k, 0)
            def leftovers(marker: str = marker) -> tuple[list[int], list[str], list[str]]:
                return (marked_processes(marker), [n for n in list_netns() if n.startswith(prefix) and n != node_ns],
                        [n for n in node_links(node_ns) if n.startswith(prefix) and n != f"{prefix}br"])

            # a veth can outlive its deleted namespace for a moment (the kernel frees the namespace once
            # its last reference goes): wait, with a deadline, for the state to settle
            deadline = time.monotonic() + 3.0
            first = left = leftovers()
            while any(left) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                left = leftovers()
            if any(first) and not any(left):
                settled += 1
                for kind, items in zip(("processes", "netns", "veths"), first, strict=True):
                    transient[kind] += len(items)
            left_procs, left_ns, left_links = left
            if left_procs or left_ns or left_links:
                helpers = subprocess.run(["sh", "-c", f"ps -eo pid,ppid,cmd | grep -- {prefix} | grep -v grep"],
                                         capture_output=True, text=True).stdout
                links = subprocess.run(["ip", "-n", node_ns, "-d", "link", "show"], capture_output=True,
                                       text=True).stdout
                leaks.append((i, delay, helpers + links, (left_procs, left_ns, left_links)))
                for pid in left_procs:  # clean up for the next iteration
                    os.kill(pid, 9)
                for n in left_ns:
                    subprocess.run(["ip", "netns", "del", n], check=False)
    finally:
        if upcoming is not None:  # a failed iteration: the child started ahead never got ``go``
            upcoming[0].kill()
            await upcoming[0].wait()
        for n in [n for n in list_netns() if n.startswith(prefix)]:
            subprocess.run(["ip", "netns", "pids", n], check=False)
            subprocess.run(["ip", "netns", "del", n], check=False)
    elapsed = time.monotonic() - started
    print(f"\ncrash-reap: {ITERATIONS} kills in {elapsed:.0f} s (span {span:.2f} s), phases {phases}, "
          f"reaped {reaped}, settled after a wait {settled} {transient}, leaking iterations {len(leaks)}")
    assert leaks == [], leaks
    assert phases["start-up"] > 0 and phases["teardown"] > 0  # both phases were hit
