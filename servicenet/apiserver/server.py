"""The API server component: HTTPS + bearer tokens in front of the registry and the store."""

from __future__ import annotations

import asyncio
import gc
import importlib
import platform
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import prometheus_client
from aiohttp import hdrs, web

from servicenet import __version__
from servicenet.api import errors, openapi, resources
from servicenet.api import wellknown as wk
from servicenet.api.errors import ApiStatusError
from servicenet.apiserver import certs, encryption, filters, front, negotiation
from servicenet.apiserver.authapi import start_security
from servicenet.apiserver.crds import CrdManager
from servicenet.apiserver.flowcontrol import MAX_BODY
from servicenet.apiserver.gc import GarbageCollector
from servicenet.apiserver.handlers import ResourceHandlers, Target, json_response, parse_target
from servicenet.apiserver.registry import Registry, WriteOptions
from servicenet.apiserver.services import ServiceRegistry
from servicenet.apiserver.shared_alloc import SharedServiceRegistry
from servicenet.client.kubeconfig import render as render_kubeconfig
from servicenet.common import gcfreeze, log
from servicenet.common.component import cancel_and_wait
from servicenet.common.health import HealthServer
from servicenet.store import CommitFailed, MemoryStore, SQLiteStore

_log = log.get("apiserver")


@dataclass
class ApiServerConfig:
    data_dir: Path = field(default_factory=lambda: Path.home() / ".servicenet")
    host: str = "127.0.0.1"
    port: int = 6443
    storage: str = "sqlite"  # sqlite | memory | etcd
    etcd_servers: list[str] = field(default_factory=list)  # client URLs, with --storage etcd (docs/etcd.md)
    etcd_prefix: str = ""  # prepended to every /registry/... key (several clusters on one etcd)
    etcd_cafile: Path | None = None
    etcd_certfile: Path | None = None
    etcd_keyfile: Path | None = None
    service_cidrs: list[str] = field(default_factory=lambda: list(wk.DEFAULT_SERVICE_CIDRS))
    node_port_range: tuple[int, int] = wk.NODE_PORT_RANGE
    tls: bool = True
    compact_interval: float = 60.0
    history_seconds: float = 300.0
    event_ttl: float = 3600.0  # seconds an Event is kept after its last write (upstream --event-ttl)
    encryption_config: Path | None = None  # EncryptionConfiguration; default: <data_dir>/encryption-config.yaml
    audit_policy_file: Path | None = None  # audit.k8s.io/v1 Policy; with audit_log_path: audit log on
    audit_log_path: Path | None = None
    audit_log_maxsize: int = 100  # MiB before rotation
    audit_log_maxbackup: int = 10
    max_requests_inflight: int = 400
    max_mutating_requests_inflight: int = 200
    request_timeout: float = 60.0
    # DefaultTolerationSeconds admission (upstream --default-not-ready/unreachable-toleration-seconds)
    default_not_ready_toleration_seconds: int | None = 300
    default_unreachable_toleration_seconds: int | None = 300
    shutdown_timeout: float = 60.0  # seconds a stop waits for open requests (watches included) to end


class ApiServer:
    name = "apiserver"

    def __init__(self, config: ApiServerConfig) -> None:
        self.config = config
        self.store: Any = None
        self.registry: Registry | None = None  # type: ignore[assignment]
        self.services = ServiceRegistry(config.service_cidrs, config.node_port_range)
        self.gc: GarbageCollector | None = None
        self.crds: CrdManager | None = None
        self.creds: certs.Credentials | None = None
        self._runner: web.BaseRunner | None = None
        self.security: Any = None
        self._sa_controller: Any = None
        self.loopback_token = ""
        self.audit: Any = None
        self.flowcontrol: Any = None
        self.ssl_context: ssl.SSLContext | None = None
        self.health = HealthServer(registry=prometheus_client.CollectorRegistry())
        self.metrics_registry = self.health.registry
        self.request_metrics = front.RequestMetrics()
        self.metrics_registry.register(self.request_metrics)
        self._path_labels = front.PathLabels()
        self._targets: front.Kept[str, tuple[int, Target]] = front.Kept()
        self._chain: front.Handler = self._dispatch
        self.started = 0.0
        self.port = config.port
        # the watch cache out of the collector's full passes (tune_gc, common.gcfreeze)
        self.gc_policy = gcfreeze.FreezePolicy(min_objects=GC_FREEZE_OVER)
        self._gc_keeper: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "https" if self.config.tls else "http"
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"{scheme}://{host}:{self.port}"

    @property
    def kubeconfig_path(self) -> Path:
        return self.config.data_dir / "kubeconfig"

    async def _open_store(self) -> None:
        ttl = {"/registry/core/events/": self.config.event_ttl}  # as upstream: Events expire
        if self.config.storage == "memory":
            self.store = MemoryStore(ttl=ttl)
        else:
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
            enc = self.config.encryption_config
            codec = encryption.load(enc or self.config.data_dir / "encryption-config.yaml", create=enc is None)
            if self.config.storage == "etcd":
                c = self.config
                etcd = importlib.import_module("servicenet.store.etcd")  # grpc: ~16 MiB, loaded only for etcd
                tls = etcd.EtcdTLS(*(str(p) if p else None for p in (c.etcd_cafile, c.etcd_certfile, c.etcd_keyfile)))
                self.store = etcd.EtcdStore(c.etcd_servers, prefix=c.etcd_prefix, codec=codec, history_seconds=c.history_seconds,
                                       ttl=ttl, tls=tls if any((c.etcd_cafile, c.etcd_certfile)) else None)
                # allocation state lives in etcd, shared by every API server
                self.services = SharedServiceRegistry(c.service_cidrs, c.node_port_range, self.store)
            else:
                self.store = SQLiteStore(str(self.config.data_dir / "state.db"), codec=codec, ttl=ttl)
        await self.store.open()

    async def start(self) -> None:
        self.config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.config.data_dir.chmod(0o700)  # state, keys and kubeconfigs: the owner's only
        await self._open_store()
        self.registry = Registry(self.store)
        self.registry.default_toleration_seconds = (self.config.default_not_ready_toleration_seconds,
                                                    self.config.default_unreachable_toleration_seconds)
        self.registry.before_create["services"] = self.services.before_create
        self.registry.before_update["services"] = self.services.before_update
        self.registry.after_delete["services"] = self.services.after_delete
        recs, _, _ = self.store.list("/registry/core/services/")
        if isinstance(self.services, SharedServiceRegistry):
            await self.services.ensure(r.obj() for r in recs)
        else:
            self.services.rebuild(r.obj() for r in recs)
        await self._bootstrap()
        self.crds = CrdManager(self)
        self.registry.admission = self.crds.admission
        await self.crds.start()
        if self.config.tls:
            self.creds = certs.ensure(self.config.data_dir / "pki", [self.config.host, self.services.kubernetes_ip()])
            self.security, self._sa_controller = await start_security(self)
        self.gc = GarbageCollector(self.registry)
        await self.gc.start()
        self.handlers = ResourceHandlers(self.registry, self.store)
        self._chain = front.compose(self._dispatch, filters.build(self))
        loop = asyncio.get_running_loop()
        http = web.Server(self._handle, request_factory=front.request_factory(loop, MAX_BODY),  # type: ignore[arg-type]
                          handler_cancellation=True, access_log=None)
        self._runner = web.ServerRunner(http, shutdown_timeout=self.config.shutdown_timeout)
        await self._runner.setup()
        ssl_ctx = None
        if self.config.tls and self.creds is not None:
            ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ssl_ctx.load_cert_chain(str(self.creds.server_cert), str(self.creds.server_key))
            ssl_ctx.load_verify_locations(str(self.creds.ca_cert))  # x509 client certificates
            ssl_ctx.verify_mode = ssl.CERT_OPTIONAL
            self.ssl_context = ssl_ctx
        site = web.TCPSite(self._runner, self.config.host, self.config.port, ssl_context=ssl_ctx,
                           reuse_address=True, backlog=1024)
        await site.start()
        srv = site._server
        if srv is not None and srv.sockets:
            self.port = srv.sockets[0].getsockname()[1]
        self.started = time.time()
        tune_gc()
        self._gc_keeper = asyncio.create_task(gcfreeze.keep(self.cache_stats, self.gc_policy, gcfreeze.CHECK_INTERVAL),
                                              name="gc-freeze")
        self.write_kubeconfig()
        self.health.add_ready_check("store", self._store_ready)
        _log.info("serving", url=self.url, storage=self.config.storage, data_dir=str(self.config.data_dir))

    def cache_stats(self) -> tuple[int, int]:
        """Records in the watch cache, and its rebuilds so far (every record replaced)."""
        if self.store is None:
            return 0, 0
        return len(self.store), int(getattr(self.store, "cache_resets", 0))

    def _store_ready(self) -> tuple[bool, str]:
        if self.store is None:
            return False, "store not open"
        ready = getattr(self.store, "ready", None)  # etcd: reachable and its watch is live
        return ready() if ready is not None else (True, "ok")

    def write_kubeconfig(self) -> None:
        if self.creds is None:
            return
        text = render_kubeconfig(self.url, self.creds.admin_token(), self.creds.ca_pem)
        path = self.kubeconfig_path
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)
        tmp.replace(path)

    async def stop(self) -> None:
        await cancel_and_wait(self._gc_keeper)
        self._gc_keeper = None
        if self.crds is not None:
            await self.crds.stop()
        if self.security is not None:
            await self._sa_controller.stop()
            await self.security.authz.stop()
        if self.gc is not None:
            await self.gc.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.audit is not None:
            self.audit.close()
        if isinstance(self.services, SharedServiceRegistry):
            await self.services.drain()
        if self.store is not None:
            await self.store.close()
            self.store = None

    def describe(self) -> dict[str, str]:
        return {"api": self.url, "kubeconfig": str(self.kubeconfig_path)}

    # -- bootstrap -----------------------------------------------------------------------------------
    async def _bootstrap(self) -> None:
        assert self.registry is not None
        ns_info = resources.by_plural("", "v1", "namespaces")
        svc_info = resources.by_plural("", "v1", "services")
        assert ns_info is not None and svc_info is not None
        for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
            if self.store.get(f"/registry/core/namespaces/{ns}") is None:
                try:
                    await self.registry.create(ns_info, None, {"metadata": {"name": ns}}, WriteOptions())
                except ApiStatusError as exc:  # another API server on the same etcd made it first
                    if exc.reason != "AlreadyExists":
                        raise
        if self.store.get("/registry/core/services/default/kubernetes") is None:
            await self.registry.create(svc_info, "default", {
                "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": self.services.kubernetes_ip(), "type": "ClusterIP",
                         "sessionAffinity": "None",
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP",
                                    "targetPort": self.config.port or 6443}]},
            }, WriteOptions())
        if self.store.get("/registry/core/services/kube-system/kube-dns") is None:
            await self.registry.create(svc_info, "kube-system", {
                "metadata": {"name": "kube-dns", "labels": {"k8s-app": "kube-dns",
                                                            "kubernetes.io/name": "CoreDNS",
                                                            "kubernetes.io/cluster-service": "true"}},
                "spec": {"clusterIP": self.services.dns_ip(), "type": "ClusterIP",
                         "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                                   {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                                   {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}]},
            }, WriteOptions())

    # -- HTTP plumbing -------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Every request: errors as Status objects, protobuf answers, the request metrics, then the
        filter chain (``filters.build``) and :meth:`_dispatch`."""
        if request.headers.get(hdrs.EXPECT):  # before the filters and the metrics, as web.Application did
            await front.expect_continue(request)
        t0 = time.perf_counter()
        code = 500
        try:
            resp = negotiation.protobuf_response(request, await self._chain(request))
            code = resp.status
            return resp
        except ApiStatusError as exc:
            code = exc.code
            return negotiation.protobuf_response(request, json_response(exc.status(), exc.code,
                                                                        exc.headers or None))
        except web.HTTPException:
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except CommitFailed as exc:  # the storage refused or timed out (etcd unreachable): no bug, no trace
            _log.warning("write not committed", method=request.method, path=request.path, error=str(exc))
            err = errors.internal(str(exc))
            return negotiation.protobuf_response(request, json_response(err.status(), 500))
        except Exception as exc:
            _log.exception("request failed", method=request.method, path=request.path)
            err = errors.internal(repr(exc))
            return json_response(err.status(), 500)
        finally:
            verb = front.verb_label(request)
            self.request_metrics.record(verb, self._path_labels(request.path), code,
                                        None if verb == "WATCH" else time.perf_counter() - t0)

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        kept = self._targets.get(request.path)
        if kept is not None and kept[0] == resources.dynamic_generation():
            return await self.handlers.handle(request, kept[1])
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if path in ("/healthz", "/livez", "/readyz", "/metrics") or path.startswith(("/healthz/", "/livez/",
                                                                                      "/readyz/")):
            base = "/" + parts[0]
            return await {"/healthz": self.health._healthz, "/livez": self.health._healthz,
                          "/readyz": self.health._readyz, "/metrics": self.health._metrics}[base](request)
        if path == "/version":
            return json_response(version_info())
        if path == "/":
            return json_response({"paths": sorted(["/api", "/api/v1", "/apis", "/healthz", "/livez",
                                                   "/readyz", "/metrics", "/version", "/openapi/v3"]
                                                  + [f"/apis/{g}/{v}" for g, v in resources.group_versions()
                                                     if g] + [f"/apis/{g}" for g, _ in
                                                              resources.group_versions() if g])})
        if parts[0] == "openapi":
            return self._openapi(request, parts)
        if parts[0] in ("api", "apis") and len(parts) == 1 and \
                "as=APIGroupDiscoveryList" in request.headers.get("Accept", "") and \
                "application/json;g=apidiscovery.k8s.io;v=v2;" in request.headers.get("Accept", "").replace(" ", ""):
            return web.Response(body=orjson.dumps(resources.aggregated_discovery(core=parts[0] == "api")),
                                headers={"Content-Type": resources.AGGREGATED_CONTENT_TYPE, "Vary": "Accept"})
        if parts[0] == "api":
            if len(parts) == 1:
                return json_response(resources.api_versions(f"{self.config.host}:{self.port}"))
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis":
            if len(parts) == 1:
                return json_response(resources.api_group_list())
            if len(parts) == 2:
                g = resources.api_group(parts[1])
                if not g:
                    raise errors.unserved()
                return json_response(g)
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.unserved()
        if not rest:
            doc = resources.api_resource_list(group, version)
            if doc is None:
                raise errors.unserved()
            return json_response(doc)
        target = parse_target(group, version, rest)
        if target is None:
            raise errors.unserved()
        # a resource URL's target depends only on the path and the served kinds (CRDs: the generation)
        self._targets.put(request.path, (resources.dynamic_generation(), target))
        return await self.handlers.handle(request, target)

    def _openapi(self, request: web.Request, parts: list[str]) -> web.Response:
        if len(parts) >= 2 and parts[1] == "v3":
            if len(parts) == 2:
                idx = openapi.v3_index()
                return json_response(self.crds.openapi_index(idx) if self.crds is not None else idx)
            gv = parts[2:]
            own = None
            if self.crds is not None and len(gv) == 3 and gv[0] == "apis":
                own = self.crds.openapi_document(gv[1], gv[2])
            doc = own if own is not None else openapi.v3_document("/".join(parts[2:]))
            if doc is None:
                raise errors.unserved()
            return web.Response(body=doc if isinstance(doc, bytes) else orjson.dumps(doc),
                                content_type="application/json")
        raise errors.unserved()


# The cyclic GC's default young-generation threshold (700 net allocations) makes collections very
# frequent under write load, promoting in-flight request objects into the old generations and so
# bringing on full collections, each of which walks every stored record (pauses of 50-150 ms measured
# with 100,000+ records). A larger young generation means far fewer promotions; its own pauses grow
# with its size (measured on the 2-core benchmark machine: median 4 ms, max 13 ms at 10,000;
# 30-90 ms at 50,000).
# LIST decoding pauses the collector itself (responses.collector_paused).
GC_THRESHOLD = (10_000, 10, 10)
# A watch cache at least this large is frozen out of the collector (common.gcfreeze: garbage is
# collected first, so nothing leaks): its records are long-lived, and full collections would
# otherwise walk them all (0.4-1.0 s each at 1,000 nodes / 30,000 pods, loaded 2-core machine).
# Checked every gcfreeze.CHECK_INTERVAL seconds from the start: at startup over a populated store, then again when
# the cache has doubled or halved, when a load has settled (5 % moved, then held still), and after
# the etcd watch cache is rebuilt. Replaced records (a Lease renewed, a pod's status written) are
# still freed by reference counting; the write paths leave no reference cycles
# (tests/apiserver/test_cyclic_garbage.py).
GC_FREEZE_OVER = 10_000


def tune_gc() -> None:
    if gc.get_threshold()[0] < GC_THRESHOLD[0]:
        gc.set_threshold(*GC_THRESHOLD)


def version_info() -> dict[str, str]:
    return {"major": "1", "minor": "32", "gitVersion": f"v1.32.0+servicenet-{__version__}",
            "gitCommit": "servicenet", "gitTreeState": "clean", "buildDate": "2026-11-21T00:00:00Z",
            "goVersion": f"python{platform.python_version()}", "compiler": "cpython",
            "platform": f"linux/{platform.machine()}"}
