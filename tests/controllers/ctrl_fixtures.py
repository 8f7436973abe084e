"""Object builders and a tiny in-memory apply for controller core tests, and the ``ctrl`` fixture
(a real API server plus kubelet stand-in writes) the API-level controller tests share."""

from __future__ import annotations

import asyncio
import copy
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from servicenet.controllers.actions import Action, Obj
from servicenet.testing import RunningApi, running_apiserver

_uid = itertools.count(1)


def svc(
    name: str = "web",
    ns: str = "default",
    selector: dict[str, str] | None = None,
    ports: list[Obj] | None = None,
    cluster_ip: str = "10.96.0.20",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> Obj:
    s: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-svc-{name}", "labels": labels or {}},
        "spec": {
            "selector": {"app": name} if selector is None else selector,
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}] if ports is None else ports,
            "clusterIP": cluster_ip,
            "ipFamilies": ["IPv4"],
            **spec,
        },
    }
    return s


def pod(
    name: str,
    ip: str | None = "10.244.0.1",
    ns: str = "default",
    labels: dict[str, str] | None = None,
    ready: bool = True,
    node: str = "node-1",
    phase: str = "Running",
    ports: list[Obj] | None = None,
    terminating: bool = False,
    hostname: str = "",
    subdomain: str = "",
    ips: list[str] | None = None,
) -> Obj:
    spec: Obj = {"nodeName": node, "containers": [{"name": "c", "image": "x", "ports": ports or []}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    md: Obj = {"name": name, "namespace": ns, "uid": f"uid-pod-{name}", "labels": {"app": "web"} if labels is None else labels}
    if terminating:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: Obj = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ips is not None:
        status["podIPs"] = [{"ip": i} for i in ips]
        status["podIP"] = ips[0] if ips else ""
    elif ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec, "status": status}


def node(name: str = "node-1", zone: str | None = "zone-a", ready: bool = True) -> Obj:
    labels = {"topology.kubernetes.io/zone": zone} if zone else {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "uid": f"uid-node-{name}", "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


class FakeStore:
    """Applies actions to an in-memory set of objects of one plural, assigning names/RVs."""

    def __init__(self, objs: list[Obj] | None = None) -> None:
        self.objs: dict[tuple[str, str], Obj] = {}
        self._rv = itertools.count(100)
        self._gen = itertools.count(1)
        for o in objs or []:
            self.objs[(o["metadata"]["namespace"], o["metadata"]["name"])] = o

    def apply(self, actions: tuple[Action, ...] | list[Action]) -> list[Obj]:
        out = []
        for a in actions:
            if a.verb == "create":
                body = copy.deepcopy(a.body or {})
                md = body["metadata"]
                if not md.get("name"):
                    md["name"] = md["generateName"] + f"x{next(self._gen):04d}"
                md["namespace"] = a.namespace
                md["uid"] = f"uid-{md['name']}"
                md["resourceVersion"] = str(next(self._rv))
                key = (a.namespace, md["name"])
                assert key not in self.objs, f"create of existing {key}"
                self.objs[key] = body
                out.append(body)
            elif a.verb in ("update", "update_status"):
                key = (a.namespace, a.name)
                assert key in self.objs, f"update of missing {key}"
                body = copy.deepcopy(a.body or {})
                body["metadata"]["resourceVersion"] = str(next(self._rv))
                self.objs[key] = body
                out.append(body)
            elif a.verb in ("patch", "patch_status"):
                key = (a.namespace, a.name)
                assert key in self.objs, f"patch of missing {key}"
                body = merge_patch(self.objs[key], a.body or {})
                body["metadata"]["resourceVersion"] = str(next(self._rv))
                self.objs[key] = body
                out.append(body)
            elif a.verb == "delete":
                key = (a.namespace, a.name)
                assert key in self.objs, f"delete of missing {key}"
                del self.objs[key]
            else:
                raise AssertionError(f"unexpected verb {a.verb}")
        return out

    def list(self) -> list[Obj]:
        return [copy.deepcopy(o) for o in self.objs.values()]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# -- the API-level controller tests' shared setup (node lease, scheduler, leader failover) ------------


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def poll(fn: Callable[[], Awaitable[Any]], timeout: float, interval: float = 0.05) -> Any:
    """Await ``fn`` until it returns something truthy (returned), failing after ``timeout``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last={last!r})")


@dataclass
class CtrlApi:
    """A real in-process API server and the writes the controller tests stand in for kubelets with."""
    api: RunningApi
    ns: str = "default"

    @property
    def client(self) -> Any:
        return self.api.client

    async def ready_node(self, name: str, labels: dict[str, str] | None = None) -> None:
        """A Node (``kubernetes.io/hostname`` + ``labels``) whose Ready condition is True."""
        await self.client.create("v1", "nodes", None, {"apiVersion": "v1", "kind": "Node", "metadata": {
            "name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}}})
        await self.client.patch("v1", "nodes", None, name, {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now(),
             "lastTransitionTime": now()}]}}, subresource="status")

    async def pod_running(self, name: str, ip: str, ready: bool = True) -> None:
        """What a kubelet reports for a started pod: Running with ``ip``, Ready = ``ready``."""
        await self.client.patch("v1", "pods", self.ns, name, {"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
            "conditions": [{"type": "Ready", "status": str(ready), "lastTransitionTime": now()}]}},
            subresource="status")

    async def service(self, name: str, selector: dict[str, str]) -> None:
        await self.client.create("v1", "services", self.ns, {"apiVersion": "v1", "kind": "Service",
                                                             "metadata": {"name": name},
                                                             "spec": {"selector": selector, "ports": [{"port": 80}]}})

    async def slice_endpoints(self, service: str) -> list[Obj]:
        res = await self.client.list("discovery.k8s.io/v1", "endpointslices", self.ns,
                                     label_selector=f"kubernetes.io/service-name={service}")
        return [e for s in res["items"] for e in s.get("endpoints") or []]


@pytest.fixture
async def ctrl(tmp_path: Path) -> AsyncIterator[CtrlApi]:
    async with running_apiserver(tmp_path) as api:
        yield CtrlApi(api)
