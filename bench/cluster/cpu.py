"""CPU seconds of named process trees from /proc (a process and all its descendants), so a
benchmark can say where the machine's CPU went during a phase: robust to load, unlike wall time."""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user+system CPU seconds) of ``pid``; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def snapshot(roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each named root pid and its live descendants."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                parent[int(entry)], cpu[int(entry)] = st
    owner = {pid: name for name, pid in roots.items()}
    out = dict.fromkeys(roots, 0.0)
    for pid, seconds in cpu.items():
        p, seen = pid, 0
        while p not in owner and p in parent and seen < 64:
            p, seen = parent[p], seen + 1
        if p in owner:
            out[owner[p]] += seconds
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: round(after.get(k, 0.0) - v, 3) for k, v in before.items()}
