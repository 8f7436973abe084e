"""The API server under test, as its own process (``python -m servicenet.cli apiserver``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.api.conn import Target

ROOT = Path(__file__).resolve().parents[2]


def rss_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1]) * 1024
    return rss, hwm


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds(pid: int, tid: int) -> float:
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerProc:
    """``servicenet apiserver`` as its own process, on any storage (``extra``: e.g. ``--etcd-servers``).

    Several may share ``data_dir`` (API servers on one etcd share the CA, keys and tokens): each
    writes its own log and is found at the port its log names, with the shared kubeconfig's
    credentials. ``cprofile``: a CPU-clock cProfile of the server's main thread goes there (or, with
    ``wrapper``, whatever that module writes: ``python -m <wrapper> <cprofile> apiserver ...``).
    ``root``: the checkout whose servicenet package the server runs (an A/B's base)."""

    def __init__(self, data_dir: Path, storage: str = "sqlite", cprofile: str | None = None,
                 extra: list[str] | None = None, root: Path = ROOT, wrapper: str = "bench.api.cprof_server") -> None:
        self.data_dir = data_dir
        self.root = root
        self.cprofile = cprofile
        self.wrapper = wrapper
        self.storage = storage
        self.extra = list(extra or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self.target: Target | None = None
        self.startup_seconds = 0.0
        self.log_path: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120.0) -> Target:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # the first server of a data dir writes the kubeconfig; the others find it there
        out = self.log_path = self.data_dir / f"apiserver-{self.storage}-{time.monotonic_ns()}.out"
        kubeconfig = self.data_dir / "kubeconfig"
        entry = ["-m", self.wrapper, self.cprofile] if self.cprofile else ["-m", "servicenet.cli"]
        cmd = [sys.executable, *entry, "apiserver", "--data-dir", str(self.data_dir),
               "--api-listen", "127.0.0.1:0", "--storage", self.storage, "--log-level", "warning", *self.extra]
        t0 = time.monotonic()
        with open(out, "wb") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=self.root,
                                         env={**os.environ, "PYTHONPATH": str(self.root)})
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"apiserver exited ({self.proc.returncode}): {out.read_text()[-2000:]}")
            m = re.search(r"listening on https://\S+:(\d+)", out.read_text(errors="replace"))
            if m and kubeconfig.exists():
                self.startup_seconds = time.monotonic() - t0
                base = Target.from_kubeconfig(str(kubeconfig))
                self.target = Target("127.0.0.1", int(m.group(1)), base.token, base.ca_pem)
                return self.target
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"apiserver did not start within {timeout}s")

    def rss(self) -> tuple[int, int]:
        return rss_bytes(self.pid)

    def rss_mib(self) -> float:
        return rss_bytes(self.pid)[0] / 2**20

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def loop_cpu(self) -> float:
        """CPU of the main thread (the event loop: HTTP, handlers, fan-out), the serial part."""
        return thread_cpu_seconds(self.pid, self.pid)

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
