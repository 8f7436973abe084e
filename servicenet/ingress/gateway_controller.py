"""The Gateway API controller shell: informers in, its own HAProxy out, statuses back.

Every change marks the state dirty; one sync task compiles the whole plan (pure core), renders it,
and either moves endpoints through HAProxy's runtime API (the structure is unchanged) or validates
and seamlessly reloads. Then it writes, through the status subresource, every status that differs
from the stored one (lastTransitionTime kept where a condition did not change).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of
from servicenet.client import ApiClient, ApiError, InformerFactory
from servicenet.common import log
from servicenet.common.component import bounded, cancel_and_wait
from servicenet.ingress import gateway_maps as gm
from servicenet.ingress import gateway_status as gst
from servicenet.ingress import render as rd
from servicenet.ingress import render_gateway as rg
from servicenet.ingress.accesslog import AccessLog
from servicenet.ingress.certs import self_signed
from servicenet.ingress.controller import _Index
from servicenet.ingress.core import SERVICE_NAME_LABEL
from servicenet.ingress.gateway_compile import GATEWAY_CONTROLLER, GatewayInputs, Plan, compile_gateways
from servicenet.ingress.gateway_metrics import GatewayMetrics, Renamed
from servicenet.ingress.haproxy import HAProxy
from servicenet.ingress.loop import sync_loop
from servicenet.ingress.model import Problem, Table
from servicenet.ingress.status import new_event

_log = log.get("ingress.gateway")
GWV = "gateway.networking.k8s.io/v1"
ROUTE_PLURALS = {"HTTPRoute": "httproutes", "GRPCRoute": "grpcroutes", "TLSRoute": "tlsroutes"}
STATUS_ONLY_KINDS = ("GatewayClass", "Gateway", *ROUTE_PLURALS)
ROUTE_INPUTS = ("Service", "EndpointSlice", "ReferenceGrant")  # what a compiled route depends on


@dataclass
class GatewayConfig:
    state_dir: Path
    addresses: tuple[str, ...] = ("127.0.0.1",)  # where every listener binds (node IPs in netns mode)
    netns: str | None = None  # run the data plane inside this network namespace
    controller: str = GATEWAY_CONTROLLER
    publish_status: bool = True
    reserved_ports: tuple[int, ...] = ()  # the ingress controller's ports on the same addresses
    access_log: bool = True  # False: no access log and no per-route metrics
    access_log_file: Path | None = None


class _Get(_Index):
    """The ingress controller's cache view, for cluster-scoped objects too (keys without a namespace)."""

    def __init__(self, inf: Any, index: str = "", cluster: bool = False) -> None:
        super().__init__(inf, by_service=index == "svc")
        self.cluster = cluster

    def get(self, key: str, default: Any = None) -> Any:
        return (self.inf.get(None, key) or default) if self.cluster else super().get(key, default)


class GatewayController:
    name = "gateway"

    def __init__(self, client: ApiClient, config: GatewayConfig) -> None:
        self.client = client
        self.cfg = config
        f = self.factory = InformerFactory(client)
        self.classes = f.informer(GWV, "gatewayclasses")
        self.gateways = f.informer(GWV, "gateways")
        self.routes = {k: f.informer(GWV, p) for k, p in ROUTE_PLURALS.items()}
        self.grants = f.informer(GWV, "referencegrants")
        self.services = f.informer("v1", "services")
        self.slices = f.informer("discovery.k8s.io/v1", "endpointslices")
        self.secrets = f.informer("v1", "secrets")
        self.namespaces = f.informer("v1", "namespaces")
        self.slices.add_index("svc", lambda o: [f"{o['metadata'].get('namespace', '')}/"
                                                f"{(o['metadata'].get('labels') or {}).get(SERVICE_NAME_LABEL)}"])
        self.files = rg.GwFiles(str(config.state_dir))
        self.haproxy: HAProxy | None = None
        self.plan = Plan()
        self.slots: rd.Slots = {}
        self.structure = ""
        self.maps: gm.Maps = {}  # the running maps' contents
        self.cert_pems: dict[str, bytes] = {}
        self.synced_generation = 0
        self.last_error = ""
        self._dirty = asyncio.Event()
        self._syncing = False
        self._task: asyncio.Task[None] | None = None
        self._events_sent: set[tuple[str, ...]] = set()
        self._good_rv: dict[str, str] = {}  # route -> resourceVersion in the running configuration
        self._rejected: dict[str, tuple[str, str]] = {}  # route -> (resourceVersion HAProxy refused, why)
        self._report_task: asyncio.Task[None] | None = None
        self._route_cache: dict[Any, Any] = {}  # compiled routes; a new one when what they read changes
        self._status_seen: dict[tuple[str, str, str], tuple[Any, Obj]] = {}  # key -> (object checked, wanted)
        self._report_plan: Plan | None = None
        self.metrics = GatewayMetrics()
        self.registry = self.metrics.registry
        self._route_names: dict[str, str] = {}
        self.access = AccessLog(self.metrics.access, lambda rid: self._route_names.get(rid, rid or "-"),
                                config.access_log_file)

    @property
    def informers(self) -> dict[str, Any]:
        return {"GatewayClass": self.classes, "Gateway": self.gateways, "ReferenceGrant": self.grants,
                "Service": self.services, "EndpointSlice": self.slices, "Secret": self.secrets,
                "Namespace": self.namespaces, **self.routes}

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self) -> None:
        for inf in self.informers.values():
            inf.add_handler(self._on_event)
        await self.factory.start()
        await self.factory.wait_synced(60)
        d = Path(self.cfg.state_dir)
        self.haproxy = HAProxy(d, netns=self.cfg.netns, log_pipe=self.cfg.access_log)
        self.haproxy.prepare()
        default = d / "certs" / "default.pem"
        if not default.exists():
            default.write_bytes(self_signed("servicenet-gateway-default"))
            default.chmod(0o600)
        self.haproxy.write_files({"gateway.lua": rg.LUA})
        if self.cfg.access_log:
            self.files = replace(self.files, log_socket="stdout")
        plan = self._compile(True)
        text = self._prepare(plan)
        err = await self.haproxy.check(text)
        if err:  # leave out the routes HAProxy refuses; failing that, start with no listeners
            self.last_error = err
            isolated = await self._isolate(err)
            plan = isolated if isolated is not None else Plan(addresses=self.cfg.addresses)
            text = self._prepare(plan)
        await self.haproxy.start(text)
        if self.haproxy.log_fd is not None:
            await self.access.start(self.haproxy.log_fd)
        self._commit(plan)
        self.synced_generation = 1
        await self._statuses(plan)
        self._task = asyncio.create_task(self._run(), name="gateway-sync")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        await cancel_and_wait(self._report_task)
        await self.factory.stop()
        await self.access.stop()
        if self.haproxy is not None:
            await self.haproxy.stop()

    def describe(self) -> dict[str, str]:
        return {f"gateway {fe.mode}": ", ".join(f"{a}:{fe.port}" for a in self.cfg.addresses)
                for fe in self.plan.frontends}

    # -- sync -------------------------------------------------------------------------------------------
    def _route_rvs(self) -> dict[str, str]:
        return {f"{o.get('kind')}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}":
                str(o["metadata"].get("resourceVersion", "")) for inf in self.routes.values() for o in inf.list()}

    def _compile(self, programmed: bool, rejected: dict[str, str] | None = None) -> Plan:
        routes = tuple(o for inf in self.routes.values() for o in inf.list())
        if rejected is None:
            rvs = self._route_rvs()
            self._rejected = {k: v for k, v in self._rejected.items() if rvs.get(k) == v[0]}  # changed: retry
            rejected = {k: why for k, (_, why) in self._rejected.items()}
        return compile_gateways(GatewayInputs(
            tuple(self.classes.list()), tuple(self.gateways.list()), routes, tuple(self.grants.list()),
            _Get(self.namespaces, cluster=True), _Get(self.services), _Get(self.slices, "svc"), _Get(self.secrets),
            self.cfg.addresses, self.cfg.controller, programmed, rejected, self.cfg.reserved_ports, self._route_cache))

    async def _isolate(self, err: str) -> Plan | None:
        """HAProxy refused the plan: leave out the routes changed since the last good plan that it
        refuses (each tried alone), reported as not accepted until they change. None when even the
        plan without every changed route is refused."""
        assert self.haproxy is not None
        rvs = self._route_rvs()
        suspects = [k for k, rv in rvs.items() if self._good_rv.get(k) != rv and k not in self._rejected]
        why = "the data plane (HAProxy) refused this route's configuration: " + err[-300:]
        base = {**{k: w for k, (_, w) in self._rejected.items()}, **{k: why for k in suspects}}
        if await self.haproxy.check(self._prepare(self._compile(True, base))):
            return None
        bad = set(suspects)
        for k in suspects:
            trial = {kk: w for kk, w in base.items() if kk in self._rejected or kk in bad - {k}}
            if await self.haproxy.check(self._prepare(self._compile(True, trial))) is None:
                bad.discard(k)
        for k in bad:
            self._rejected[k] = (rvs[k], why)
        return self._compile(True)

    def _structure(self, plan: Plan, slots: rd.Slots) -> str:
        """What needs a reload when it changes: the configuration without server addresses, route
        map contents and map generation."""
        lists = rg.crt_lists(plan, self.files)
        return rg.render(plan, slots, replace(self.files, gen=""), with_servers=False) + repr(sorted(lists.items()))

    def _prepare(self, plan: Plan) -> str:
        """Write the files a configuration of ``plan`` loads (content-addressed map files, crt-lists,
        certificates) and return its text; ``_commit`` adopts it once HAProxy runs it."""
        assert self.haproxy is not None
        texts = rg.map_files(plan, self.files)
        gen = "." + hashlib.sha256("\0".join(f"{k}\0{v}" for k, v in sorted(texts.items())).encode()).hexdigest()[:12]
        files = replace(self.files, gen=gen)
        out = {f"crt-list-{p}.txt": t for p, t in rg.crt_lists(plan, files).items()}
        out.update({f"certs/{c.name}": c.pem for c in plan.certs})
        out.update(rg.map_files(plan, files))
        self.haproxy.write_files(out)
        self._slots = rd.plan_slots(Table(upstreams=plan.upstreams), self.slots)
        self._files = files
        return rg.render(plan, self._slots, files)

    def _commit(self, plan: Plan, reloaded: bool = True) -> None:
        self.plan, self.slots = plan, self._slots
        if reloaded:
            self.files = self._files
            if self.haproxy is not None:
                self.haproxy.prune(self.files.gen)
        self.maps = rg.http_maps(plan)
        names = rg.route_names(plan)
        if names != self._route_names:
            self._route_names = names
            self.access.forget_routes()
        self._good_rv = self._route_rvs()
        self.structure = self._structure(plan, self.slots)
        self.cert_pems = {c.name: c.pem for c in plan.certs}

    def _retain(self, plan: Plan) -> Plan:
        """``plan`` plus the running backends it no longer uses: removing a route should not remove
        its backend by a reload (nothing routes there; the next reload drops them)."""
        keep = {u.name: u for u in self.plan.upstreams} | {u.name: u for u in plan.upstreams}
        return plan if len(keep) == len(plan.upstreams) else replace(plan, upstreams=tuple(keep[n] for n in sorted(keep)))

    async def _run(self) -> None:
        await sync_loop(self, self.sync, self.metrics.sync_seconds, "ingress.gateway")

    async def sync(self) -> None:
        assert self.haproxy is not None
        plan = self._compile(True)
        kept = self._retain(plan)
        if kept == self.plan and self.synced_generation:
            self._report(plan)
            return
        slots = rd.plan_slots(Table(upstreams=kept.upstreams), self.slots)
        if self._structure(kept, slots) != self.structure:
            text = self._prepare(plan)
            err = await self.haproxy.reload(text)
            if err:
                self.last_error = err
                _log.error("haproxy refused the gateway configuration; isolating the routes that caused it",
                           error=err[:2000])
                isolated = await self._isolate(err)
                if isolated is None or await self.haproxy.reload(self._prepare(isolated)):
                    _log.error("no valid configuration without the changed routes; keeping the last good one")
                    self._report(self._compile(False))
                    return
                plan = isolated
            self.metrics.syncs.labels("reload").inc()
            self._commit(plan)
        else:
            self._slots = slots
            ops = gm.ops(self.maps, rg.http_maps(kept), self.files.map_paths(kept)) + rd.runtime_ops(self.slots, slots)
            await self.haproxy.apply_runtime(ops, {c.name: c.pem for c in plan.certs}, self.cert_pems, self.files.cert)
            self.metrics.syncs.labels("runtime" if ops else "noop").inc()
            self._commit(kept, reloaded=False)
        self.synced_generation += 1
        self._report(plan)

    def _on_event(self, etype: str, obj: Obj, old: Obj | None) -> None:
        """Mark dirty, except for a change of a route's, Gateway's or class's status alone (mostly our
        own writes): nothing routes differently."""
        if obj.get("kind") in ROUTE_INPUTS:
            self._route_cache = {}
        if etype == "MODIFIED" and old is not None and obj.get("kind") in STATUS_ONLY_KINDS and \
                obj.get("spec") == old.get("spec") and all(
                meta_of(obj).get(k) == meta_of(old).get(k) for k in ("labels", "annotations", "deletionTimestamp")):
            return
        self._dirty.set()

    def _report(self, plan: Plan) -> None:
        """Statuses and Events (API writes) in a task of their own, so that the next change does not
        wait behind them; one at a time, for the latest plan."""
        self._report_plan = plan
        if self._report_task is None or self._report_task.done():
            self._report_task = asyncio.create_task(self._report_loop(), name="gateway-report")

    async def _report_loop(self) -> None:
        while (plan := self._report_plan) is not None:
            self._report_plan = None
            try:
                await self._statuses(plan)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("gateway status or event write failed")

    # -- status -----------------------------------------------------------------------------------------
    async def _statuses(self, plan: Plan) -> None:
        await self._events(plan)
        if not self.cfg.publish_status:
            return
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        by_plural = {"gatewayclasses": self.classes, "gateways": self.gateways,
                     **{p: self.routes[k] for k, p in ROUTE_PLURALS.items()}}
        wants = dict(plan.statuses)
        for kind, inf in self.routes.items():  # a route no longer naming our Gateways: drop our entries
            for o in inf.list():
                key = (ROUTE_PLURALS[kind], o["metadata"].get("namespace", ""), o["metadata"]["name"])
                if key not in wants and any(p.get("controllerName") == self.cfg.controller
                                            for p in (o.get("status") or {}).get("parents") or []):
                    wants[key] = {"parents": []}
        for (plural, ns, name), want in wants.items():
            obj = by_plural[plural].get(ns or None, name)
            if obj is None:
                continue
            seen = self._status_seen.get((plural, ns, name))
            if seen is not None and seen[0] is obj and seen[1] == want:
                continue  # this very object was already found up to date with this status
            old = obj.get("status") or {}
            new = gst.merge(old, want, now, self.cfg.controller)
            if gst.same({k: old.get(k) for k in new}, new):
                if len(self._status_seen) > 100_000:
                    self._status_seen.clear()
                self._status_seen[(plural, ns, name)] = (obj, want)
                continue
            body = {**obj, "status": {**old, **new}}
            try:
                await bounded(self.client.update_status(GWV, plural, ns or None, name, body), 10)
            except ApiError as exc:
                if exc.status == 409:
                    self._dirty.set()  # a newer object: the next sync writes against it
                elif exc.status != 404:
                    _log.warning("status update failed", object=f"{plural}/{ns}/{name}", error=str(exc))
            except (TimeoutError, OSError) as exc:
                _log.warning("status update failed", object=f"{plural}/{ns}/{name}", error=str(exc))
                self._dirty.set()

    async def _events(self, plan: Plan) -> None:
        """A Warning Event, once, for each rejected route value and each listener problem."""
        problems = list(plan.problems)
        for (plural, ns, name), status in plan.statuses.items():
            for li in status.get("listeners") or [] if plural == "gateways" else []:
                for c in li["conditions"]:
                    if c["type"] in ("Accepted", "ResolvedRefs") and c["status"] == "False":
                        problems.append(Problem("Gateway", ns, name, c["reason"], f"listener {li['name']}: "
                                                f"{c['message']}"))
        informers = self.informers
        for p in problems:
            k = (p.kind, p.namespace, p.name, p.reason, p.message)
            if k in self._events_sent:
                continue
            self._events_sent.add(k)
            obj = informers[p.kind].get(p.namespace or None, p.name) if p.kind in informers else None
            if obj is None:
                continue
            _log.warning("gateway API configuration rejected", object=f"{p.kind} {p.namespace}/{p.name}",
                         reason=p.reason, message=p.message)
            try:
                await bounded(self.client.create("v1", "events", p.namespace or "default",
                                                 new_event(obj, p, "servicenet-gateway")), 5)
            except (ApiError, TimeoutError, OSError) as exc:
                _log.debug("event write failed", error=str(exc))

    async def wait_applied(self, timeout: float = 10.0) -> None:
        """Wait until every change seen so far is applied (tests)."""
        async def go() -> None:
            while self._dirty.is_set() or self._syncing or not (self._report_task is None or self._report_task.done()):
                await asyncio.sleep(0.005)
        await asyncio.sleep(0)
        await bounded(go(), timeout)

    async def reloads(self) -> int:
        assert self.haproxy is not None
        with contextlib.suppress(Exception):
            return await self.haproxy.master_reloads()
        return -1


class WithGateway:
    """The ingress controller and the gateway controller run as one component (``servicenet ingress
    --gateway``, ``servicenet up``): each owns its HAProxy; they share nothing but the API and the
    addresses. With ``wait_for_api`` the gateway controller starts once the Gateway API CRDs are
    served (polled), on the ingress controller's addresses and network namespace."""

    def __init__(self, ingress: Any, gateway: GatewayController, wait_for_api: bool = False,
                 poll: float = 1.0) -> None:
        self.ingress, self.gateway = ingress, gateway
        if getattr(ingress, "registry", None) is not None:  # one /metrics for both
            ingress.registry.register(Renamed(gateway.registry))
        self.wait_for_api, self.poll = wait_for_api, poll
        self.name = getattr(ingress, "name", "ingress")
        self.gateway_started = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.ingress.start()
        if self.wait_for_api:
            self._task = asyncio.create_task(self._start_when_served(), name="gateway-wait")
            return
        try:
            await self.gateway.start()
        except BaseException:
            await self.ingress.stop()
            raise
        self.gateway_started = True

    async def _start_when_served(self) -> None:
        while True:
            try:
                await self.gateway.client.list(GWV, "gatewayclasses", limit=1)
            except ApiError as exc:
                if exc.status not in (404, 503):
                    _log.warning("gateway API not readable", error=str(exc))
                await asyncio.sleep(self.poll)
                continue
            except OSError as exc:
                _log.warning("gateway API not reachable", error=str(exc))
                await asyncio.sleep(self.poll)
                continue
            listen = getattr(self.ingress, "listen", None)
            if listen is not None and getattr(listen, "addresses", ()):
                self.gateway.cfg.addresses = tuple(listen.addresses)
                self.gateway.cfg.reserved_ports = (listen.http_port, listen.https_port)
            self.gateway.cfg.netns = getattr(getattr(self.ingress, "haproxy", None), "netns", None)
            try:
                await self.gateway.start()
            except Exception:
                _log.exception("gateway controller failed to start; retrying")
                await self.gateway.stop()
                await asyncio.sleep(max(self.poll, 2.0))
                continue
            self.gateway_started = True
            _log.info("gateway controller started", addresses=",".join(self.gateway.cfg.addresses))
            return

    async def stop(self) -> None:
        try:
            await cancel_and_wait(self._task)
            if self.gateway_started or not self.wait_for_api:
                await self.gateway.stop()
        finally:
            await self.ingress.stop()

    def describe(self) -> dict[str, str]:
        if self.gateway_started:
            return {**self.ingress.describe(), **self.gateway.describe()}
        return {**self.ingress.describe(), "gateway": "each Gateway listener's port, once the Gateway API CRDs "
                "are installed"}
