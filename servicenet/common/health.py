"""``/healthz``, ``/readyz``, ``/livez`` and Prometheus ``/metrics`` for a component.

Each component owns a :class:`HealthServer`; checks are plain callables returning
``(ok, detail)`` so the component decides what healthy means.
"""

from __future__ import annotations

from collections.abc import Callable

import prometheus_client
from aiohttp import web

Check = Callable[[], tuple[bool, str]]


class HealthServer:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        registry: prometheus_client.CollectorRegistry | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = registry or prometheus_client.REGISTRY
        self._health: dict[str, Check] = {}
        self._ready: dict[str, Check] = {}
        self._runner: web.AppRunner | None = None

    def add_health_check(self, name: str, check: Check) -> None:
        self._health[name] = check

    def add_ready_check(self, name: str, check: Check) -> None:
        self._ready[name] = check

    def routes(self) -> list[web.RouteDef]:
        """The routes, so a component with its own HTTP server can mount them."""
        return [
            web.get("/healthz", self._healthz),
            web.get("/livez", self._healthz),
            web.get("/readyz", self._readyz),
            web.get("/metrics", self._metrics),
        ]

    @staticmethod
    def _run(checks: dict[str, Check], verbose: bool) -> web.Response:
        lines, ok_all = [], True
        for name, check in checks.items():
            try:
                ok, detail = check()
            except Exception as exc:  # a failing check is a failed check, not a crash
                ok, detail = False, repr(exc)
            ok_all &= ok
            lines.append(f"[{'+' if ok else '-'}]{name} {'ok' if ok else 'failed: ' + detail}")
        if verbose or not ok_all:
            body = "\n".join(lines) + ("\nhealthz check passed\n" if ok_all else "\ncheck failed\n")
        else:
            body = "ok"
        return web.Response(text=body, status=200 if ok_all else 503)

    async def _healthz(self, request: web.Request) -> web.Response:
        return self._run(self._health, "verbose" in request.query)

    async def _readyz(self, request: web.Request) -> web.Response:
        return self._run({**self._health, **self._ready}, "verbose" in request.query)

    async def _metrics(self, request: web.Request) -> web.Response:
        data = prometheus_client.generate_latest(self.registry)
        return web.Response(body=data, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.add_routes(self.routes())
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if server is not None and server.sockets:  # resolve port 0
            self.port = server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
