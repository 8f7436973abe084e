"""The narrow seams between the node agent's layers, as protocols (no implementation imports).

``runtime.PodRuntime`` owns ``pod.PodWorker``s, which own ``container.ContainerRun``s. Each lower
layer talks to the one above it only through the protocol here, so the modules import downwards
only (runtime -> pod -> container) and tests can drive a layer with a small fake.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from servicenet.api.views import Obj
from servicenet.node.envvars import EnvSources
from servicenet.node.network import PodNetwork
from servicenet.node.status import Backoff


class RuntimeSettings(Protocol):
    """The part of ``runtime.RuntimeConfig`` a pod reads."""

    data_dir: str
    cluster_dns: list[str]
    cluster_domain: str
    backoff: Backoff
    virtual_ready_delay: float
    python: str


class PodHost(Protocol):
    """What a ``PodWorker`` needs from the runtime that owns it."""

    cfg: Any  # a RuntimeConfig (see RuntimeSettings)
    network: PodNetwork
    journal: Any  # a journal.Journal: intents are recorded (fsynced) before the act
    write_status: Callable[[Obj, Obj], Awaitable[None]]
    fetch: Callable[[str, str, str], Awaitable[Obj | None]]

    def emit_event(self, pod: Obj, etype: str, reason: str, message: str) -> None: ...

    async def env_sources(self, pod: Obj, container: Obj) -> EnvSources: ...

    async def finalize(self, pod: Obj) -> None: ...

    def forget(self, worker: Any) -> None: ...


class ContainerHost(Protocol):
    """What a container supervisor needs from the ``PodWorker`` that owns it."""

    pod: Obj
    runtime: PodHost
    terminating: bool

    def pod_ip(self) -> str: ...

    def grace_seconds(self) -> float: ...

    def mark_dirty(self) -> None: ...

    def event(self, etype: str, reason: str, message: str) -> None: ...

    def container_finished(self, run: Any) -> None: ...

    async def exec_probe(self, run: Any, argv: list[str], timeout: float) -> int: ...

    def save_state(self) -> None: ...
