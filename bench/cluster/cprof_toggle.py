"""Run ``servicenet.cli`` with a thread-CPU cProfile that SIGUSR1 starts and SIGUSR2 stops and
writes to OUT (so a benchmark profiles one phase of a long-running component, not its start-up).

    python -m bench.cluster.cprof_toggle OUT.prof controller-manager --kubeconfig ...
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from typing import Any

from servicenet import cli


def main() -> int:
    out = sys.argv[1]
    prof = cProfile.Profile(time.thread_time)

    def start(*_: Any) -> None:
        prof.enable()

    def stop(*_: Any) -> None:
        prof.disable()
        prof.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
