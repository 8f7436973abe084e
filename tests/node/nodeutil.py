"""Helpers for node agent tests: pod builders, polling, root checks, a pod runtime in netns mode."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from servicenet.common.netns import list_netns
from servicenet.node.network import NetnsNetwork
from servicenet.node.runtime import PodRuntime, RuntimeConfig

Obj = dict[str, Any]


def make_pod(name: str, containers: list[Obj], ns: str = "default", **spec: Any) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()), "labels": {"app": name}},
        "spec": {"containers": containers, "nodeName": "n1", **spec},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True",
                                                      "lastTransitionTime": "2024-01-01T00:00:00Z"}]},
    }


def cond(pod: Obj, ctype: str) -> str | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return c["status"]
    return None


async def until(pred: Any, timeout: float = 10.0, interval: float = 0.02) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        res = pred()
        if res:
            return res
        if loop.time() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(interval)


def require_root() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("this test needs root (network namespaces)")
        pytest.skip("needs root")


@contextlib.asynccontextmanager
async def netns_runtime(data_dir: Path | str, pod_cidr: str, **config: Any) -> AsyncIterator[PodRuntime]:
    """A node's pod runtime in netns mode (root; a fresh network id) with data in ``data_dir``; on
    exit it is shut down and must have removed every namespace of its network."""
    require_root()
    net = NetnsNetwork(pod_cidr, secrets.token_hex(2))
    await net.setup()
    rt = PodRuntime(RuntimeConfig(node_name="n1", data_dir=str(data_dir), **config), net)
    try:
        yield rt
    finally:
        await rt.shutdown()
        await net.teardown()
        assert [n for n in list_netns() if n.startswith(net.prefix)] == []
