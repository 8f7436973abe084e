"""Test helpers: an in-process API server with a client, and kubectl runner.

Used by every component's end-to-end tests::

    async with running_apiserver(tmp_path) as api:
        await api.client.create("v1", "services", "default", {...})
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servicenet.api import wellknown as wk
from servicenet.apiserver.identities import node_serving_issuer
from servicenet.apiserver.server import ApiServer, ApiServerConfig
from servicenet.client import ApiClient
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
                            ) -> AsyncIterator[RunningApi]:
    cfg = ApiServerConfig(data_dir=Path(data_dir), host="127.0.0.1", port=0, storage=storage,
                          service_cidrs=service_cidrs or list(wk.DEFAULT_SERVICE_CIDRS),
                          etcd_servers=list(etcd_servers or []), etcd_prefix=etcd_prefix)
    server = ApiServer(cfg)
    await server.start()
    client = ApiClient.from_kubeconfig(server.kubeconfig_path)
    try:
        yield RunningApi(server, client)
    finally:
        await client.close()
        await server.stop()
