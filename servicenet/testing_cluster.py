"""Test and benchmark support: API server processes on one etcd, sharing one config dir, and the
whole multi-machine topology (:func:`multinode`).

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
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from servicenet.client import ApiClient
from servicenet.client.kubeconfig import load as load_kubeconfig
from servicenet.cluster.up_cluster import Options, Topology
from servicenet.common.component import bounded
from servicenet.store.etcdlaunch import free_port

T = TypeVar("T")


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
                            prefix: str = "", extra_args: list[str] | None = None,
                            timeout: float = 60.0) -> list[ApiProcess]:
    """``n`` API servers sharing ``base/config``; ``etcd_servers`` is one list for all, or one per server.
    Each must be ready within ``timeout`` seconds; if one is not, every one started is stopped."""
    config = base / "config"
    config.mkdir(parents=True, exist_ok=True, mode=0o700)
    per = etcd_servers if etcd_servers and isinstance(etcd_servers[0], list) else [etcd_servers] * n
    out: list[ApiProcess] = []
    try:
        for i in range(n):
            # listed before it starts: one that never gets ready is stopped with the rest
            out.append(ApiProcess(config, free_port(), list(per[i]), prefix, list(extra_args or [])))  # type: ignore[arg-type]
            await out[-1].start(timeout)
    except BaseException:
        for p in out:
            await p.stop()
        raise
    return out


# -- the multi-machine topology (servicenet up --etcd N --apiservers M --nodes K) ---------------------


class TopologyHandle:
    """A :class:`~servicenet.cluster.up_cluster.Topology` driven from its own event-loop thread, so
    a test (sync or async, any pytest-asyncio loop scope) can share one cluster across a module:
    ``kill``/``restart`` any process by name (``etcd-2``, ``apiserver-1``, ``controller-manager-1``,
    ``scheduler-2``, ``node-3/node``, ``node-3/proxy``, ``node-3/apiserver-relay``), ``call`` any
    coroutine on its loop."""

    def __init__(self, opts: Options) -> None:
        self.topo = Topology(opts)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="topology", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 300.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        self.call(self.topo.procs.kill(name, sig))

    def restart(self, name: str) -> None:
        self.call(self.topo.procs.restart(name))

    def pid(self, name: str) -> int | None:
        return self.topo.procs.get(name).pid

    @property
    def kubeconfig(self) -> Path:
        return self.topo.kubeconfig

    def kubectl(self, *args: str, timeout: float = 60.0, apiserver: str | None = None, check: bool = True,
                input_: str | None = None) -> subprocess.CompletedProcess[str]:
        kc = self.topo.kubeconfig_for(apiserver) if apiserver else self.topo.kubeconfig
        r = subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], capture_output=True, text=True,
                           timeout=timeout, input=input_)
        if check and r.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({r.returncode}): {r.stderr or r.stdout}")
        return r

    def in_netns(self, netns: str, *argv: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside one of the cluster's namespaces (a node, the client, an API server...)."""
        return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=timeout)

    def close(self) -> None:
        try:
            self.call(self.topo.stop(), timeout=120)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@contextlib.contextmanager
def multinode(data_dir: Path, *, etcd: int = 3, apiservers: int = 2, nodes: int = 3,
              timeout: float = 240.0, **options: Any) -> Iterator[TopologyHandle]:
    """A whole cluster of netns machines (root); torn down (every process and namespace) on exit.
    ``options`` are :class:`~servicenet.cluster.up_cluster.Options` fields (e.g. shorter
    ``leader_elect`` or ``endpoint_reconciler`` timings for fault tests)."""
    handle = TopologyHandle(Options(data_dir=data_dir, etcd=etcd, apiservers=apiservers, nodes=nodes, **options))
    try:
        handle.call(handle.topo.start(timeout), timeout=timeout + 30)
        yield handle
    finally:
        handle.close()
