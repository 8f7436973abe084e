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
    "store": ["bench.store_raw"],
    "api": ["bench.api.run", "bench.api.backends"],
    "controllers": ["bench.controllers.run"],
    "node": ["bench.node_ready"],
    "dns": ["bench.dns.run"],
    "proxy": ["bench.proxy.run", "bench.proxy.rootless"],
    "ingress": ["bench.ingress.run"],
    "clientlb": ["bench.clientlb.run"],
    "cluster": ["bench.cluster.run", "bench.cluster.scale"],
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
        for module in BENCHES[name]:
            print(f"\n=== bench {name}: python -m {module} ===", flush=True)
            t0 = time.time()
            rc = subprocess.call([sys.executable, "-m", module, *extra], cwd=HERE.parent)
            print(f"=== bench {name}: exit {rc} in {time.time() - t0:.0f}s ===", flush=True)
            if rc != 0:
                failed.append(name)
    if failed:
        print(f"benchmarks that failed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
