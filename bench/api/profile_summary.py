"""Summarise a py-spy ``--format raw`` (collapsed stacks) profile: top functions by self and total time.

    .venv/bin/python -m bench.api.profile_summary bench/results/api-create-pods.folded [N]
"""

from __future__ import annotations

import sys
from collections import Counter


def summarise(path: str, top: int = 30) -> str:
    self_c: Counter[str] = Counter()
    total_c: Counter[str] = Counter()
    n = 0
    with open(path) as f:
        for line in f:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if not stack or not count.isdigit():
                continue
            c = int(count)
            frames = [fr.split(" (", 1)[0] + " " + fr.rsplit("/", 1)[-1].rstrip(")") if "(" in fr else fr
                      for fr in stack.split(";")]
            n += c
            self_c[frames[-1]] += c
            for fr in set(frames):
                total_c[fr] += c
    out = [f"{n} samples", "", "self%   function"]
    out += [f"{100 * c / n:5.1f}   {f}" for f, c in self_c.most_common(top)]
    out += ["", "total%  function"]
    out += [f"{100 * c / n:5.1f}   {f}" for f, c in total_c.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarise(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 30))
