"""Start and stop local etcd members (tests, benchmarks, single-machine clusters).

Members listen on 127.0.0.1 ports picked by the caller's ``free_port``; each has its own data dir.
The binary is ``$SERVICENET_ETCD`` if set, else ``etcd`` on PATH (Debian's ``etcd-server``; see
docs/etcd.md for why).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


def etcd_binary() -> str:
    path = os.environ.get("SERVICENET_ETCD") or shutil.which("etcd")
    if not path:
        raise RuntimeError("etcd not found: install etcd-server (scripts/install-deps.sh) or set SERVICENET_ETCD")
    return path


def go_env(members_here: int, cpus: int | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """What to add to the environment of one of ``members_here`` etcd members that share this
    machine's ``cpus`` (pure).

    Go gives every process as many scheduler threads as the machine has CPUs, so several members
    on a small machine run more scheduler threads than there are cores, and an idle one spins
    looking for work before it sleeps, on cores the other members need. With two or more members
    here each gets its share of the CPUs this process may use (at least one). A ``GOMAXPROCS``
    already set in ``env`` (the caller's own choice) is kept. Measured: docs/etcd.md, "Members
    sharing one machine"."""
    if members_here < 2 or "GOMAXPROCS" in (env if env is not None else os.environ):
        return {}
    n = cpus if cpus is not None else len(os.sched_getaffinity(0))
    return {"GOMAXPROCS": str(max(1, n // members_here))}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Member:
    name: str
    data_dir: Path
    client_port: int
    peer_port: int
    proc: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)
    # client TLS: {"ca", "cert", "key"} serve https with client-certificate authentication, and
    # {"client_cert", "client_key"} are what the health check presents
    tls: dict[str, str] | None = None
    env: dict[str, str] = field(default_factory=dict)  # added to the inherited environment

    @property
    def client_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self, initial_cluster: str, state: str = "new") -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = open(self.data_dir.parent / f"{self.name}.log", "ab")  # noqa: SIM115 - handed to the child
        args = [
            etcd_binary(), "--name", self.name, "--data-dir", str(self.data_dir / "data"),
            "--listen-client-urls", self.client_url, "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url, "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", "servicenet", "--heartbeat-interval", "100",
            "--election-timeout", "1000", *self.extra,
        ]
        if self.tls:
            args += ["--cert-file", self.tls["cert"], "--key-file", self.tls["key"],
                     "--trusted-ca-file", self.tls["ca"], "--client-cert-auth"]
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True,
                                     env={**os.environ, **self.env} if self.env else None)
        log.close()

    def healthy(self, timeout: float = 1.0) -> bool:
        ctx = None
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls["ca"])
            ctx.load_cert_chain(self.tls["client_cert"], self.tls["client_key"])
        try:
            with urllib.request.urlopen(self.client_url + "/health", timeout=timeout, context=ctx) as r:
                return b'"health":"true"' in r.read()
        except OSError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                self.proc.wait(10)

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)


class Cluster:
    """``n`` members on 127.0.0.1 under ``base``; ``start()`` waits until every member is healthy."""

    def __init__(self, base: Path, n: int = 1, extra: list[str] | None = None,
                 tls: dict[str, str] | None = None) -> None:
        self.base = Path(base)
        self.members = [
            Member(f"m{i}", self.base / f"m{i}", free_port(), free_port(), extra=list(extra or []), tls=tls,
                   env=go_env(n))
            for i in range(n)
        ]

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, timeout: float = 30.0) -> Cluster:
        for m in self.members:
            m.start(self.initial_cluster)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0, members: list[Member] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for m in members or self.members:
            while not m.healthy():
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"etcd member {m.name} exited: see {self.base}/{m.name}.log")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"etcd member {m.name} not healthy within {timeout}s")
                time.sleep(0.05)

    def restart(self, m: Member, timeout: float = 30.0) -> None:
        m.start(self.initial_cluster, state="existing")
        self.wait_healthy(timeout, [m])

    def stop(self) -> None:
        for m in self.members:
            with contextlib.suppress(Exception):
                m.signal(signal.SIGCONT)
            with contextlib.suppress(Exception):
                m.kill(signal.SIGTERM)
            with contextlib.suppress(Exception):
                m.kill(signal.SIGKILL)
