"""What holds a component's event loop up, for the probes that wrap a component (cm_probe, api_probe).

:class:`LoopWatch` records, while ``on``, into a shared list of dicts (each with CLOCK_MONOTONIC ``t``):

* ``gc``: every collection of the interpreter's collector (generation, pause in ms); full
  collections also while off (``before``: ahead of the recording, with the frozen object count);
* ``stall``: the event loop did not run a 2 ms timer for ``ms`` (with the main thread's innermost
  frames when a sampling thread caught it mid-stall). Only with ``stalls`` (the benchmark sets
  ``BENCH_PROBE_STALLS=1``): the 2 ms timer and the sampling thread cost the watched process
  about as much CPU per flip as its own work (an API server's 10 ms per flip became 18-22 ms).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any

TICK = 0.002
STALL = 0.010
ENV = "BENCH_PROBE_STALLS"


class LoopWatch:
    def __init__(self, recs: list[dict[str, Any]], stalls: bool | None = None) -> None:
        self.recs = recs
        self.stalls = os.environ.get(ENV) == "1" if stalls is None else stalls
        self.on = False
        self._gc_t0 = 0.0
        self._beat = time.monotonic()
        self._stack: list[str] | None = None
        self._main = threading.get_ident()
        self._recording = threading.Event()
        gc.callbacks.append(self._on_gc)
        if self.stalls:
            threading.Thread(target=self._sampler, daemon=True).start()

    def rec(self, **kw: Any) -> None:
        if self.on:
            self.recs.append(kw)

    def start(self) -> None:
        self._beat = time.monotonic()
        self.on = True
        self._recording.set()

    def stop(self) -> None:
        self.on = False
        self._recording.clear()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_t0 = time.monotonic()
            return
        r = {"kind": "gc", "t": self._gc_t0, "gen": info["generation"],
             "ms": round((time.monotonic() - self._gc_t0) * 1e3, 3), "collected": info["collected"]}
        if info["generation"] == 2 and not self.on:
            self.recs.append({**r, "before": True, "frozen": gc.get_freeze_count()})
        else:
            self.rec(**r)

    async def beat(self) -> None:
        """Run in the watched loop: a 2 ms timer while recording, a stall record when it is late."""
        if not self.stalls:
            return
        while True:
            if not self.on:
                await asyncio.sleep(0.2)
                self._beat = time.monotonic()
                continue
            t = time.monotonic()
            await asyncio.sleep(TICK)
            now = time.monotonic()
            self._beat = now
            late = now - t - TICK
            if late > STALL:
                self.rec(kind="stall", t=t, ms=round(late * 1e3, 2), stack=self._stack)
            self._stack = None

    def _sampler(self) -> None:  # catches what the main thread runs while the loop is stalled
        while True:
            self._recording.wait()
            time.sleep(0.005)
            if self.on and time.monotonic() - self._beat > STALL and self._stack is None:
                frame = sys._current_frames().get(self._main)
                if frame is not None:
                    self._stack = [f"{f.filename.rsplit('/', 2)[-2:]}:{f.lineno} {f.name}"
                                   for f in traceback.extract_stack(frame)[-8:]]


def run_recorded(lw: Any, recs: list[dict[str, Any]], out: str, argv: list[str]) -> int:
    """Run ``servicenet.cli`` with ``argv``; SIGUSR1 starts ``lw``, SIGUSR2 stops it and writes
    ``recs`` to ``out`` as JSON lines (under a temporary name first: the benchmark waits for ``out``)."""
    from servicenet import cli

    def start(*_: Any) -> None:
        lw.start()

    def stop(*_: Any) -> None:
        lw.stop()
        with open(out + ".tmp", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in recs)
        os.replace(out + ".tmp", out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    return cli.main(argv)


def load(path: str) -> list[dict[str, Any]]:
    """The records a probe wrote (JSON lines)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
