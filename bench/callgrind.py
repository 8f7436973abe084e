"""Reading callgrind's output files (shared by the instruction-count benchmarks)."""

from __future__ import annotations

import glob
from pathlib import Path


def totals(pattern: str) -> list[int]:
    """The instruction total of each callgrind output file matching ``pattern``: the larger of its
    ``summary:`` and ``totals:`` lines (a dump can say ``summary: 0`` above its real ``totals:``);
    files with neither are left out."""
    out = []
    for f in sorted(glob.glob(pattern)):
        found = [int(line.split()[1]) for line in Path(f).read_text(errors="replace").splitlines()
                 if line.startswith(("summary:", "totals:"))]
        if found:
            out.append(max(found))
    return out
