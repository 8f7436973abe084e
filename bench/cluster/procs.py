"""Processes for the storage benchmarks: local etcd members, API servers on any backend, and a raw
etcd put loop (the ceiling an API server on that etcd can approach)."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from aetcd import rpc

from bench.api.conn import Target
from bench.api.server_proc import ROOT, cpu_seconds, rss_bytes


class ApiServer:
    """``servicenet apiserver`` on ``storage`` (extra flags for etcd); several may share ``data_dir``."""

    def __init__(self, data_dir: Path, storage: str, extra: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.storage = storage
        self.extra = list(extra or [])
        self.proc: subprocess.Popen[bytes] | None = None
        self.target: Target | None = None

    def start(self, timeout: float = 120.0) -> Target:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = self.data_dir.parent / f"apiserver-{self.storage}-{time.monotonic_ns()}.out"
        cmd = [sys.executable, "-m", "servicenet.cli", "apiserver", "--data-dir", str(self.data_dir),
               "--api-listen", "127.0.0.1:0", "--storage", self.storage, "--log-level", "warning", *self.extra]
        with open(out, "wb") as f:
            self.proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"apiserver exited ({self.proc.returncode}): {out.read_text()[-2000:]}")
            m = re.search(r"listening on https://\S+:(\d+)", out.read_text(errors="replace"))
            kc = self.data_dir / "kubeconfig"
            if m and kc.exists():
                base = Target.from_kubeconfig(str(kc))
                self.target = Target("127.0.0.1", int(m.group(1)), base.token, base.ca_pem)
                return self.target
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"apiserver did not start within {timeout}s")

    def rss_mib(self) -> float:
        assert self.proc is not None
        return rss_bytes(self.proc.pid)[0] / 2**20

    def cpu(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

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


def raw_etcd_puts(endpoint: str, n: int, inflight: int = 64, size: int = 400) -> float:
    """Puts per second of ``n`` distinct keys with ``inflight`` concurrent requests (durable: each
    put is acknowledged after etcd's raft commit and fsync, as an API server's create)."""
    async def go() -> float:
        async with grpc.aio.insecure_channel(endpoint.split("://", 1)[-1]) as ch:
            kv = rpc.KVStub(ch)
            value = b"x" * size
            todo = iter(range(n))
            run = f"/bench-raw/{time.monotonic_ns()}/".encode()

            async def worker() -> None:
                for i in todo:
                    await kv.Put(rpc.PutRequest(key=run + b"%d" % i, value=value), timeout=30)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(inflight)))
            return n / (time.perf_counter() - t0)
    return asyncio.run(go())
