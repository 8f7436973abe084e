"""The node agent's intent journal: what it is about to create, written down (fsynced) first.

A crash (kill -9, power loss) can stop the agent between creating a kernel object or process and
recording it in the pod's ``state.json``. So before it creates a pod network namespace (and its
veth), or starts a container process, the agent appends an *intent* record to
``<data-dir>/journal.jsonl`` and fsyncs it; once a process runs, its pid and start time follow; once
a pod is torn down, a ``gone`` record closes it. On the next start :mod:`servicenet.node.reaper`
replays the journal and removes everything a record names that no surviving pod owns.

Records (one JSON object per line; a torn last line from a crash is ignored):

* ``{"op": "netns", "uid", "name", "veth"}`` — before ``ip netns add`` (netns mode);
* ``{"op": "spawn", "uid", "container", "netns", "ip", "t"}`` — before a container process starts;
* ``{"op": "pid", "uid", "container", "pid", "ticks"}`` — the process that started;
* ``{"op": "gone", "uid"}`` — the pod's processes and namespace are gone.

This module's core (:func:`replay`, :func:`plan`, :func:`compacted`) is pure; :class:`Journal` is the
thin append-and-fsync file shell.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Journal", "PodTrail", "ReapPlan", "compacted", "plan", "replay"]

Record = dict[str, Any]


@dataclass
class PodTrail:
    """What the journal says one pod (by uid) may have left in the kernel."""

    uid: str
    netns: set[str] = field(default_factory=set)
    veths: set[str] = field(default_factory=set)
    procs: dict[tuple[str, int], int | None] = field(default_factory=dict)  # (container, pid) -> ticks
    spawns: list[Record] = field(default_factory=list)  # intents (a process may exist, pid unknown)
    records: list[Record] = field(default_factory=list)


@dataclass(frozen=True)
class ReapPlan:
    """What to remove: processes by (pid, start ticks), pod IPs whose unrecorded processes to find
    (loopback mode), started no earlier than ``since``, and namespaces (their processes first)."""

    procs: tuple[tuple[int, int | None], ...] = ()
    ips: tuple[str, ...] = ()
    since: float = 0.0
    netns: tuple[str, ...] = ()
    veths: tuple[str, ...] = ()
    uids: tuple[str, ...] = ()


def replay(lines: Iterable[bytes | str]) -> dict[str, PodTrail]:
    """The open trails (pods without a ``gone`` record), in journal order (pure)."""
    trails: dict[str, PodTrail] = {}
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn line written as the agent died
        if not isinstance(rec, dict) or "uid" not in rec:
            continue
        uid = str(rec["uid"])
        op = rec.get("op")
        if op == "gone":
            trails.pop(uid, None)
            continue
        t = trails.setdefault(uid, PodTrail(uid))
        t.records.append(rec)
        if op == "netns":
            t.netns.add(str(rec.get("name", "")))
            if rec.get("veth"):
                t.veths.add(str(rec["veth"]))
        elif op == "spawn":
            t.spawns.append(rec)
            if rec.get("netns"):
                t.netns.add(str(rec["netns"]))
        elif op == "pid":
            t.procs[(str(rec.get("container", "")), int(rec["pid"]))] = rec.get("ticks")
    return trails


def plan(trails: dict[str, PodTrail], keep: set[str], live_netns: Iterable[str], prefix: str | None,
         node_netns: str | None, kept_netns: set[str]) -> ReapPlan:
    """Everything of ours no kept pod owns (pure).

    ``keep``: uids of pods the agent will adopt; ``live_netns``: namespaces that exist now;
    ``prefix``: this agent's namespace prefix (``sn-<id>-``; None in loopback mode); ``kept_netns``:
    the namespaces of kept pods."""
    procs: list[tuple[int, int | None]] = []
    ips: list[str] = []
    since = 0.0
    netns: set[str] = set()
    veths: set[str] = set()
    uids: list[str] = []
    for uid, t in trails.items():
        if uid in keep:
            continue
        uids.append(uid)
        procs += [(pid, ticks) for (_, pid), ticks in t.procs.items()]
        for s in t.spawns:
            if s.get("ip") and not s.get("netns"):
                ips.append(str(s["ip"]))
                since = min(since, float(s.get("t") or 0.0)) if since else float(s.get("t") or 0.0)
        netns |= t.netns
        veths |= t.veths
    live = set(live_netns)
    if prefix:
        netns |= {n for n in live if n.startswith(prefix)}
    netns -= kept_netns
    netns.discard(node_netns or "")
    return ReapPlan(tuple(dict.fromkeys(procs)), tuple(dict.fromkeys(ips)), since,
                    tuple(sorted(n for n in netns if n in live)), tuple(sorted(veths)), tuple(uids))


def compacted(trails: dict[str, PodTrail], keep: set[str]) -> list[Record]:
    """The records worth keeping after a reap: those of kept pods (pure)."""
    return [r for uid, t in trails.items() if uid in keep for r in t.records]


def encode(rec: Record) -> bytes:
    return json.dumps(rec, separators=(",", ":"), sort_keys=True).encode() + b"\n"


class Journal:
    """Append-only, fsynced intent log (the I/O shell)."""

    def __init__(self, path: str, compact_every: int = 2000) -> None:
        self.path = path
        self.compact_every = compact_every
        self._appended = 0
        self._fd = -1

    def read(self) -> dict[str, PodTrail]:
        try:
            with open(self.path, "rb") as f:
                return replay(f.read().splitlines())
        except FileNotFoundError:
            return {}

    def record(self, rec: Record) -> None:
        """Append ``rec`` and fsync before returning (the intent is durable before the act)."""
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.write(self._fd, encode(rec))
        os.fsync(self._fd)
        self._appended += 1
        if self._appended >= self.compact_every:
            trails = self.read()
            self.rewrite([r for t in trails.values() for r in t.records])

    def rewrite(self, records: list[Record]) -> None:
        """Replace the journal with ``records`` (atomically: temp file, fsync, rename, fsync dir)."""
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"".join(encode(r) for r in records))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dfd = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._appended = 0

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
