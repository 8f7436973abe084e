"""Remove what a crashed node agent left behind (the I/O shell of :mod:`servicenet.node.journal`).

Processes are found three ways, so that none escapes even when its pid was never recorded:
by the journal's pid records (checked against their start time), by living in one of the
namespaces being removed (``/proc/<pid>/ns/net`` is that namespace; ``podinit`` still carries the
namespace path in its command line before it joins it), and in loopback mode by the pod IP in
the environment the agent gave them (``SERVICENET_BIND_IP``) for a process started after the
intent. Processes are killed (SIGKILL) and waited for before their namespace is deleted; deleting
a pod namespace takes its veth pair (and any rule inside it) with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterable

from servicenet.common import log
from servicenet.common.netns import list_netns, netns_path
from servicenet.node.journal import ReapPlan
from servicenet.node.process import proc_start_ticks

__all__ = ["find_processes", "kill_and_wait", "list_netns", "reap", "remove_netns"]

_log = log.get("node.reaper")
_TICK = os.sysconf("SC_CLK_TCK")


def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def _ns_inode(name: str) -> int | None:
    try:
        return os.stat(netns_path(name)).st_ino
    except OSError:
        return None


def proc_is_ours() -> bool:
    """Does /proc show this process's own pid namespace? (Under a user namespace with its own pid
    namespace but the host's /proc, pids read there would name other processes: scan nothing.)"""
    try:
        return int(os.readlink("/proc/self")) == os.getpid()
    except (OSError, ValueError):
        return False


def find_processes(netns: Iterable[str] = (), ips: Iterable[str] = (), since: float = 0.0,
                   exclude_groups: Iterable[int] = ()) -> list[tuple[int, int | None]]:
    """(pid, start ticks) of processes in ``netns`` (or on their way in), or loopback-mode pods'
    processes with one of ``ips`` started at or after ``since``; a process whose process group or
    session is in ``exclude_groups`` (a kept container's) is left alone."""
    if not proc_is_ours():
        return []
    names = list(netns)
    inodes = {i for i in (_ns_inode(n) for n in names) if i is not None}
    paths = [netns_path(n).encode() for n in names]
    markers = [b"SERVICENET_BIND_IP=" + ip.encode() + b"\0" for ip in ips]
    keep = set(exclude_groups)
    me = os.getpid()
    boot = _boot_time() if markers else 0.0
    out: list[tuple[int, int | None]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        hit = False
        try:
            if inodes and os.stat(f"/proc/{pid}/ns/net").st_ino in inodes:
                hit = True
            elif paths:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmd = f.read()
                hit = b"podinit" in cmd and any(p in cmd for p in paths)
            if not hit and markers:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    env = f.read() + b"\0"
                ticks = proc_start_ticks(pid)
                hit = (any(m in env for m in markers) and ticks is not None
                       and boot + ticks / _TICK >= since - 1.0)
            if hit and keep and (os.getpgid(pid) in keep or os.getsid(pid) in keep):
                continue
        except OSError:
            continue
        if hit:
            out.append((pid, proc_start_ticks(pid)))
    return out


def orphan_helpers(prefix: str, agent_cmdline: bytes = b"", agent_ticks: int = 0) -> list[tuple[int, int | None]]:
    """Helper commands (``ip netns add sn-…``, ``ip -n sn-… -batch``) a dead agent started that
    still run: orphans (re-parented to pid 1) naming our prefix, or forks of the dead agent caught
    before their exec (its command line, started after it). Left alone they could create a
    namespace or veth after the reap."""
    if not proc_is_ours():
        return []
    me = str(os.getpid())
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or entry == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read()
            ticks = proc_start_ticks(int(entry))
            ours = (prefix.encode() in cmd and b"podinit" not in cmd) or (
                agent_cmdline and cmd == agent_cmdline and ticks is not None and ticks >= agent_ticks)
            if ours and os.getppid() != int(entry) and _ppid(int(entry)) == 1:
                out.append((int(entry), ticks))
        except OSError:
            continue
    return out


def record_agent(path: str) -> tuple[bytes, int]:
    """Write this agent's command line and start time to ``path``; return the previous agent's."""
    prev: tuple[bytes, int] = (b"", 0)
    if not proc_is_ours():
        return prev
    with contextlib.suppress(OSError, ValueError):
        with open(path, "rb") as f:
            ticks, _, cmd = f.read().partition(b"\n")
            prev = (cmd, int(ticks))
    with open(f"/proc/{os.getpid()}/cmdline", "rb") as f:
        cmd = f.read()
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(b"%d\n" % (proc_start_ticks(os.getpid()) or 0) + cmd)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return prev


def _ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return int(data[data.rfind(b")") + 2:].split()[1])


async def finish_helpers(prefix: str, agent: tuple[bytes, int] = (b"", 0), wait: float = 2.0) -> int:
    """Let a dead agent's helper commands finish (bounded), then kill what still runs."""
    deadline = time.monotonic() + wait
    while (found := orphan_helpers(prefix, *agent)) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return await kill_and_wait(found) if found else 0


async def kill_and_wait(procs: Iterable[tuple[int, int | None]], timeout: float = 10.0) -> int:
    """SIGKILL each process that is still the one recorded (same start time); wait until all are
    gone. Returns how many were killed."""
    if not proc_is_ours():
        return 0
    alive: list[tuple[int, int | None]] = []
    for pid, t in dict.fromkeys(procs):
        if t is None or proc_start_ticks(pid) != t:
            continue
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue  # gone already, or not ours to kill: do not wait for it
        alive.append((pid, t))
    deadline = time.monotonic() + timeout
    while any(proc_start_ticks(p) == t for p, t in alive) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return len(alive)


async def _ip(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec("ip", *argv, stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    await proc.wait()


async def remove_netns(names: Iterable[str]) -> None:
    """Kill every process inside the namespaces, then delete them."""
    names = list(names)
    if not names:
        return
    for _ in range(3):  # a process may fork while we kill: look again
        found = find_processes(netns=names)
        if not found:
            break
        await kill_and_wait(found)
    for n in names:
        await _ip("netns", "del", n)


async def node_veths(node_netns: str, prefix: str) -> list[str]:
    """The pod-side veths (``<prefix>v<n>``) that exist in the node namespace."""
    proc = await asyncio.create_subprocess_exec("ip", "-n", node_netns, "-o", "link", "show",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    names = [line.split(":")[1].strip().split("@")[0] for line in out.decode().splitlines() if line.count(":") >= 2]
    return [n for n in names if n.startswith(prefix + "v")]


async def reap(p: ReapPlan, node_netns: str | None, prefix: str | None = None,
               kept_veths: frozenset[str] = frozenset()) -> dict[str, int]:
    """Carry out a reap plan (after :func:`finish_helpers`); returns counts of what was removed."""
    killed = await kill_and_wait(p.procs)
    if p.ips:
        killed += await kill_and_wait(find_processes(ips=p.ips, since=p.since))
    before = len(p.netns)
    await remove_netns(p.netns)
    veths = 0
    if node_netns and prefix and os.path.exists(netns_path(node_netns)):
        # a pod's veth normally dies with its namespace; one no kept pod owns is removed here
        for v in await node_veths(node_netns, prefix):
            if v not in kept_veths:
                await _ip("-n", node_netns, "link", "del", v)
                veths += 1
    counts = {"processes": killed, "netns": before, "veths": veths, "pods": len(p.uids)}
    if killed or before:
        _log.info("reaped leftovers of a previous agent", **counts)
    return counts
