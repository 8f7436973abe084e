"""An API server with upstream's Gateway API CRDs, and the gateway controller (HAProxy) on loopback."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servicenet.ingress.gateway_controller import GatewayConfig, GatewayController
from servicenet.testing import RunningApi, running_apiserver

from .harness import until

BUNDLE = Path(__file__).resolve().parents[1] / "third_party" / "gateway-api" / "standard-install.yaml"
PLURALS = {"GatewayClass": "gatewayclasses", "Gateway": "gateways", "HTTPRoute": "httproutes",
           "GRPCRoute": "grpcroutes", "TLSRoute": "tlsroutes", "ReferenceGrant": "referencegrants",
           "Service": "services", "EndpointSlice": "endpointslices", "Secret": "secrets", "Namespace": "namespaces"}

# a GatewayClass, a Gateway with one HTTP listener, a selector-less Service with a manual
# EndpointSlice, and an HTTPRoute: format with port= (the listener's) and backend= (a local port)
MANIFEST = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: servicenet}}
spec: {{controllerName: servicenet.io/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: web}}
spec:
  gatewayClassName: servicenet
  listeners:
  - {{name: http, protocol: HTTP, port: {port}}}
---
apiVersion: v1
kind: Service
metadata: {{name: app}}
spec:
  ports: [{{name: http, port: 80, targetPort: {backend}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: app-manual
  labels: {{kubernetes.io/service-name: app}}
addressType: IPv4
ports: [{{name: http, port: {backend}, protocol: TCP}}]
endpoints: [{{addresses: [127.0.0.1], conditions: {{ready: true}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app}}
spec:
  parentRefs: [{{name: web}}]
  hostnames: [app.test]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /app}}}}]
    backendRefs: [{{name: app, port: 80}}]
"""


@dataclass
class GwStack:
    api: RunningApi
    ctl: GatewayController

    @property
    def client(self) -> Any:
        return self.api.client

    async def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace ``obj``; wait until the controller saw this version and applied it."""
        kind, av = obj["kind"], obj["apiVersion"]
        md = obj["metadata"]
        ns = md.get("namespace")
        body = json.loads(json.dumps(obj))
        body["metadata"] = {k: v for k, v in md.items() if k not in ("creationTimestamp", "generation")}
        try:
            cur = await self.client.get(av, PLURALS[kind], ns, md["name"])
        except Exception:
            out = await self.client.create(av, PLURALS[kind], ns, body)
        else:
            body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
            out = await self.client.update(av, PLURALS[kind], ns, md["name"], body)
        await self.seen(kind, out)
        return out

    async def delete(self, obj: dict[str, Any]) -> None:
        md = obj["metadata"]
        await self.client.delete(obj["apiVersion"], PLURALS[obj["kind"]], md.get("namespace"), md["name"])
        inf = self.ctl.informers[obj["kind"]]
        await until(lambda: inf.get(md.get("namespace"), md["name"]) is None, 20, what=f"{md['name']} gone")
        await self.ctl.wait_applied(30)

    async def seen(self, kind: str, out: dict[str, Any]) -> None:
        inf = self.ctl.informers[kind]
        md = out["metadata"]

        def ok() -> bool:
            cur = inf.get(md.get("namespace"), md["name"])
            return cur is not None and int(cur["metadata"]["resourceVersion"]) >= int(md["resourceVersion"])
        await until(ok, 20, 0.002, what=f"{kind} {md['name']} seen")
        await self.ctl.wait_applied(30)

    async def status(self, kind: str, name: str, ns: str | None = "default",
                     want: Any = None, timeout: float = 20.0) -> dict[str, Any]:
        """The stored status, once ``want(status)`` holds (the controller writes it asynchronously)."""
        last: dict[str, Any] = {}

        async def get() -> bool:
            nonlocal last
            obj = await self.client.get("gateway.networking.k8s.io/v1", PLURALS[kind], ns, name)
            last = obj.get("status") or {}
            return want is None or bool(want(last))
        try:
            await until(get, timeout, 0.05, what=f"{kind} {name} status")
        except AssertionError:
            raise AssertionError(f"{kind} {name} status never matched: {json.dumps(last, indent=1)}") from None
        return last


@contextlib.asynccontextmanager
async def gateway_stack(tmp: Path) -> AsyncIterator[GwStack]:
    async with running_apiserver(tmp / "api") as api:
        _, out, _ = await api.kubectl("apply", "--server-side", "-f", str(BUNDLE))
        await api.kubectl("wait", "--for", "condition=established", "--timeout=30s",
                          "crd/gateways.gateway.networking.k8s.io", "crd/httproutes.gateway.networking.k8s.io",
                          "crd/gatewayclasses.gateway.networking.k8s.io", "crd/grpcroutes.gateway.networking.k8s.io",
                          "crd/tlsroutes.gateway.networking.k8s.io", "crd/referencegrants.gateway.networking.k8s.io")
        client = api.new_client()
        ctl = GatewayController(client, GatewayConfig(state_dir=tmp / "gateway"))
        await ctl.start()
        try:
            yield GwStack(api, ctl)
        finally:
            await ctl.stop()
            await client.close()
