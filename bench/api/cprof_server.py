"""Run ``servicenet.cli`` under cProfile timed by the main thread's CPU clock (``time.thread_time``).

    python -m bench.api.cprof_server OUT.prof apiserver --data-dir ...

Wall-clock profiles of a server sharing two cores with its clients mostly measure who got the CPU
(a send that wakes a client is often preempted); the thread's CPU clock measures work. Each
profiled call adds a clock read, so many-call functions are inflated: rank with it, do not add up.
"""

from __future__ import annotations

import cProfile
import sys
import time

from servicenet import cli


def main() -> int:
    out = sys.argv[1]
    prof = cProfile.Profile(time.thread_time)
    prof.enable()
    try:
        return cli.main(sys.argv[2:])
    finally:
        prof.disable()
        prof.dump_stats(out)


if __name__ == "__main__":
    sys.exit(main())
