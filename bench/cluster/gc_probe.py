"""Run ``servicenet.cli`` recording every garbage collection's generation and pause: SIGUSR1
starts recording, SIGUSR2 writes ``gen pause_ms collected`` lines to OUT (long pauses are
latency tails that no CPU profile shows).

    python -m bench.cluster.gc_probe OUT.txt apiserver ...
"""

from __future__ import annotations

import gc
import signal
import sys
import time
from typing import Any

from servicenet import cli


def main() -> int:
    out = sys.argv[1]
    pauses: list[tuple[int, float, int]] = []
    state = {"on": False, "t0": 0.0}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            state["t0"] = time.perf_counter()
        elif state["on"]:
            pauses.append((info["generation"], (time.perf_counter() - state["t0"]) * 1e3, info["collected"]))

    def start(*_: Any) -> None:
        state["on"] = True

    def stop(*_: Any) -> None:
        state["on"] = False
        with open(out, "w") as f:
            f.writelines(f"{g} {ms:.2f} {n}\n" for g, ms, n in pauses)

    gc.callbacks.append(on_gc)
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
