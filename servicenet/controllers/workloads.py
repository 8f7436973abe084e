"""The ReplicationController, DaemonSet, Job and CronJob controllers, run by the controller manager.

Wiring only: informers, indexes, event handlers and the sync of each key; the decisions are in
``rc_core``, ``daemonset_core``, ``job_core`` and ``cronjob_core``. The manager owns the queues,
the stale-cache tracker and the performing of actions (see :mod:`.manager`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from servicenet.api.wire import meta as meta_of
from servicenet.client import Informer

from . import cronjob_core, daemonset_core, job_core, rc_core
from .actions import Obj, controller_of, name_of, ns_of, uid_of


class ControllerManager(Protocol):
    """What these controllers use of :class:`servicenet.controllers.manager.ControllerManager`
    (a protocol, so that the manager may import this module without a circle)."""

    pods: Informer
    nodes: Informer

    def _add(self, controller: str, key: str) -> None: ...
    def _stale(self, controller: str, key: str) -> bool: ...
    async def _execute(self, *args: Any, **kwargs: Any) -> Any: ...

CONTROLLERS = ("replicationcontroller", "daemonset", "job", "cronjob")  # pods wake them via wakeup._POD_OWNERS


def _key(o: Obj) -> str:
    ns = ns_of(o)
    return f"{ns}/{name_of(o)}" if ns else name_of(o)


def _split(key: str) -> tuple[str, str]:
    ns, _, name = key.rpartition("/")
    return ns, name


def _owner_index(o: Obj) -> list[str]:
    ref = controller_of(o)
    return [ref["uid"]] if ref and ref.get("uid") else []


class WorkloadControllers:
    def __init__(self, cm: ControllerManager) -> None:
        self.cm = cm
        f = cm.factory
        self.rcs = f.informer("v1", "replicationcontrollers")
        self.daemonsets = f.informer("apps/v1", "daemonsets")
        self.revisions = f.informer("apps/v1", "controllerrevisions")
        self.jobs = f.informer("batch/v1", "jobs")
        self.cronjobs = f.informer("batch/v1", "cronjobs")
        self.revisions.add_index("owner", _owner_index)
        self.jobs.add_index("owner", _owner_index)

    def setup_handlers(self) -> None:
        add = self.cm._add
        self.rcs.add_handler(lambda e, o, old: add("replicationcontroller", _key(o)))
        self.daemonsets.add_handler(lambda e, o, old: add("daemonset", _key(o)))
        self.cronjobs.add_handler(lambda e, o, old: add("cronjob", _key(o)))
        self.jobs.add_handler(self._on_job)
        self.revisions.add_handler(self._on_owned("DaemonSet", "daemonset"))
        self.cm.nodes.add_handler(self._on_node)

    def _on_job(self, etype: str, job: Obj, old: Obj | None) -> None:
        self.cm._add("job", _key(job))
        ref = controller_of(job)
        if ref is not None and ref.get("kind") == "CronJob":
            self.cm._add("cronjob", f"{ns_of(job)}/{ref['name']}")

    def _on_owned(self, kind: str, controller: str) -> Callable[[str, Obj, Obj | None], None]:
        def handler(etype: str, o: Obj, old: Obj | None) -> None:
            ref = controller_of(o)
            if ref is not None and ref.get("kind") == kind:
                self.cm._add(controller, f"{ns_of(o)}/{ref['name']}")
        return handler

    def _on_node(self, etype: str, node: Obj, old: Obj | None) -> None:
        if old is not None and etype == "MODIFIED" and meta_of(node).get("labels") == (
                meta_of(old)).get("labels") and (node.get("spec") or {}).get("taints") == (
                old.get("spec") or {}).get("taints"):
            return
        for ds in self.daemonsets.list():
            self.cm._add("daemonset", _key(ds))

    def syncs(self) -> dict[str, Callable[[str], Awaitable[None]]]:
        return {"replicationcontroller": self._sync_rc, "daemonset": self._sync_daemonset,
                "job": self._sync_job, "cronjob": self._sync_cronjob}

    # -- syncs ----------------------------------------------------------------------------------
    async def _sync_rc(self, key: str) -> None:
        if self.cm._stale("replicationcontroller", key):
            return
        rc = self.rcs.get(*_split(key))
        if rc is None:
            return
        res = rc_core.reconcile(rc, self.cm.pods.by_index("owner", uid_of(rc)), datetime.now(UTC))
        await self.cm._execute("replicationcontroller", key, rc, res, self.cm.pods)

    async def _sync_daemonset(self, key: str) -> None:
        if self.cm._stale("daemonset", key):
            return
        ds = self.daemonsets.get(*_split(key))
        if ds is None:
            return
        res = daemonset_core.reconcile(ds, self.cm.pods.by_index("owner", uid_of(ds)), self.cm.nodes.list(),
                                       self.revisions.by_index("owner", uid_of(ds)), datetime.now(UTC))
        await self.cm._execute("daemonset", key, ds, res, self.cm.pods)

    async def _sync_job(self, key: str) -> None:
        if self.cm._stale("job", key):
            return
        job = self.jobs.get(*_split(key))
        if job is None:
            return
        res = job_core.reconcile(job, self.cm.pods.by_index("owner", uid_of(job)), datetime.now(UTC))
        await self.cm._execute("job", key, job, res, self.cm.pods)

    async def _sync_cronjob(self, key: str) -> None:
        if self.cm._stale("cronjob", key):
            return
        cj = self.cronjobs.get(*_split(key))
        if cj is None:
            return
        res = cronjob_core.reconcile(cj, self.jobs.by_index("owner", uid_of(cj)), datetime.now(UTC))
        await self.cm._execute("cronjob", key, cj, res, self.jobs)
