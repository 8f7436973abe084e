"""The controller manager: runs the pure controller cores on shared informers and work queues.

Every controller is a :class:`~servicenet.controllers.workqueue.WorkQueue` of object keys
fed by informer handlers and drained by a few workers that read the informer caches, call
the core and perform the returned actions. Conflicts and errors are retried with per-key
exponential backoff. Writes not yet visible in the caches (see :class:`~servicenet.controllers.tracker.WriteTracker`) make a
sync wait instead of acting on stale data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime

import prometheus_client

from servicenet.api import wellknown as wk
from servicenet.api.selectors import equality_selector_matches
from servicenet.client import (
    ApiClient,
    ApiError,
    Informer,
    InformerFactory,
    object_path,
    strip_managed_fields,
)
from servicenet.client import leaderelection as le
from servicenet.common import gcfreeze, log
from servicenet.common.component import cancel_all
from servicenet.common.health import HealthServer
from servicenet.common.runner import run_until_signal

from . import (
    deployment_core,
    echoes,
    endpoints_core,
    endpointslice_core,
    mirroring_core,
    nodelifecycle_core,
    replicaset_core,
    scheduler_affinity,
    scheduler_core,
    statefulset_core,
    wakeup,
    workloads,
)
from .actions import (
    Action,
    Obj,
    Result,
    controller_of,
    fmt_time_nano,
    labels_of,
    name_of,
    ns_of,
    rv_int,
    uid_of,
)
from .events import EventRecorder
from .tracker import NodeMap, WriteTracker
from .workqueue import WorkQueue

_log = log.get("controller-manager")

ALL_CONTROLLERS = (
    "endpointslice",
    "endpoints",
    "mirroring",
    "replicaset",
    "deployment",
    "statefulset",
    "scheduler",
    "nodelifecycle",
    *workloads.CONTROLLERS,
)
STALE_RETRY = 0.05
ENDPOINTS_AFTER = 0.5  # seconds an Endpoints sync waits for the same Service's EndpointSlice sync


_key = wakeup.key_of


def _split(key: str) -> tuple[str, str]:
    ns, _, name = key.rpartition("/")
    return ns, name


class ControllerManager:
    name = "controller-manager"

    def __init__(
        self,
        client: ApiClient,
        *,
        max_endpoints_per_slice: int = 100,
        node_monitor_grace: float = 40.0,
        health_host: str = "127.0.0.1",
        health_port: int = 0,
        workers: int = 5,
        controllers: Iterable[str] = ALL_CONTROLLERS,
        factory: InformerFactory | None = None,
    ) -> None:
        self.client = client
        self.config = endpointslice_core.Config(max_endpoints_per_slice)
        self.node_monitor_grace = node_monitor_grace
        self.workers = workers
        self.enabled = set(controllers)
        unknown = self.enabled - set(ALL_CONTROLLERS)
        if unknown:
            raise ValueError(f"unknown controllers: {sorted(unknown)}")
        # as kube-controller-manager, the caches hold no managedFields (memory; nothing reads them)
        self.factory = factory or InformerFactory(client, cache_transform=strip_managed_fields)
        self._own_factory = factory is None
        self.registry = prometheus_client.CollectorRegistry()
        self.health = HealthServer(health_host, health_port, registry=self.registry)
        self.recorder = EventRecorder(client, "controller-manager")
        self._syncs = prometheus_client.Counter("servicenet_controller_syncs", "syncs", ["controller"], registry=self.registry)
        self._errors = prometheus_client.Counter("servicenet_controller_sync_errors", "failed syncs", ["controller"], registry=self.registry)
        self._writes = prometheus_client.Counter("servicenet_controller_writes", "API writes", ["controller", "verb"], registry=self.registry)
        self._dur = prometheus_client.Histogram("servicenet_controller_sync_seconds", "sync time", ["controller"], registry=self.registry)
        self.queues: dict[str, WorkQueue] = {c: WorkQueue(c) for c in ALL_CONTROLLERS if c in self.enabled}
        self._tasks: list[asyncio.Task[None]] = []
        self._trackers: dict[str, WriteTracker] = {c: WriteTracker() for c in ALL_CONTROLLERS}
        self._trigger: dict[str, dict[str, datetime]] = {"endpointslice": {}, "endpoints": {}}
        self._own_rv: dict[str, int] = {}  # slice/endpoints key -> RV we wrote (skip our own echoes)
        self._echoes = echoes.EchoHold()  # ... and those that overtake the write's response
        self._assumed: dict[str, Obj] = {}  # pod key -> the pod as bound, not yet seen so in the cache
        self._gc_policy = gcfreeze.FreezePolicy()  # a full collection over 1,000 nodes' caches: a second or more
        self._started = False
        f = self.factory
        self.services = f.informer("v1", "services")
        self.pods = f.informer("v1", "pods")
        self.nodes = f.informer("v1", "nodes")
        self.slices = f.informer("discovery.k8s.io/v1", "endpointslices")
        self.endpoints = f.informer("v1", "endpoints")
        self.rss = f.informer("apps/v1", "replicasets")
        self.deployments = f.informer("apps/v1", "deployments")
        self.statefulsets = f.informer("apps/v1", "statefulsets")
        self.node_leases = f.informer("coordination.k8s.io/v1", "leases", nodelifecycle_core.LEASE_NAMESPACE)
        self._health: dict[str, nodelifecycle_core.Health] = {}
        self.workloads = workloads.WorkloadControllers(self) if self.enabled & set(workloads.CONTROLLERS) else None
        self._setup_indexes()

    # -- wiring ---------------------------------------------------------------------------------
    def _setup_indexes(self) -> None:
        self.services.add_index("sel", lambda s: [f"{ns_of(s)}/{k}={v}" for k, v in ((s.get("spec") or {}).get("selector") or {}).items()])
        self.pods.add_index("label", lambda p: [f"{ns_of(p)}/{k}={v}" for k, v in labels_of(p).items()])
        self.pods.add_index("owner", lambda p: [r["uid"]] if (r := controller_of(p)) else [])
        self.pods.add_index("node", lambda p: [n] if (n := (p.get("spec") or {}).get("nodeName")) else [])
        self.pods.add_index("unscheduled", lambda p: ["1"] if scheduler_core.wants_scheduling(p) else [])
        self.pods.add_index("antiaffinity", lambda p: ["1"] if scheduler_affinity.has_required_anti_affinity(p) else [])
        self.slices.add_index("svc", lambda s: [f"{ns_of(s)}/{n}"] if (n := labels_of(s).get(wk.SERVICE_NAME_LABEL)) else [])
        self.rss.add_index("owner", lambda r: [o["uid"]] if (o := controller_of(r)) else [])

    def _add(self, controller: str, key: str) -> None:
        q = self.queues.get(controller)
        if q is not None:
            q.add(key)
            trig = self._trigger.get(controller)
            if trig is not None:
                trig.setdefault(key, datetime.now(UTC))

    # -- the Lookup seam of servicenet.controllers.wakeup ----------------------------------------------
    def services_for_pod(self, pod: Obj) -> set[str]:
        ns, labels = ns_of(pod), labels_of(pod)
        out: set[str] = set()
        for k, v in labels.items():
            for s in self.services.by_index("sel", f"{ns}/{k}={v}"):
                if equality_selector_matches((s.get("spec") or {}).get("selector"), labels):
                    out.add(_key(s))
        return out

    def service(self, namespace: str, name: str) -> Obj | None:
        return self.services.get(namespace, name)

    def slices_of_service(self, key: str) -> Iterable[Obj]:
        return self.slices.by_index("svc", key)

    def pods_on_node(self, node: str) -> Iterable[Obj]:
        return self.pods.by_index("node", node)

    def unscheduled_pods(self) -> Iterable[Obj]:
        return self.pods.by_index("unscheduled", "1")

    def _echo(self, prefix: str, etype: str, o: Obj) -> bool:
        """An event carrying the resourceVersion we just wrote (our own write coming back)."""
        return etype != "DELETED" and self._own_rv.get(prefix + _key(o)) == rv_int(o)

    def _handler(self, plural: str) -> Callable[[str, Obj, Obj | None], None]:
        def on_event(etype: str, obj: Obj, old: Obj | None) -> None:
            if plural == "pods" and (etype == "DELETED" or (obj.get("spec") or {}).get("nodeName")):
                self._assumed.pop(_key(obj), None)
            elif plural == "endpointslices":
                if self._echo("", etype, obj):
                    return
                self._own_rv.pop(_key(obj), None)
            elif plural == "endpoints" and self._echo("ep:", etype, obj):
                return
            for w in wakeup.wakes(plural, etype, obj, old, self):
                q = self.queues.get(w.controller)
                busy = q is not None and q.processing(w.key)
                if etype == "DELETED" or not self._echoes.hold(plural, w.controller, w.key, _key(obj), rv_int(obj), busy):
                    self._add(w.controller, w.key)
            if plural == "pods" and etype != "DELETED":
                self._pod_on_tainted_node(obj)
        return on_event

    def _pod_on_tainted_node(self, pod: Obj) -> None:
        """A pod landing on (or changing on) a node with NoExecute taints: let taint eviction look."""
        node_name = (pod.get("spec") or {}).get("nodeName")
        node = self.nodes.get("", node_name) if node_name else None
        if node is not None and any(t.get("effect") == "NoExecute" for t in (node.get("spec") or {}).get("taints") or []):
            self._add("nodelifecycle", node_name)

    def _on_node_lease(self, etype: str, obj: Obj, old: Obj | None) -> None:
        self._add("nodelifecycle", name_of(obj))

    def _setup_handlers(self) -> None:
        for plural, inf in (("services", self.services), ("pods", self.pods), ("endpointslices", self.slices),
                            ("endpoints", self.endpoints), ("nodes", self.nodes), ("replicasets", self.rss),
                            ("deployments", self.deployments), ("statefulsets", self.statefulsets)):
            inf.add_handler(self._handler(plural))
        self.node_leases.add_handler(self._on_node_lease)
        if self.workloads is not None:
            self.workloads.setup_handlers()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self.health.add_health_check("informers", lambda: (self.factory.synced, "informers not synced"))
        self.health.add_ready_check("workers", lambda: (bool(self._tasks) and all(not t.done() for t in self._tasks), "workers stopped"))
        await self.health.start()
        await self.recorder.start()
        self._setup_handlers()
        if self._own_factory:
            await self.factory.start()
        await self.factory.wait_synced()
        syncs: dict[str, Callable[[str], Awaitable[None]]] = {
            "endpointslice": self._sync_endpointslice,
            "endpoints": self._sync_endpoints,
            "mirroring": self._sync_mirroring,
            "replicaset": self._sync_replicaset,
            "deployment": self._sync_deployment,
            "statefulset": self._sync_statefulset,
            "scheduler": self._sync_scheduler,
            "nodelifecycle": self._sync_node,
            **(self.workloads.syncs() if self.workloads is not None else {}),
        }
        self._tasks.append(asyncio.create_task(gcfreeze.keep(self.factory.cache_stats, self._gc_policy, gcfreeze.CHECK_INTERVAL)))
        for name, q in self.queues.items():
            n = 1 if name == "scheduler" else self.workers
            for i in range(n):
                self._tasks.append(asyncio.create_task(self._worker(name, q, syncs[name]), name=f"{name}-{i}"))
        _log.info("started", controllers=",".join(sorted(self.queues)), health=self.health.url)

    async def stop(self) -> None:
        for q in self.queues.values():
            q.shutdown()
        await cancel_all(self._tasks)
        self._tasks.clear()
        if self._own_factory:
            await self.factory.stop()
        await self.recorder.stop()
        await self.health.stop()
        self._started = False

    def describe(self) -> dict[str, str]:
        return {"health": self.health.url, "controllers": ",".join(sorted(self.queues))}

    def idle(self) -> bool:
        """True when no queue holds or processes work (timers not counted); for tests."""
        return all(len(q) == 0 and not q._processing for q in self.queues.values())

    async def _worker(self, name: str, q: WorkQueue, sync: Callable[[str], Awaitable[None]]) -> None:
        while True:
            key = await q.get()
            t0 = time.perf_counter()
            try:
                await sync(key)
                q.forget(key)
            except asyncio.CancelledError:
                q.done(key)
                raise
            except ApiError as exc:
                self._errors.labels(name).inc()
                level = _log.debug if exc.status == 409 else _log.warning
                level("sync failed", controller=name, key=key, status=exc.status, error=exc.message)
                q.add_rate_limited(key)
            except Exception:
                self._errors.labels(name).inc()
                _log.exception("sync crashed", controller=name, key=key)
                q.add_rate_limited(key)
            finally:
                self._syncs.labels(name).inc()
                self._dur.labels(name).observe(time.perf_counter() - t0)
            if self._echoes.release(name, key, self._own_rv):
                self._add(name, key)
            q.done(key)

    # -- performing actions ---------------------------------------------------------------------
    async def _perform(self, controller: str, a: Action) -> Obj | None:
        c = self.client
        ns = a.namespace or None
        self._writes.labels(controller, a.verb).inc()
        try:
            if a.verb == "create":
                return await c.create(a.api_version, a.plural, ns, a.body or {})
            if a.verb == "update":
                return await c.update(a.api_version, a.plural, ns, a.name, a.body or {})
            if a.verb == "update_status":
                return await c.update_status(a.api_version, a.plural, ns, a.name, a.body or {})
            if a.verb in ("patch", "patch_status"):
                sub = "status" if a.verb == "patch_status" else None
                return await c.patch(a.api_version, a.plural, ns, a.name, a.body, patch_type=a.patch_type, subresource=sub)
            if a.verb == "delete":
                await c.delete(a.api_version, a.plural, ns, a.name,
                               propagation_policy=(a.body or {}).get("propagationPolicy"))
                return None
        except ApiError as exc:
            if exc.status == 404 and a.verb == "delete":
                return None
            raise
        raise ValueError(f"unknown verb {a.verb}")

    async def _execute(self, controller: str, key: str, owner: Obj, res: Result, inf: Informer | None = None) -> None:
        tracker = self._trackers[controller]
        for ev in res.events:
            self.recorder.record(ev.involved, ev.type, ev.reason, ev.message)
        for a in res.actions:
            out = await self._perform(controller, a)
            if inf is not None and a.plural == inf.plural:
                if out is not None:
                    tracker.expect(key, inf, ns_of(out), name_of(out), rv_int(out))
                    if a.plural in ("endpointslices", "endpoints"):
                        prefix = "ep:" if a.plural == "endpoints" else ""
                        self._own_rv[prefix + _key(out)] = rv_int(out)
                elif a.verb == "delete":
                    tracker.expect(key, inf, a.namespace, a.name, 0)
            if a.event is not None:
                about = out if (a.event.about == "result" and out is not None) else owner
                msg = a.event.message.format(name=name_of(out) if out else a.name)
                self.recorder.record(about, a.event.type, a.event.reason, msg)
        if res.requeue_after is not None:
            self.queues[controller].add_after(key, res.requeue_after)

    def _stale(self, controller: str, key: str) -> bool:
        if self._trackers[controller].stale(key):
            self.queues[controller].add_after(key, STALE_RETRY)
            return True
        return False

    def _selected_pods(self, svc: Obj) -> list[Obj]:
        sel = (svc.get("spec") or {}).get("selector") or {}
        if not sel:
            return []
        k, v = next(iter(sel.items()))
        return [p for p in self.pods.by_index("label", f"{ns_of(svc)}/{k}={v}") if equality_selector_matches(sel, labels_of(p))]

    def _restore_trigger(self, controller: str, key: str, trigger: str | None) -> None:
        """A failed sync keeps its trigger time for the retry."""
        if trigger:
            t = datetime.fromisoformat(trigger.replace("Z", "+00:00"))
            cur = self._trigger[controller].get(key)
            self._trigger[controller][key] = min(t, cur) if cur else t

    def _trigger_time(self, controller: str, key: str) -> str | None:
        t = self._trigger[controller].pop(key, None)
        return fmt_time_nano(t) if t else None

    # -- syncs ----------------------------------------------------------------------------------
    async def _sync_endpointslice(self, key: str) -> None:
        if self._stale("endpointslice", key):
            return
        ns, name = _split(key)
        svc = self.services.get(ns, name)
        mine = [s for s in self.slices.by_index("svc", key) if labels_of(s).get(endpointslice_core.MANAGED_BY_LABEL) == endpointslice_core.CONTROLLER_NAME]
        if svc is None:
            self._trigger["endpointslice"].pop(key, None)
            return  # the garbage collector removes slices owned by a deleted Service
        trigger = self._trigger_time("endpointslice", key)
        res = endpointslice_core.reconcile(svc, self._selected_pods(svc), NodeMap(self.nodes), mine, config=self.config, trigger_time=trigger)
        try:
            await self._execute("endpointslice", key, svc, res, self.slices)
        except Exception:
            self._restore_trigger("endpointslice", key, trigger)
            raise

    async def _sync_endpoints(self, key: str) -> None:
        await self._after_slices(key)
        if self._stale("endpoints", key):
            return
        ns, name = _split(key)
        svc = self.services.get(ns, name)
        if svc is None:
            self._trigger["endpoints"].pop(key, None)
            return
        trigger = self._trigger_time("endpoints", key)
        res = endpoints_core.reconcile(svc, self._selected_pods(svc), self.endpoints.get(ns, name), trigger_time=trigger)
        try:
            await self._execute("endpoints", key, svc, res, self.endpoints)
        except Exception:
            self._restore_trigger("endpoints", key, trigger)
            raise

    async def _after_slices(self, key: str) -> None:
        """While the EndpointSlice controller syncs the same Service, wait for it (at most
        ENDPOINTS_AFTER seconds): one pod change wakes both, and their writes would reach the same
        API server and etcd at once. Nodes (proxies, DNS) read the slices; the legacy Endpoints
        copy is written right after them instead of competing with them."""
        q = self.queues.get("endpointslice")
        if q is not None and q.processing(key):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ENDPOINTS_AFTER):
                    await q.finished(key)

    async def _sync_mirroring(self, key: str) -> None:
        if self._stale("mirroring", key):
            return
        ns, name = _split(key)
        mine = [s for s in self.slices.by_index("svc", key) if labels_of(s).get(endpointslice_core.MANAGED_BY_LABEL) == mirroring_core.CONTROLLER_NAME]
        ep = self.endpoints.get(ns, name)
        res = mirroring_core.reconcile(ep, self.services.get(ns, name), mine)
        await self._execute("mirroring", key, ep or {}, res, self.slices)

    async def _sync_replicaset(self, key: str) -> None:
        if self._stale("replicaset", key):
            return
        ns, name = _split(key)
        rs = self.rss.get(ns, name)
        if rs is None:
            return
        res = replicaset_core.reconcile(rs, self.pods.by_index("owner", uid_of(rs)), datetime.now(UTC))
        await self._execute("replicaset", key, rs, res, self.pods)

    async def _sync_deployment(self, key: str) -> None:
        if self._stale("deployment", key):
            return
        ns, name = _split(key)
        d = self.deployments.get(ns, name)
        if d is None:
            return
        res = deployment_core.reconcile(d, self.rss.by_index("owner", uid_of(d)), datetime.now(UTC))
        await self._execute("deployment", key, d, res, self.rss)

    async def _sync_statefulset(self, key: str) -> None:
        if self._stale("statefulset", key):
            return
        ns, name = _split(key)
        sts = self.statefulsets.get(ns, name)
        if sts is None:
            return
        res = statefulset_core.reconcile(sts, self.pods.by_index("owner", uid_of(sts)), datetime.now(UTC))
        try:
            await self._execute("statefulset", key, sts, res, self.pods)
        except ApiError as exc:
            if exc.status != 409 or exc.reason != "AlreadyExists":
                raise
            self.queues["statefulset"].add_after(key, STALE_RETRY)

    async def _sync_scheduler(self, key: str) -> None:
        ns, name = _split(key)
        pod = self.pods.get(ns, name)
        if pod is None or not scheduler_core.wants_scheduling(pod) or key in self._assumed:
            return
        nodes = self.nodes.list()
        counts = {name_of(n): len(self.pods.by_index("node", name_of(n))) for n in nodes}
        for bound in self._assumed.values():
            node = bound["spec"]["nodeName"]
            counts[node] = counts.get(node, 0) + 1
        bindings, res = scheduler_core.schedule([pod], nodes, counts, datetime.now(UTC), self._placed_for(pod))
        for b in bindings:
            try:
                await self.client.request("POST", object_path("v1", "pods", ns, name, "binding"), body=scheduler_core.binding_body(b))
            except ApiError as exc:
                if exc.status == 404 and exc.reason != "NotFound":
                    await self.client.patch("v1", "pods", ns, name, {"spec": {"nodeName": b.node}})
                elif exc.status == 409:
                    continue  # already bound by someone else
                else:
                    raise
            self._assumed[key] = {**pod, "spec": {**(pod.get("spec") or {}), "nodeName": b.node}}
        await self._execute("scheduler", key, pod, res)
        if not bindings:
            q = self.queues["scheduler"]
            q.add_after(key, min(0.5 * (2 ** q.failures(key)), 30.0))
            q._failures[key] = q.failures(key) + 1

    def _placed_for(self, pod: Obj) -> list[Obj]:
        """The bound pods the scheduler's rules can see for ``pod`` (see scheduler_core)."""
        if scheduler_affinity.has_pod_affinity(pod):
            seen = [p for p in self.pods.list() if (p.get("spec") or {}).get("nodeName")]
        else:
            owner = controller_of(pod)
            seen = list(self.pods.by_index("owner", owner["uid"])) if owner else []
            seen += self.pods.by_index("antiaffinity", "1")
        bound = {_key(p): p for p in seen if (p.get("spec") or {}).get("nodeName")}
        for k, p in self._assumed.items():
            bound.setdefault(k, p)
        return list(bound.values())

    async def _sync_node(self, key: str) -> None:
        node = self.nodes.get("", key)
        if node is None:
            self._health.pop(key, None)
            return
        now = datetime.now(UTC)
        health = nodelifecycle_core.observe(self._health.get(key), node, self.node_leases.get(nodelifecycle_core.LEASE_NAMESPACE, key), now)
        self._health[key] = health
        res = nodelifecycle_core.reconcile_node(node, self.pods.by_index("node", key), now, self.node_monitor_grace, health)
        await self._execute("nodelifecycle", key, node, res)


# ---------------------------------------------------------------------------------------------
# entry points


def _hostport(s: str) -> tuple[str, int]:
    host, _, port = s.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {s!r}")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="servicenet controller-manager", description="run the controllers")
    p.add_argument("--kubeconfig", default=None)
    p.add_argument("--health-listen", type=_hostport, default=("127.0.0.1", 10257), metavar="HOST:PORT")
    p.add_argument("--max-endpoints-per-slice", type=int, default=100)
    p.add_argument("--node-monitor-grace-period", type=float, default=40.0)
    p.add_argument("--controllers", default=",".join(ALL_CONTROLLERS))
    p.add_argument("--log-level", default="info")
    le.add_flags(p, "kube-controller-manager")
    args = p.parse_args(argv)
    if not 1 <= args.max_endpoints_per_slice <= 1000:
        p.error("--max-endpoints-per-slice must be within 1..1000")
    log.setup(args.log_level)

    async def run() -> None:
        client = ApiClient.from_kubeconfig(args.kubeconfig)
        cm = ControllerManager(
            client,
            max_endpoints_per_slice=args.max_endpoints_per_slice,
            node_monitor_grace=args.node_monitor_grace_period,
            health_host=args.health_listen[0],
            health_port=args.health_listen[1],
            controllers=[c for c in args.controllers.split(",") if c],
        )
        comp = le.wrap(cm, client, args)
        await run_until_signal(comp, closing=[client.close])
        if getattr(comp, "lost", False):
            raise SystemExit(1)

    asyncio.run(run())
    return 0

