"""Test and benchmark support: API server processes on one etcd, sharing one config dir.

Every server is started with the same ``--data-dir`` (CA, service-account keys, encryption config and
admin token live there), its own port, and the same ``--etcd-servers``/``--etcd-prefix``. Start the
first one alone: it creates the keys; the others then reuse them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
from pathlib import Path

import aiohttp

from servicenet.client import ApiClient
from servicenet.client.kubeconfig import load as load_kubeconfig
from servicenet.common.component import bounded
from servicenet.store.etcdlaunch import free_port


@dataclasses.dataclass
class ApiProcess:
    data_dir: Path
    port: int
    etcd_servers: list[str]
    etcd_prefix: str = ""
    extra_args: list[str] = dataclasses.field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def client(self) -> ApiClient:
        """A client of this server, with the shared admin credentials."""
        cfg = load_kubeconfig(self.data_dir / "kubeconfig", None)
        return ApiClient(self.url, config=dataclasses.replace(cfg, server=self.url))

    async def start(self, timeout: float = 60.0) -> ApiProcess:
        self.log_path = self.data_dir.parent / f"apiserver-{self.port}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "servicenet.cli", "apiserver", "--data-dir", str(self.data_dir),
            "--api-listen", f"127.0.0.1:{self.port}", "--storage", "etcd",
            "--etcd-servers", ",".join(self.etcd_servers), "--etcd-prefix", self.etcd_prefix, *self.extra_args,
            stdout=log, stderr=log, env=env, start_new_session=True)
        log.close()
        await self.wait_ready(timeout)
        return self

    async def readyz(self) -> int:
        """HTTP status of /readyz (0 if the server does not answer within 2 s)."""
        try:
            async with aiohttp.ClientSession() as s, s.get(self.url + "/readyz", ssl=False,
                                                         timeout=aiohttp.ClientTimeout(total=2)) as r:
                return r.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            return 0

    async def wait_ready(self, timeout: float = 60.0, want: bool = True) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.proc is not None and self.proc.returncode is not None:
                raise RuntimeError(f"apiserver on {self.port} exited: see {self.log_path}")
            ok = (await self.readyz()) == 200 and (self.data_dir / "kubeconfig").exists()
            if ok == want:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"apiserver on {self.port}: ready={not want} after {timeout}s")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await bounded(self.proc.wait(), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()


async def start_api_servers(base: Path, n: int, etcd_servers: list[str] | list[list[str]],
                            prefix: str = "", extra_args: list[str] | None = None) -> list[ApiProcess]:
    """``n`` API servers sharing ``base/config``; ``etcd_servers`` is one list for all, or one per server."""
    config = base / "config"
    config.mkdir(parents=True, exist_ok=True, mode=0o700)
    per = etcd_servers if etcd_servers and isinstance(etcd_servers[0], list) else [etcd_servers] * n
    out: list[ApiProcess] = []
    try:
        for i in range(n):
            out.append(await ApiProcess(config, free_port(), list(per[i]), prefix,
                                         list(extra_args or [])).start())  # type: ignore[arg-type]
    except BaseException:
        for p in out:
            await p.stop()
        raise
    return out
