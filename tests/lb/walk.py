"""Shared pieces of the client-LB walkthrough: manifests, a slice watch with timestamps, spreads."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message

from servicenet.lb import Balancer
from servicenet.lb.adapters.aiohttp import LBSession

NS = "awx"


def manifest(flags: Path, replicas: int = 3) -> str:
    """StatefulSet ``web`` behind the headless ``web-headless`` in ``awx``; a pod is Ready when it
    answers HTTP and NotReady while the file ``flags/<pod name>`` exists (an exec probe every second)."""
    return f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {NS}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web-headless, namespace: {NS}}}
spec:
  clusterIP: None
  selector: {{app: web}}
  ports: [{{name: http, port: 9376, targetPort: 9376}}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web, namespace: {NS}}}
spec:
  serviceName: web-headless
  replicas: {replicas}
  podManagementPolicy: Parallel
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: registry.k8s.io/serve_hostname
        ports: [{{containerPort: 9376, name: http}}]
        env:
        - {{name: FLAGS, value: "{flags}"}}
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        - name: POD_IP
          valueFrom: {{fieldRef: {{fieldPath: status.podIP}}}}
        readinessProbe:
          exec: {{command: ["sh", "-c", "test ! -f $FLAGS/$POD_NAME && curl -sf -o /dev/null --max-time 1 http://$POD_IP:9376/"]}}
          periodSeconds: 1
          failureThreshold: 1
"""


@contextlib.contextmanager
def flags_dir() -> Iterator[Path]:
    """A directory every pod user can read (pytest's tmp dirs are private to root)."""
    d = Path(tempfile.mkdtemp(prefix="sn-lb-flags-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class SliceClock:
    """Watches the Service's EndpointSlices on its own connection and notes when each ready set
    first appeared (time.time()), to time how long a client takes to follow."""

    def __init__(self, client: Any, service: str, ns: str = NS) -> None:
        self.client = client
        self.service = service
        self.ns = ns
        self.slices: dict[str, dict[str, Any]] = {}
        self.seen: list[tuple[float, frozenset[str]]] = []
        self._task: asyncio.Task[None] | None = None

    def ready(self) -> frozenset[str]:
        return frozenset(a for s in self.slices.values() for e in s.get("endpoints") or []
                         if (e.get("conditions") or {}).get("ready") is not False for a in e["addresses"])

    async def _run(self) -> None:
        lst = await self.client.list("discovery.k8s.io/v1", "endpointslices", self.ns,
                                     label_selector=f"kubernetes.io/service-name={self.service}")
        for s in lst["items"]:
            self.slices[s["metadata"]["name"]] = s
        self.seen.append((time.time(), self.ready()))
        async for ev in self.client.watch("discovery.k8s.io/v1", "endpointslices", self.ns,
                                          resource_version=lst["metadata"]["resourceVersion"],
                                          label_selector=f"kubernetes.io/service-name={self.service}"):
            obj = ev["object"]
            if ev["type"] == "DELETED":
                self.slices.pop(obj["metadata"]["name"], None)
            elif ev["type"] in ("ADDED", "MODIFIED"):
                self.slices[obj["metadata"]["name"]] = obj
            now = time.time()
            cur = self.ready()
            if not self.seen or self.seen[-1][1] != cur:
                self.seen.append((now, cur))

    def first(self, pred: Any) -> float | None:
        return next((t for t, s in self.seen if pred(s)), None)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SliceClock]:
        self._task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task


class DnsClock:
    """Asks the DNS server directly every 50 ms and notes when each answer first appeared: tells a
    slow DNS server apart from a slow client."""

    def __init__(self, server: tuple[str, int], name: str) -> None:
        self.server = server
        self.name = name
        self.seen: list[tuple[float, frozenset[str]]] = []
        self.stopping = False

    async def _run(self) -> None:
        while not self.stopping:
            q = dns.message.make_query(self.name, "A")
            with contextlib.suppress(Exception):
                r = await dns.asyncquery.udp(q, self.server[0], port=self.server[1], timeout=1)
                cur = frozenset(a.address for rr in r.answer for a in rr)
                if not self.seen or self.seen[-1][1] != cur:
                    self.seen.append((time.time(), cur))
            await asyncio.sleep(0.05)

    def first(self, pred: Any) -> float | None:
        return next((t for t, s in self.seen if pred(s)), None)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DnsClock]:
        task = asyncio.create_task(self._run())
        try:
            yield self
        finally:
            # dnspython's asyncio.wait_for may drop a cancellation (Python 3.11): flag, then cancel
            self.stopping = True
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.2)


class LbClock:
    """Notes when each eligible set first appeared in a balancer."""

    def __init__(self, balancer: Balancer) -> None:
        self.seen: list[tuple[float, frozenset[str]]] = []
        balancer.add_listener(self._on)
        self._on(balancer)

    def _on(self, b: Balancer) -> None:
        cur = frozenset(x.ep.address for x in b.eligible)
        if not self.seen or self.seen[-1][1] != cur:
            self.seen.append((time.time(), cur))

    def first(self, pred: Any) -> float | None:
        return next((t for t, s in self.seen if pred(s)), None)


async def spread(balancer: Balancer, n: int = 3000, concurrency: int = 16) -> Counter[str]:
    counts: Counter[str] = Counter()
    left = n
    async with LBSession(balancer, "web-headless") as s:
        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                r = await s.get("/")
                assert r.status == 200
                counts[r.text().strip()] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counts


def within(counts: Counter[str], n: int, pods: int, tol: float = 0.05) -> bool:
    share = n / pods
    return len(counts) == pods and all(abs(v - share) <= tol * share for v in counts.values())
