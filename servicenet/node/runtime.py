"""The pod runtime: pod workers keyed by uid, adoption after a restart, shutdown.

It knows nothing about the API server: the agent injects callbacks to write status, finalize
(delete) pods, fetch configMaps/secrets/services and record events.  Tests drive it with pod
dicts directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from servicenet.api.views import Obj
from servicenet.common import log
from servicenet.node import journal as jn
from servicenet.node import reaper
from servicenet.node.envvars import EnvSources
from servicenet.node.network import PodNetwork, PodSandbox
from servicenet.node.pod import PodWorker
from servicenet.node.podspec import HostResolv
from servicenet.node.process import ContainerProcess
from servicenet.node.status import Backoff

__all__ = ["PodRuntime", "RuntimeConfig"]

_log = log.get("node.runtime")


@dataclass(frozen=True)
class RuntimeConfig:
    node_name: str
    data_dir: str
    cluster_dns: list[str] = field(default_factory=list)
    cluster_domain: str = "cluster.local"
    host_resolv: HostResolv = HostResolv()
    backoff: Backoff = Backoff()
    virtual_ready_delay: float = 0.0
    node_allocatable: dict[str, str] = field(default_factory=dict)
    python: str = sys.executable
    default_user: int | None = None  # netns mode: uid of containers without runAsUser (None: agent's own)


async def _noop_status(pod: Obj, status: Obj) -> None:
    pod["status"] = status


async def _noop_finalize(pod: Obj) -> None:
    return None


async def _no_fetch(kind: str, namespace: str, name: str) -> Obj | None:
    return None


class PodRuntime:
    def __init__(self, cfg: RuntimeConfig, network: PodNetwork, *,
                 write_status: Callable[[Obj, Obj], Awaitable[None]] = _noop_status,
                 finalize: Callable[[Obj], Awaitable[None]] = _noop_finalize,
                 fetch: Callable[[str, str, str], Awaitable[Obj | None]] = _no_fetch,
                 services: Callable[[], list[Obj]] = list,
                 on_event: Callable[[Obj, str, str, str], None] | None = None,
                 request_token: Callable[..., Awaitable[tuple[str, float]]] | None = None) -> None:
        self.cfg = cfg
        self.request_token = request_token  # (ns, sa, pod, audiences, seconds) -> (token, expiry)
        self.network = network
        self.write_status = write_status
        self._finalize = finalize
        self.fetch = fetch
        self._services = services
        self._on_event = on_event
        self.workers: dict[str, PodWorker] = {}     # uid -> worker
        self._saved: dict[str, dict[str, Any]] = {}  # uid -> state loaded from disk, not yet adopted
        os.makedirs(os.path.join(cfg.data_dir, "pods"), exist_ok=True)
        self.journal = jn.Journal(os.path.join(cfg.data_dir, "journal.jsonl"))
        network.intent = self.journal.record

    # -- wiring ---------------------------------------------------------------------------------------
    def emit_event(self, pod: Obj, etype: str, reason: str, message: str) -> None:
        if self._on_event is not None:
            with contextlib.suppress(Exception):
                self._on_event(pod, etype, reason, message)

    async def env_sources(self, pod: Obj, container: Obj) -> EnvSources:
        ns = pod["metadata"].get("namespace") or "default"
        cms: dict[str, Obj] = {}
        secrets: dict[str, Obj] = {}
        refs: list[tuple[str, str]] = []
        for src in container.get("envFrom") or []:
            if "configMapRef" in src:
                refs.append(("configmaps", src["configMapRef"].get("name", "")))
            if "secretRef" in src:
                refs.append(("secrets", src["secretRef"].get("name", "")))
        for e in container.get("env") or []:
            vf = e.get("valueFrom") or {}
            if "configMapKeyRef" in vf:
                refs.append(("configmaps", vf["configMapKeyRef"].get("name", "")))
            if "secretKeyRef" in vf:
                refs.append(("secrets", vf["secretKeyRef"].get("name", "")))
        for kind, name in dict.fromkeys(refs):
            obj = await self.fetch(kind, ns, name)
            if obj is not None:
                (cms if kind == "configmaps" else secrets)[name] = obj
        return EnvSources(services=tuple(self._services()), config_maps=cms, secrets=secrets,
                          node_allocatable=self.cfg.node_allocatable)

    async def finalize(self, pod: Obj) -> None:
        await self._finalize(pod)

    def forget(self, worker: PodWorker) -> None:
        if self.workers.get(worker.uid) is worker:
            del self.workers[worker.uid]

    def by_name(self, namespace: str, name: str) -> PodWorker | None:
        for w in self.workers.values():
            if w.key == f"{namespace}/{name}":
                return w
        return None

    # -- pods -----------------------------------------------------------------------------------------
    def sync_pod(self, pod: Obj) -> None:
        """A pod bound to this node was added or changed (call on the event loop; does not block)."""
        meta = pod["metadata"]
        uid = meta.get("uid") or f"{meta.get('namespace')}/{meta['name']}"
        worker = self.workers.get(uid)
        if worker is not None:
            worker.update(pod)
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed") and uid not in self._saved:
            if meta.get("deletionTimestamp"):
                asyncio.create_task(self._finalize(pod))
            return
        saved = self._saved.pop(uid, None)
        if saved is not None:
            sb = PodSandbox(**saved["sandbox"])
            self.network.adopt(sb)
            worker = PodWorker(self, pod, sandbox=sb, adopted=saved, start_time=saved.get("start_time"))
            worker._created_paths = list(saved.get("created_paths") or [])
        else:
            worker = PodWorker(self, pod)
        self.workers[uid] = worker
        worker.start()
        if meta.get("deletionTimestamp"):
            worker.update(pod)

    def remove_pod(self, pod: Obj) -> None:
        """The pod is gone from the API: stop it at once, nothing left to finalize."""
        uid = pod["metadata"].get("uid") or f"{pod['metadata'].get('namespace')}/{pod['metadata']['name']}"
        worker = self.workers.get(uid)
        if worker is not None and not worker.terminating:
            asyncio.create_task(worker.terminate(finalize=False, grace=0.0))

    # -- restart adoption -----------------------------------------------------------------------------
    def load_state(self) -> list[str]:
        """Read pod state left by a previous agent; returns the uids found."""
        base = os.path.join(self.cfg.data_dir, "pods")
        for entry in sorted(os.listdir(base)):
            path = os.path.join(base, entry, "state.json")
            try:
                with open(path) as f:
                    st = json.load(f)
            except (OSError, ValueError):
                shutil.rmtree(os.path.join(base, entry), ignore_errors=True)
                continue
            uid = st["pod"]["metadata"].get("uid") or entry
            self._saved[uid] = st
            sb = PodSandbox(**st["sandbox"])
            self.network.adopt(sb)
        return list(self._saved)

    async def reap_leftovers(self) -> dict[str, int]:
        """After :meth:`load_state`, before anything starts: remove every process, namespace and
        veth the journal (or the namespace prefix) names that no saved pod owns; a saved pod keeps
        only the processes its state records (and their process groups)."""
        net = self.network
        prefix = getattr(net, "prefix", None) if net.mode == "netns" else None
        previous = reaper.record_agent(os.path.join(self.cfg.data_dir, "agent.proc"))
        if prefix:  # a dead agent's `ip` helpers may still be creating something: let them end first
            await reaper.finish_helpers(prefix, previous)
        trails = self.journal.read()
        keep = set(self._saved)
        kept_ns = {st["sandbox"].get("netns") for st in self._saved.values() if st["sandbox"].get("netns")}
        kept_veths = frozenset(f"{prefix}v{st['sandbox'].get('index', 0)}" for st in self._saved.values())
        plan = jn.plan(trails, keep, reaper.list_netns(), prefix, net.node_netns, kept_ns)
        counts = await reaper.reap(plan, net.node_netns, prefix, kept_veths)
        # a kept pod: processes started after its state was saved (their pid never reached it)
        strays: list[tuple[int, int | None]] = []
        for uid in keep & set(trails):
            saved = {(c["pid"], c.get("start_ticks")) for c in (self._saved[uid].get("containers") or {}).values()}
            strays += [(pid, t) for (_, pid), t in trails[uid].procs.items() if (pid, t) not in saved]
            ns = self._saved[uid]["sandbox"].get("netns")
            if ns:
                strays += reaper.find_processes(netns=[ns], exclude_groups=[p for p, _ in saved])
        counts["processes"] += await reaper.kill_and_wait(strays)
        self.journal.rewrite(jn.compacted(trails, keep))
        return counts

    async def cleanup_orphans(self) -> int:
        """Kill and tear down saved pods nobody claimed, and namespaces no pod owns."""
        n = 0
        for uid, st in list(self._saved.items()):
            del self._saved[uid]
            for c in (st.get("containers") or {}).values():
                proc = ContainerProcess(pid=c["pid"], start_ticks=c.get("start_ticks"))
                if proc.alive():
                    proc.kill(9)
            sb = PodSandbox(**st["sandbox"])
            for _ in range(50):
                if not any(ContainerProcess(pid=c["pid"], start_ticks=c.get("start_ticks")).alive()
                           for c in (st.get("containers") or {}).values()):
                    break
                await asyncio.sleep(0.02)
            if sb.netns:
                await reaper.kill_and_wait(reaper.find_processes(netns=[sb.netns]))
            await self.network.remove_pod(sb)
            self.journal.record({"op": "gone", "uid": uid})
            for p in reversed(st.get("created_paths") or []):
                with contextlib.suppress(OSError):
                    os.rmdir(p)
            m = st["pod"]["metadata"]
            shutil.rmtree(os.path.join(self.cfg.data_dir, "pods", f"{m.get('namespace')}_{m.get('name')}_{uid}"),
                          ignore_errors=True)
            n += 1
        owned = {w.sandbox.netns for w in self.workers.values() if w.sandbox is not None}
        node_ns = self.network.node_netns
        for name in self.network.owned_namespaces():
            if name != node_ns and name not in owned:
                await reaper.kill_and_wait(reaper.find_processes(netns=[name]))
                await self.network.remove_pod(PodSandbox(key="", ip="", netns=name))
                n += 1
        return n

    async def shutdown(self) -> None:
        """Kill every pod now (no finalization) and remove their sandboxes."""
        workers = list(self.workers.values())
        await asyncio.gather(*(w.terminate(finalize=False, grace=0.0) for w in workers), return_exceptions=True)
        await self.cleanup_orphans()
        self.journal.close()
