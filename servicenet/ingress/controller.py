"""The ingress controller shell: informers in, HAProxy out, Ingress status and Events back.

Every change marks the state dirty; one sync task compiles the whole table (pure core), plans server
slots and either applies the difference through HAProxy's runtime API (endpoints, certificates) or,
when the structure changed, validates and seamlessly reloads. The last good configuration stays.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import prometheus_client

from servicenet.api.wire import meta as meta_of
from servicenet.client import ApiClient, ApiError, InformerFactory
from servicenet.client import object_key as _obj_key
from servicenet.common import log
from servicenet.common.component import bounded, cancel_and_wait
from servicenet.common.health import HealthServer
from servicenet.ingress import backend_stats, incremental, maps
from servicenet.ingress import render as rd
from servicenet.ingress.accesslog import AccessLog
from servicenet.ingress.certs import self_signed
from servicenet.ingress.core import SERVICE_NAME_LABEL, Inputs, compile_table, refresh_endpoints
from servicenet.ingress.haproxy import HAProxy
from servicenet.ingress.loop import sync_loop
from servicenet.ingress.model import CONTROLLER_NAME, Problem, Table
from servicenet.ingress.status import desired_status, new_event

_log = log.get("ingress")
NETNS_ANNOTATION = "servicenet.dev/netns"
NET = "networking.k8s.io/v1"


@dataclass
class IngressConfig:
    state_dir: Path
    http_port: int = 8080
    https_port: int = 8443
    addresses: tuple[str, ...] = ()  # empty: the Node's InternalIP (node_name) or 127.0.0.1
    node_name: str = ""  # follow this Node: its netns annotation and InternalIP
    controller: str = CONTROLLER_NAME
    health: tuple[str, int] = ("127.0.0.1", 0)
    access_log_file: Path | None = None
    access_log: bool = True  # False: no access log and no per-route metrics (saves a little CPU per request)
    backend_stats_period: float = 5.0  # without the access log: read HAProxy's backend counters this often
    publish_status: bool = True
    haproxy_global: tuple[str, ...] = ()  # extra lines for HAProxy's global section (tuning, benchmarks)
    extra: dict[str, Any] = field(default_factory=dict)


class _Index:
    """Read-only ``get`` views over informer caches for the pure core."""

    def __init__(self, inf: Any, by_service: bool = False) -> None:
        self.inf = inf
        self.by_service = by_service

    def get(self, key: str, default: Any = None) -> Any:
        if self.by_service:
            return self.inf.by_index("svc", key) or default
        ns, _, name = key.partition("/")
        return self.inf.get(ns, name) or default


class IngressController:
    name = "ingress"

    def __init__(self, client: ApiClient, config: IngressConfig) -> None:
        self.client = client
        self.cfg = config
        self.factory = InformerFactory(client)
        f = self.factory
        self.classes = f.informer(NET, "ingressclasses")
        self.ingresses = f.informer(NET, "ingresses")
        self.services = f.informer("v1", "services")
        self.slices = f.informer("discovery.k8s.io/v1", "endpointslices")
        self.secrets = f.informer("v1", "secrets")
        self.nodes = f.informer("v1", "nodes", field_selector=f"metadata.name={config.node_name}") \
            if config.node_name else None
        self.slices.add_index("svc", lambda o: [f"{o['metadata'].get('namespace', '')}/"
                                                f"{(o['metadata'].get('labels') or {}).get(SERVICE_NAME_LABEL)}"])
        self.haproxy: HAProxy | None = None
        self.table = Table()
        self.slots: rd.Slots = {}
        self.structure = ""
        self.maps = maps.Maps()
        self._cache: dict[Any, Any] = {}  # the core's memo (endpoints by slice versions, parsed annotations)
        self._route_names: dict[str, str] = {}
        self.cert_pems: dict[str, bytes] = {}
        self.listen = rd.Listen((), config.http_port, config.https_port)
        self.files = rd.Files(str(config.state_dir))
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._events_sent: set[tuple[str, ...]] = set()
        self._status_set: dict[str, Any] = {}
        self._status_todo: set[str] | None = None  # Ingresses whose status to check (None: all)
        self.registry = prometheus_client.CollectorRegistry()
        self.health = HealthServer(*config.health, registry=self.registry)
        self.m_syncs = prometheus_client.Counter("servicenet_ingress_syncs", "Syncs by how they were applied",
                                                 ["how"], registry=self.registry)
        self.m_sync_seconds = prometheus_client.Histogram("servicenet_ingress_sync_seconds",
                                                          "Change to data plane applied", registry=self.registry)
        self.m_rejected = prometheus_client.Counter("servicenet_ingress_rejected_configs",
                                                    "Configurations haproxy refused", registry=self.registry)
        self.access = AccessLog(self.registry, self._route_name, config.access_log_file)
        self.backend_totals = backend_stats.Totals()  # without the access log: HAProxy's own counters
        if not config.access_log:
            self.registry.register(backend_stats.Collector(self.backend_totals))
        self._stats_task: asyncio.Task[None] | None = None
        self.synced_generation = 0  # bumps after every applied sync (tests wait on it)
        self.last_error = ""
        self._syncing = False
        self._good_rv: dict[str, str] = {}
        self._compiled_rv: dict[str, str] = {}
        self._quarantine: dict[str, str] = {}  # Ingress key -> resourceVersion HAProxy refused
        self._full = True  # something other than EndpointSlice contents changed
        self._dirty_services: set[str] = set()  # Services whose EndpointSlices changed
        self._dirty_ingresses: set[str] = set()  # Ingresses whose spec or annotations changed
        self._inc: incremental.State | None = None  # for patching the table (None: rebuilt on demand)
        self._report_task: asyncio.Task[None] | None = None
        self._report_again = False

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        for inf in (self.classes, self.ingresses, self.services, self.slices, self.secrets, self.nodes):
            if inf is not None:
                inf.add_handler(self._on_event)
        await self.factory.start()
        await self.factory.wait_synced(60)
        netns = None
        addresses = self.cfg.addresses
        if self.nodes is not None:
            node = await self._wait_node()
            netns = ((node["metadata"].get("annotations") or {}).get(NETNS_ANNOTATION)) or None
            if not addresses:
                addresses = tuple(a["address"] for a in (node.get("status") or {}).get("addresses") or []
                                  if a.get("type") == "InternalIP")
        self.listen = rd.Listen(addresses or ("127.0.0.1",), self.cfg.http_port, self.cfg.https_port)
        d = Path(self.cfg.state_dir)
        self.haproxy = HAProxy(d, netns=netns, log_pipe=self.cfg.access_log)
        self.haproxy.prepare()
        default = d / "certs" / "default.pem"
        if not default.exists():
            rd_bytes = self_signed()
            default.write_bytes(rd_bytes)
            default.chmod(0o600)
        self.files = rd.Files(str(d), log_socket="stdout" if self.cfg.access_log else "",
                              extra_global=self.cfg.haproxy_global)
        self.health.add_health_check("haproxy", lambda: (self.haproxy is not None and self.haproxy.running,
                                                          "haproxy is not running"))
        self.health.add_ready_check("synced", lambda: (self.synced_generation > 0, "no sync yet"))
        await self.health.start()
        cfg_text = self._prepare(self._compile())
        if await self.haproxy.check(cfg_text):  # something HAProxy refuses already: leave it out
            isolated = await self._isolate(self._compile())
            cfg_text = isolated[1] if isolated else self._prepare(self._compile({_obj_key(i) for i in
                                                                                self.ingresses.list()}))
        await self.haproxy.start(cfg_text)
        if self.haproxy.log_fd is not None:
            await self.access.start(self.haproxy.log_fd)
        self._commit()
        self.synced_generation = 1
        await self._after_apply()
        self._task = asyncio.create_task(self._run(), name="ingress-sync")
        if not self.cfg.access_log:
            self._stats_task = asyncio.create_task(self._stats_loop(), name="ingress-backend-stats")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await cancel_and_wait(self._stats_task)
        self._stats_task = None
        await cancel_and_wait(self._report_task)
        await self.factory.stop()
        await self.access.stop()
        if self.haproxy is not None:
            await self.haproxy.stop()
        await self.health.stop()

    def describe(self) -> dict[str, str]:
        a = self.listen.addresses
        return {"http": ", ".join(f"{x}:{self.listen.http_port}" for x in a),
                "https": ", ".join(f"{x}:{self.listen.https_port}" for x in a),
                "health": self.health.url}

    async def _wait_node(self) -> dict[str, Any]:
        assert self.nodes is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            node = self.nodes.get(None, self.cfg.node_name)
            if node and any(a.get("type") == "InternalIP" for a in (node.get("status") or {}).get("addresses") or []):
                return node
            await asyncio.sleep(0.05)
        raise RuntimeError(f"node {self.cfg.node_name} has no InternalIP after 60 s")

    def _on_event(self, etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        kind = obj.get("kind")
        md = meta_of(obj)
        if kind == "EndpointSlice":
            svc = (md.get("labels") or {}).get(SERVICE_NAME_LABEL)
            self._dirty_services.add(f"{md.get('namespace', '')}/{svc}")
        elif kind == "Ingress" and etype == "MODIFIED" and old is not None and (
                old.get("spec") == obj.get("spec") and meta_of(old).get("annotations") ==
                md.get("annotations") and meta_of(old).get("deletionTimestamp") ==
                md.get("deletionTimestamp")):
            pass  # a status-only change (ours): nothing to route differently
        elif kind == "Ingress":
            self._dirty_ingresses.add(f"{md.get('namespace', '')}/{md.get('name', '')}")
        else:
            self._full = True
        self._dirty.set()

    # -- sync -------------------------------------------------------------------------------------------
    def _inputs(self) -> Inputs:
        return Inputs(tuple(self.classes.list()), tuple(self.ingresses.list()), _Index(self.services),  # type: ignore[arg-type]
                      _Index(self.slices, by_service=True), _Index(self.secrets), self.cfg.controller,  # type: ignore[arg-type]
                      self._cache)

    def _prepare(self, table: Table) -> str:
        """Write the content-addressed map files and certificates for ``table``; remember the plan and
        return the full configuration text (the caller applies it)."""
        m = maps.build(table)
        texts = {n: maps.text(m.get(n)) for n in maps.NAMES}
        gen = "." + hashlib.sha256(("\0".join(texts.values()) + "\0" + repr([(c.name, c.hosts) for c in table.certs])
                                    ).encode()).hexdigest()[:12]
        files = rd.Files(self.files.dir, self.files.log_socket, gen, self.files.extra_global)
        assert self.haproxy is not None
        self.haproxy.write_files({f"{n}{gen}.map": t for n, t in texts.items()}
                                 | {f"crt-list{gen}.txt": rd.crt_list(table, files)})
        for c in table.certs:
            self.haproxy.write_files({f"certs/{c.name}": c.pem})
        slots = rd.plan_slots(table, self.slots)
        self._pending = (table, slots, files, m, rd.structure(table, slots, self.listen, files))
        return rd.render(table, slots, self.listen, files)

    def _commit(self) -> None:
        table, slots, files, m, structure = self._pending
        if self.table.routes != table.routes:
            self.access.forget_routes()
            self._route_names = {rid: f"{r.source} {r.host or '*'}{r.path}"
                                 for rid, r in zip(rd.route_ids(table), table.routes, strict=True)}
        self.table, self.slots, self.files, self.maps = table, slots, files, m
        self._inc = None
        self._status_todo = None
        self._good_rv = {k: self._compiled_rv.get(k) or self._rv(k) for k in table.ingresses}
        self.structure = structure
        self.cert_pems = {c.name: c.pem for c in table.certs}

    def _retain(self, table: Table) -> Table:
        """``table`` plus the running backends it no longer uses: removing a route should not remove
        its backend by a reload (nothing routes there; the next reload drops them)."""
        names = {u.name for u in table.upstreams}
        extra = tuple(u for u in self.table.upstreams if u.name not in names)
        if not extra:
            return table
        return replace(table, upstreams=tuple(sorted(table.upstreams + extra, key=lambda u: u.name)))

    async def read_backend_stats(self) -> None:
        """One reading of HAProxy's per-backend counters into :attr:`backend_totals`."""
        assert self.haproxy is not None
        self.backend_totals.update(backend_stats.parse(await self.haproxy.command(backend_stats.COMMAND)))

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.backend_stats_period)
            try:
                await self.read_backend_stats()
            except OSError as e:  # a reload in progress (TimeoutError is one too): the next reading
                _log.debug("backend stats not read", error=str(e))

    async def _run(self) -> None:
        await sync_loop(self, self.sync, self.m_sync_seconds, "ingress", lambda: setattr(self, "_full", True))

    def _rv(self, key: str) -> str:
        ns, _, name = key.partition("/")
        obj = self.ingresses.get(ns, name)
        return str((obj or {}).get("metadata", {}).get("resourceVersion", "")) if obj else ""

    def _compile(self, exclude: set[str] | frozenset[str] = frozenset()) -> Table:
        inp = self._inputs()
        if exclude:
            inp = replace(inp, ingresses=tuple(i for i in inp.ingresses if _obj_key(i) not in exclude))
        # the versions this table is made of (the status writes that land before it is applied must
        # not make the incremental state look stale: the first change after would compile in full)
        self._compiled_rv = {_obj_key(i): str(meta_of(i).get("resourceVersion", "")) for i in inp.ingresses}
        return compile_table(inp)

    async def _isolate(self, table: Table) -> tuple[Table, str] | None:
        """HAProxy refused the whole configuration: find the changed Ingresses it refuses and leave
        them out (quarantined until they change again). None when even that does not validate."""
        assert self.haproxy is not None
        suspects = [k for k in table.ingresses if self._good_rv.get(k) != self._rv(k)]
        excluded = set(suspects) | set(self._quarantine)
        base = self._compile(excluded)
        if await self.haproxy.check(self._prepare(base)):
            return None
        for k in suspects:
            trial = self._compile(excluded - {k})
            if await self.haproxy.check(self._prepare(trial)) is None:
                excluded.discard(k)
        for k in excluded:
            self._quarantine.setdefault(k, self._rv(k))
        final = self._compile(excluded)
        return final, self._prepare(final)

    async def _endpoints_only(self, changed: set[str]) -> bool:
        """Only EndpointSlices changed: recompute those backends and apply them through the runtime
        API. False when a backend outgrew its slots (the caller does a full sync)."""
        assert self.haproxy is not None
        table = refresh_endpoints(self.table, _Index(self.services), _Index(self.slices, by_service=True), changed)
        touched = {u.name for u in table.upstreams if u.service.rpartition(":")[0] in changed}
        part = replace(table, upstreams=tuple(u for u in table.upstreams if u.name in touched))
        new = rd.plan_slots(part, {n: self.slots[n] for n in touched if n in self.slots})
        if any(len(new[n]) != len(self.slots.get(n, ())) for n in new):
            return False  # a backend outgrew its slots: structural
        ops = rd.runtime_ops({n: self.slots[n] for n in new}, new)
        slots = {**self.slots, **new}
        await self.haproxy.commands(ops)
        self.table, self.slots = table, slots
        self.m_syncs.labels("runtime" if ops else "noop").inc()
        return True

    async def _ingresses_only(self, keys: set[str]) -> bool:
        """Only Ingresses changed: patch the table and the map entries (``incremental``) and apply
        them through the runtime API. False when that does not apply (the caller compiles in full)."""
        assert self.haproxy is not None
        if keys & set(self._quarantine):
            return False
        inp = self._inputs()
        if self._inc is None:
            self._inc = incremental.state_of(self.table, inp, self._good_rv)
            if self._inc is None:
                return False
        self._inc.table = self.table  # the same routes, endpoints maybe refreshed since
        before = {h: self._inc.per_host[h] for h in self._inc.per_host}
        changed = {k: self.ingresses.get(*k.split("/", 1)) for k in keys}
        p = incremental.patch(self._inc, inp, changed)
        delta = incremental.map_delta(self._inc, before, p, self.table.default_upstream) if p else None
        if p is None or delta is None:
            self._inc = None
            return False
        ops = maps.ops(*delta, self.files.map_paths())
        for ans in await self.haproxy.commands(ops):
            if "No such" in ans or "Unknown" in ans or "Require" in ans or "not found" in ans.lower():
                _log.warning("runtime command answer", answer=ans.strip()[:300])
        self.maps = incremental.apply_delta(self.maps, *delta)
        self.table = p.table
        for r in p.removed:
            self._route_names.pop(maps.route_id(r), None)
        for r in p.added:
            self._route_names[maps.route_id(r)] = f"{r.source} {r.host or '*'}{r.path}"
        self.access.forget_routes()
        if self._status_todo is not None:
            self._status_todo |= keys
        for k, obj in changed.items():
            if k in self._inc.frags and obj is not None:
                self._good_rv[k] = str(meta_of(obj).get("resourceVersion", ""))
            else:
                self._good_rv.pop(k, None)
        self.m_syncs.labels("patch" if ops else "noop").inc()
        return True

    async def sync(self) -> None:
        assert self.haproxy is not None
        full, changed, ings = self._full, self._dirty_services, self._dirty_ingresses
        self._full, self._dirty_services, self._dirty_ingresses = False, set(), set()
        if not full:
            if changed and not await self._endpoints_only(changed):
                full = True
            elif ings and not await self._ingresses_only(ings):
                full = True
            if not full:
                self.synced_generation += 1
                if ings or self._status_todo:
                    self._report()
                return
        for k, rv in list(self._quarantine.items()):
            if self._rv(k) != rv:  # changed (or deleted): try it again
                del self._quarantine[k]
        table = self._compile(set(self._quarantine))
        kept = self._retain(table)
        slots = rd.plan_slots(kept, self.slots)
        same_certs = [(c.name, c.hosts) for c in kept.certs] == [(c.name, c.hosts) for c in self.table.certs]
        structure = rd.structure(kept, slots, self.listen, self.files) if same_certs else ""
        if structure != self.structure:
            cfg_text = self._prepare(table)
            err = await self.haproxy.reload(cfg_text)
            if err:
                self.m_rejected.inc()
                self.last_error = err
                _log.error("haproxy refused the configuration; isolating the Ingress that caused it", error=err[:2000])
                before = set(self._quarantine)
                isolated = await self._isolate(table)
                if isolated is None or await self.haproxy.reload(isolated[1]):
                    _log.error("no valid configuration without the changed Ingresses; keeping the last good one")
                    return
                table = isolated[0]
                await self._events(table, extra=[Problem("Ingress", *k.split("/", 1), "RejectedByDataPlane",
                                                         "haproxy refused this Ingress's configuration: " + err[:300])
                                                 for k in set(self._quarantine) - before])
            self.m_syncs.labels("reload").inc()
            self._commit()
            self.haproxy.prune(self.files.gen)
        else:
            m = maps.build(kept)
            ops = maps.ops(self.maps, m, self.files.map_paths()) + rd.runtime_ops(self.slots, slots)
            await self.haproxy.apply_runtime(ops, {c.name: c.pem for c in kept.certs}, self.cert_pems, self.files.cert)
            self.m_syncs.labels("runtime" if ops else "noop").inc()
            self._pending = (kept, slots, self.files, m, structure)
            self._commit()
        self.synced_generation += 1
        self._report()
        if not self._dirty.is_set():  # idle: build the incremental state now (~50 ms at 1,000 Ingresses),
            self._inc = incremental.state_of(self.table, self._inputs(), self._good_rv)  # not in the next change's time

    def _report(self) -> None:
        """Events and Ingress status (API writes) in a task of their own, so that the next change does
        not wait behind them; one at a time, the latest table."""
        if self._report_task is not None and not self._report_task.done():
            self._report_again = True
            return
        self._report_again = False
        self._report_task = asyncio.create_task(self._report_loop(), name="ingress-report")

    async def _report_loop(self) -> None:
        while True:
            try:
                await self._after_apply()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("status or event write failed")
            if not self._report_again:
                return
            self._report_again = False

    async def _after_apply(self) -> None:
        await self._events(self.table)
        if self.cfg.publish_status:
            await self._statuses()

    # -- status and events ------------------------------------------------------------------------------
    async def _statuses(self) -> None:
        want = desired_status(self.listen.addresses, self.listen.http_port, self.listen.https_port)
        served = set(self.table.ingresses)
        todo, self._status_todo = self._status_todo, set()
        for key in (served | set(self._status_set)) if todo is None else todo:
            ns, _, name = key.partition("/")
            target = want if key in served else {}
            ing = self.ingresses.get(ns, name)
            if ing is None:
                self._status_set.pop(key, None)
                continue
            if (ing.get("status") or {}).get("loadBalancer", {}) == target or (
                    not target and not (ing.get("status") or {}).get("loadBalancer")):
                if key in served:
                    self._status_set[key] = target
                else:
                    self._status_set.pop(key, None)
                continue
            body = dict(ing)
            body["status"] = {**(ing.get("status") or {}), "loadBalancer": target}
            try:
                await self.client.update_status(NET, "ingresses", ns, name, body)
            except ApiError as exc:
                if exc.status == 409:  # written meanwhile: again once the informer has the new version
                    if self._status_todo is not None:
                        self._status_todo.add(key)
                    self._dirty.set()
                elif exc.status != 404:
                    _log.warning("status update failed", ingress=key, error=str(exc))
                continue
            if key in served:
                self._status_set[key] = target
            else:
                self._status_set.pop(key, None)

    async def _events(self, table: Table, extra: list[Problem] | None = None) -> None:
        for p in list(table.problems) + list(extra or []):
            k = (p.kind, p.namespace, p.name, p.reason, p.message)
            if k in self._events_sent:
                continue
            self._events_sent.add(k)
            _log.warning("ingress config rejected", ingress=f"{p.namespace}/{p.name}", reason=p.reason,
                         message=p.message)
            obj = self.ingresses.get(p.namespace, p.name) if p.kind == "Ingress" else None
            if obj is None:
                continue
            try:
                await bounded(self.client.create("v1", "events", p.namespace or "default",
                                                 new_event(obj, p, "servicenet-ingress")), 5)
            except (ApiError, TimeoutError, OSError) as exc:
                _log.debug("event write failed", error=str(exc))

    def _route_name(self, rid: str) -> str:
        base = re.sub(r"(c|w\d+)$", "", rid)
        name = self._route_names.get(base)
        if name is None:
            return "-" if rid in ("", "-") else rid
        return name + (" canary" if rid.endswith("c") else "")

    async def wait_applied(self, timeout: float = 10.0) -> None:
        """Wait until every change seen so far is applied (tests)."""
        async def go() -> None:
            while self._dirty.is_set() or self._busy():
                await asyncio.sleep(0.005)
        await asyncio.sleep(0)
        await bounded(go(), timeout)

    def _busy(self) -> bool:
        return self._syncing
