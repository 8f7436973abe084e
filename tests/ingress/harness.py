"""An API server plus the ingress controller (HAProxy) on free loopback ports, and curl helpers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servicenet.client import wait_for
from servicenet.ingress.controller import IngressConfig, IngressController
from servicenet.testing import RunningApi, running_apiserver

from .objects import CLASS

NET = "networking.k8s.io/v1"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


async def run(*argv: str, timeout: float = 60.0, input: bytes | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT,
                                                stdin=asyncio.subprocess.PIPE if input is not None else None)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(input), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


async def until(fn: Any, timeout: float = 20.0, interval: float = 0.02, what: str = "") -> Any:
    try:
        return await wait_for(fn, timeout, interval)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or fn}") from None


@dataclass
class Stack:
    api: RunningApi
    ctl: IngressController
    http_port: int
    https_port: int
    host: str = "127.0.0.1"
    netns: str | None = None

    @property
    def client(self) -> Any:
        return self.api.client

    def _ns(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else argv

    async def curl(self, *args: str, timeout: float = 30.0) -> tuple[int, str]:
        return await run(*self._ns(["curl", "-sS", "--max-time", str(int(timeout)), *args]), timeout=timeout + 5)

    async def get(self, host: str, path: str, *extra: str) -> tuple[int, dict[str, Any] | str]:
        """HTTP GET through the ingress: (status, echo JSON or body text)."""
        rc, out = await self.curl("-w", "\n%{http_code}", "-H", f"Host: {host}", *extra,
                                  f"http://{self.host}:{self.http_port}{path}")
        assert rc == 0, out
        body, _, code = out.rpartition("\n")
        with contextlib.suppress(ValueError):
            return int(code), json.loads(body)
        return int(code), body

    async def name(self, host: str, path: str) -> str | None:
        code, body = await self.get(host, path)
        if code == 404:
            return None
        assert code == 200 and isinstance(body, dict), (code, body)
        return str(body["name"])

    async def applied(self, *objs: dict[str, Any]) -> None:
        """Wait until the controller has seen ``objs`` (as written: resourceVersion) and applied them."""
        infs = {"Ingress": self.ctl.ingresses, "Service": self.ctl.services, "Secret": self.ctl.secrets,
                "EndpointSlice": self.ctl.slices, "IngressClass": self.ctl.classes}
        for o in objs:
            md = o["metadata"]
            inf = infs[o["kind"]]

            def seen(inf: Any = inf, md: Any = md) -> bool:
                cur = inf.get(md.get("namespace"), md["name"])
                return cur is not None and int(cur["metadata"]["resourceVersion"]) >= int(md["resourceVersion"])
            await until(seen, 20, 0.002, what=f"{o['kind']} {md['name']} seen")
        await self.ctl.wait_applied(30)

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural = {"Ingress": "ingresses", "Service": "services", "Secret": "secrets",
                  "EndpointSlice": "endpointslices", "IngressClass": "ingressclasses"}[kind]
        out = await self.client.create(api_version, plural, obj["metadata"].get("namespace"), obj)
        out.setdefault("kind", kind)
        return out

    async def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace (no resourceVersion precondition)."""
        api_version, kind = obj["apiVersion"], obj["kind"]
        plural = {"Ingress": "ingresses", "Service": "services", "Secret": "secrets",
                  "EndpointSlice": "endpointslices", "IngressClass": "ingressclasses"}[kind]
        ns, name = obj["metadata"].get("namespace"), obj["metadata"]["name"]
        try:
            cur = await self.client.get(api_version, plural, ns, name)
        except Exception:
            return await self.create(obj)
        body = json.loads(json.dumps(obj))
        body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
        out = await self.client.update(api_version, plural, ns, name, body)
        out.setdefault("kind", kind)
        return out


@contextlib.asynccontextmanager
async def ingress_stack(tmp: Path, **cfg: Any) -> AsyncIterator[Stack]:
    async with running_apiserver(tmp / "api") as api:
        await api.client.create(NET, "ingressclasses", None, CLASS)
        http, https = free_port(), free_port()
        client = api.new_client()
        ctl = IngressController(client, IngressConfig(state_dir=tmp / "ingress", http_port=http, https_port=https,
                                                      **cfg))
        await ctl.start()
        try:
            yield Stack(api, ctl, http, https)
        finally:
            await ctl.stop()
            await client.close()


async def servicenet_up(data_dir: Path, http: int, https: int) -> asyncio.subprocess.Process:
    """``servicenet up`` in loopback mode as a subprocess of this worktree's code (stdout piped for
    :func:`up_banner`)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "servicenet.cli", "up", "--network", "loopback", "--data-dir", str(data_dir),
        "--api-listen", "127.0.0.1:0", "--dns-listen", "127.0.0.1:0", "--ingress-http-port", str(http),
        "--ingress-https-port", str(https), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env=env)


async def up_banner(proc: asyncio.subprocess.Process) -> str:
    """What ``servicenet up`` printed until it serves (its "Point kubectl at it" line)."""
    assert proc.stdout is not None
    banner = ""
    while "Point kubectl at it" not in banner:
        line = await asyncio.wait_for(proc.stdout.readline(), 90)
        assert line, "servicenet up exited early"
        banner += line.decode()
    return banner
