"""Helpers for node agent tests: pod builders, polling, root checks."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import pytest

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
