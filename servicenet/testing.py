"""Test helpers: an in-process API server with a client, and kubectl runner.

Used by every component's end-to-end tests::

    async with running_apiserver(tmp_path) as api:
        await api.client.create("v1", "services", "default", {...})
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servicenet.api import wellknown as wk
from servicenet.apiserver.identities import node_serving_issuer
from servicenet.apiserver.server import ApiServer, ApiServerConfig
from servicenet.client import ApiClient
from servicenet.common import tls
from servicenet.common.component import bounded


@dataclass
class RunningApi:
    server: ApiServer
    client: ApiClient

    @property
    def kubeconfig(self) -> Path:
        return self.server.kubeconfig_path

    @property
    def url(self) -> str:
        return self.server.url

    def node_cert(self, node_name: str) -> Any:
        """The serving-certificate issuer a node agent gets under ``servicenet up`` (cluster CA)."""
        return node_serving_issuer(self.server.config.data_dir / "pki", node_name)

    def new_client(self) -> ApiClient:
        return ApiClient.from_kubeconfig(self.kubeconfig)

    async def kubectl(self, *args: str, input: bytes | None = None, check: bool = True,
                      timeout: float = 60.0) -> tuple[int, str, str]:
        return await kubectl(self.kubeconfig, *args, input=input, check=check, timeout=timeout)


def kubectl_path() -> str:
    here = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "kubectl"
    found = shutil.which("kubectl")
    if found:
        return found
    if here.exists():
        return str(here)
    raise RuntimeError("kubectl is not installed: run `make deps` (scripts/install-deps.sh)")


async def kubectl(kubeconfig: Path, *args: str, input: bytes | None = None, check: bool = True,
                  timeout: float = 60.0) -> tuple[int, str, str]:
    env = dict(os.environ)
    env["KUBECONFIG"] = str(kubeconfig)
    env["KUBECACHEDIR"] = str(kubeconfig.parent / "kubectl-cache")
    proc = await asyncio.create_subprocess_exec(
        kubectl_path(), *args, stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        out, err = await bounded(proc.communicate(input), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    rc = proc.returncode or 0
    if check and rc != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({rc}): {err.decode()}{out.decode()}")
    return rc, out.decode(), err.decode()


@contextlib.asynccontextmanager
async def running_apiserver(data_dir: Path, *, storage: str = "memory",
                            service_cidrs: list[str] | None = None,
                            etcd_servers: list[str] | None = None, etcd_prefix: str = "",
                            event_ttl: float = 3600.0) -> AsyncIterator[RunningApi]:
    cfg = ApiServerConfig(data_dir=Path(data_dir), host="127.0.0.1", port=0, storage=storage,
                          service_cidrs=service_cidrs or list(wk.DEFAULT_SERVICE_CIDRS),
                          etcd_servers=list(etcd_servers or []), etcd_prefix=etcd_prefix, event_ttl=event_ttl)
    server = ApiServer(cfg)
    await server.start()
    client = ApiClient.from_kubeconfig(server.kubeconfig_path)
    try:
        yield RunningApi(server, client)
    finally:
        await client.close()
        await server.stop()


def worker_share(lo: int, hi: int) -> int:
    """A random number in ``lo..hi`` drawn from this pytest-xdist worker's own slice of the range, so
    that tests running at once in parallel workers never draw the same one (e.g. the third octet of a
    loopback pod /24 whose pods bind fixed ports). Outside xdist the whole range is used."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    width = (hi - lo + 1) // count
    if width < 1 or index >= count:
        raise ValueError(f"cannot split {lo}..{hi} among {count} workers")
    start = lo + index * width
    return random.randint(start, start + width - 1)


def tls_files(d: Path, host: str = "foo.com") -> tuple[Path, Path]:
    """A self-signed serving certificate for ``host`` and its key, written as ``d/tls.crt`` and
    ``d/tls.key`` (what ``kubectl create secret tls`` reads)."""
    cert, key = tls.self_signed([host], cn=host)
    crt, pem = d / "tls.crt", d / "tls.key"
    crt.write_bytes(cert)
    pem.write_bytes(key)
    return crt, pem


def up_argv(data_dir: Path, *args: str, api_listen: str = "127.0.0.1:0") -> list[str]:
    """The command line of ``servicenet up`` on ``data_dir`` with the API and DNS on free loopback
    ports (``args``: the rest, e.g. ``--network netns``)."""
    return [sys.executable, "-m", "servicenet.cli", "up", "--data-dir", str(data_dir), "--api-listen", api_listen,
            "--dns-listen", "127.0.0.1:0", *args]


async def read_banner(proc: asyncio.subprocess.Process, timeout: float = 90.0) -> str:
    """What ``servicenet up`` prints on stdout up to its kubectl hint, i.e. once it is up."""
    assert proc.stdout is not None, "start servicenet up with stdout=PIPE"
    banner = ""
    async with asyncio.timeout(timeout):
        while "Point kubectl at it" not in banner:
            line = await proc.stdout.readline()
            assert line, f"servicenet up exited early:\n{banner}"
            banner += line.decode()
    return banner
