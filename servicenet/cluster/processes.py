"""The processes of a multi-machine topology, by name (``etcd-1``, ``apiserver-2``,
``node-3/proxy``, ...): start, kill (any signal), restart with the same command line, stop all.

Each runs in a session of its own (a terminal's Ctrl-C reaches only ``servicenet up``, which
stops them in order) with its output in ``<logs>/<name>.log``. Each is started through
``setpriv --pdeathsig KILL``: if ``servicenet up`` itself is killed (kill -9), the kernel kills its
processes too instead of leaving them running without anyone to stop them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from dataclasses import dataclass, field
from pathlib import Path

from servicenet.common import log
from servicenet.common.component import bounded

_log = log.get("cluster")
STOP_TIMEOUT = 15.0
_PDEATHSIG = ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []


@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: asyncio.subprocess.Process | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.procs: dict[str, Proc] = {}

    def _env(self) -> dict[str, str]:
        root = str(Path(__file__).resolve().parents[2])  # this checkout's servicenet first
        return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}

    def log_path(self, name: str) -> Path:
        """Where the process ``name`` writes its output (appended across restarts)."""
        return self.logs / f"{name.replace('/', '-')}.log"

    async def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        """Start ``argv`` as ``name``; ``env`` is added to the inherited environment."""
        p = Proc(name, argv, self.log_path(name), {**self._env(), **(env or {})})
        self.procs[name] = p
        await self._start(p)
        return p

    async def _start(self, p: Proc) -> None:
        p.log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(p.log_path, "ab") as f:
            p.proc = await asyncio.create_subprocess_exec(*_PDEATHSIG, *p.argv, stdin=asyncio.subprocess.DEVNULL, stdout=f,
                                                          stderr=f, env=p.env, start_new_session=True)

    def get(self, name: str) -> Proc:
        return self.procs[name]

    def failed(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.proc is not None and p.proc.returncode is not None]

    async def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig``; for SIGKILL/SIGTERM wait until the process is gone."""
        p = self.procs[name]
        if not p.running:
            return
        assert p.proc is not None
        with contextlib.suppress(ProcessLookupError):
            p.proc.send_signal(sig)
        if sig in (signal.SIGKILL, signal.SIGTERM):
            await self._wait(p)

    async def restart(self, name: str) -> Proc:
        """Start a stopped (or killed) process again with the same command line."""
        p = self.procs[name]
        if p.running:
            await self.kill(name, signal.SIGTERM)
        await self._start(p)
        return p

    async def _wait(self, p: Proc) -> None:
        assert p.proc is not None
        try:
            await bounded(p.proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            _log.warning("process did not stop, killing it", process=p.name, pid=p.proc.pid)
            with contextlib.suppress(ProcessLookupError):
                p.proc.kill()
            await p.proc.wait()

    async def stop(self, names: list[str]) -> None:
        """SIGTERM to ``names`` at once, then wait for each (SIGKILL after the timeout)."""
        ps = [self.procs[n] for n in names if n in self.procs]
        for p in ps:
            if p.running:
                assert p.proc is not None
                with contextlib.suppress(ProcessLookupError):
                    p.proc.terminate()
        await asyncio.gather(*(self._wait(p) for p in ps if p.proc is not None))
