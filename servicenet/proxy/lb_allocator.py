"""LoadBalancer IP allocation (like k3s's service LB): a pure allocator plus an API shell.

:func:`plan` looks at all Services and returns the ``status.loadBalancer.ingress`` each
LoadBalancer Service should have: IPs it already holds from the pool are kept, a
requested ``spec.loadBalancerIP`` is honoured when free, otherwise the lowest free pool
address is assigned. Services that stopped being LoadBalancers get their ingress cleared.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from servicenet.common import log
from servicenet.common.component import cancel_and_wait

_log = log.get("proxy.lb")
Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Assignment:
    namespace: str
    name: str
    ips: tuple[str, ...]  # desired ingress IPs (empty = clear)


def _ingress_ips(svc: Mapping[str, Any]) -> list[str]:
    ing = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [i["ip"] for i in ing if i.get("ip")]


def plan(services: Iterable[Mapping[str, Any]], pool: str,
         lb_class: str | None = None) -> tuple[list[Assignment], list[Key]]:
    """Assignments that differ from the current status, and services left without an IP."""
    net = ipaddress.ip_network(pool, strict=False)
    hosts = list(net.hosts()) if net.num_addresses > 2 else list(net)
    svcs = sorted(services, key=lambda s: (s["metadata"].get("creationTimestamp") or "",
                                           s["metadata"].get("namespace", ""), s["metadata"]["name"]))
    used: set[str] = set()
    keep: dict[Key, list[str]] = {}
    wants: list[Mapping[str, Any]] = []
    out: list[Assignment] = []
    for s in svcs:
        spec, meta = s.get("spec") or {}, s["metadata"]
        key = (meta.get("namespace", "default"), meta["name"])
        current = _ingress_ips(s)
        mine = spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (None, lb_class)
        if not mine:
            if current and any(ipaddress.ip_address(ip) in net for ip in current) and \
                    spec.get("type") != "LoadBalancer":
                out.append(Assignment(key[0], key[1], ()))
            continue
        held = [ip for ip in current if ipaddress.ip_address(ip) in net and ip not in used]
        if held:
            used.update(held)
            keep[key] = held
        else:
            wants.append(s)
    starved: list[Key] = []
    for s in wants:
        meta, spec = s["metadata"], s.get("spec") or {}
        key = (meta.get("namespace", "default"), meta["name"])
        req = spec.get("loadBalancerIP")
        ip = None
        if req and req not in used and ipaddress.ip_address(req) in net:
            ip = req
        else:
            ip = next((str(h) for h in hosts if str(h) not in used), None)
        if ip is None:
            starved.append(key)
            continue
        used.add(ip)
        out.append(Assignment(key[0], key[1], (ip,)))
    return out, starved


def status_patch(a: Assignment) -> dict[str, Any]:
    return {"status": {"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"} for ip in a.ips]}}}


class LBAllocator:
    """Watches Services through an informer and writes ``status.loadBalancer`` via the API."""

    def __init__(self, client: Any, informer: Any, pool: str) -> None:
        self.client = client
        self.informer = informer
        self.pool = pool
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        informer.add_handler(lambda *_: self._wake.set())

    def start(self) -> None:
        self._wake.set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lb-allocator")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def reconcile_once(self) -> list[Assignment]:
        assignments, starved = plan(self.informer.list(), self.pool)
        for key in starved:
            _log.warning("LoadBalancer pool exhausted", service=f"{key[0]}/{key[1]}", pool=self.pool)
        for a in assignments:
            try:
                await self.client.patch("v1", "services", a.namespace, a.name, status_patch(a),
                                        patch_type="merge", subresource="status")
            except Exception as exc:  # one bad service must not stop the others
                _log.warning("cannot update LoadBalancer status", service=f"{a.namespace}/{a.name}",
                             error=str(exc))
        return assignments

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.reconcile_once()
            await asyncio.sleep(0.05)  # coalesce bursts of events
