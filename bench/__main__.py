"""``python -m bench [NAME ...]`` (``make bench BENCH=dns``): run the benchmarks, in order.

Every benchmark is bounded in time and cleans up after itself; results are printed and, where a
benchmark supports it, written as JSON under ``bench/results/``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {
    "store": [HERE / "store_raw.py"],
    "api": [HERE / "api" / "run.py"],
    "controllers": [HERE / "controllers" / "run.py"],
    "node": [HERE / "node_ready.py"],
    "dns": [HERE / "dns" / "run.py"],
    "proxy": [HERE / "proxy" / "run.py"],
}


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("-")] or list(BENCHES)
    extra = [a for a in argv if a.startswith("-")]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        for script in BENCHES[name]:
            print(f"\n=== bench {name}: {script.relative_to(HERE.parent)} ===", flush=True)
            t0 = time.time()
            rc = subprocess.call([sys.executable, str(script), *extra], cwd=HERE.parent)
            print(f"=== bench {name}: exit {rc} in {time.time() - t0:.0f}s ===", flush=True)
            if rc != 0:
                failed.append(name)
    if failed:
        print(f"benchmarks that failed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
