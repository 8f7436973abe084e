"""Host processes for containers: spawn into the pod, watch by pidfd, signal, re-attach after restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass

from servicenet.node.podsecurity import exposures, runtime_trees

__all__ = ["ContainerProcess", "proc_start_ticks", "spawn"]

PODINIT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "podinit.py")
PKG_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# what an unprivileged container user must reach to run the built-in images (and Python scripts)
RUNTIME_TREES = runtime_trees(sys.executable, [sys.prefix, sys.base_prefix], PKG_ROOT)


def proc_start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (``/proc/<pid>/stat`` field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    rest = data[data.rfind(b")") + 2:].split()
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


@dataclass
class ContainerProcess:
    """One running container process (our child, or adopted from a previous agent)."""

    pid: int
    start_ticks: int | None
    popen: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None
    term_signal: int | None = None

    async def wait(self) -> int | None:
        """Wait for exit; the exit code (128+signal for a signal), or None if unknown (adopted)."""
        if self.exit_code is not None:
            return self.exit_code
        loop = asyncio.get_running_loop()
        try:
            fd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            fd = -1
        if fd >= 0:
            done = loop.create_future()
            loop.add_reader(fd, lambda: done.done() or done.set_result(None))
            try:
                await done
            finally:
                loop.remove_reader(fd)
                os.close(fd)
        if self.popen is not None:
            rc = self.popen.wait()
            if rc < 0:
                self.term_signal = -rc
                rc = 128 - rc
            self.exit_code = rc
        return self.exit_code

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        return self.start_ticks is not None and proc_start_ticks(self.pid) == self.start_ticks

    def kill(self, sig: int = signal.SIGTERM) -> None:
        if not self.alive():
            return
        try:  # the container is its own session/process group leader
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


def spawn(argv: list[str], env: dict[str, str], log_path: str, *, netns: str | None = None,
          hostname: str = "", mounts: list[tuple[str, str, bool]] | None = None, cwd: str | None = None,
          builtin: bool = False, user: tuple[int, int, list[int]] | None = None) -> ContainerProcess:
    """Start a container process with stdout+stderr appended to ``log_path``.

    With ``netns`` the process goes through ``podinit`` (own UTS + mount namespace, bind mounts,
    then exec in the pod's network namespace) and keeps the same pid.
    """
    env = dict(env)
    env.setdefault("PATH", DEFAULT_PATH)
    if builtin:
        env["PYTHONPATH"] = PKG_ROOT
    if netns is not None:
        spec = {"netns": f"/var/run/netns/{netns}", "hostname": hostname, "cwd": cwd,
                "mounts": [list(m) for m in mounts or []], "argv": argv, "user": list(user) if user else None,
                "expose": exposures(RUNTIME_TREES, user[0], user[1]) if user else []}
        full = [sys.executable, "-I", "-S", PODINIT, json.dumps(spec)]
        run_cwd = None
    else:
        full = argv
        run_cwd = cwd if cwd and os.path.isdir(cwd) else None
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        popen = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=env,
                                 cwd=run_cwd, start_new_session=True, close_fds=True)
    finally:
        os.close(fd)
    return ContainerProcess(pid=popen.pid, start_ticks=proc_start_ticks(popen.pid), popen=popen)
