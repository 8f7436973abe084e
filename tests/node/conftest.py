"""Fixtures for node agent tests."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from servicenet.node.agent import NodeAgent
from servicenet.testing import RunningApi, worker_share

AgentFactory = Callable[..., Awaitable[NodeAgent]]


@pytest.fixture
def loop_cidr() -> str:
    """A random /24 inside 127.64.0.0/16, from this xdist worker's share (pods bind fixed ports)."""
    return f"127.64.{worker_share(100, 254)}.0/24"


@pytest.fixture
async def node_agent(api: RunningApi, tmp_path: Path, loop_cidr: str) -> AsyncIterator[AgentFactory]:
    """Starts a node agent on ``api`` (data under ``tmp_path/node``, the cluster CA's serving
    certificate; loopback mode on ``loop_cidr`` unless told otherwise, netns mode with a fresh
    network id); every agent started is stopped when the test ends."""
    started: list[NodeAgent] = []

    async def start(name: str, *, client: Any = None, network: str = "loopback", pod_cidr: str | None = None,
                    **kw: Any) -> NodeAgent:
        if network == "netns":
            kw.setdefault("net_id", secrets.token_hex(2))
        agent = NodeAgent(client or api.client, node_name=name, network=network, pod_cidr=pod_cidr or loop_cidr,
                          data_dir=str(tmp_path / "node"), backoff_base=0.2, serving_cert=api.node_cert(name), **kw)
        await agent.start()
        started.append(agent)
        return agent

    yield start
    for agent in reversed(started):
        await agent.stop()
