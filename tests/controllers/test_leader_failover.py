"""Two controller-manager processes on one API server: kill -9 the leader, the standby takes the
Lease within its duration and readiness changes keep reaching EndpointSlices."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from servicenet.testing import running_apiserver

ROOT = Path(__file__).resolve().parents[2]
NS = "default"
LEASE, RENEW, RETRY = 3.0, 2.0, 0.5


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.identity = ""
        self.leading = asyncio.Event()
        self.lines: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.lines.append(line)
            if "became leader" in line:
                m = re.search(r"identity=(\S+)", line)
                self.identity = m.group(1) if m else ""
                self.leading.set()

    async def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.proc.wait(), 10)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def _spawn(kubeconfig: Path) -> Proc:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "servicenet.cli", "controller-manager", "--kubeconfig", str(kubeconfig),
        "--health-listen", "127.0.0.1:0", "--controllers", "endpointslice",
        "--leader-elect-lease-duration", str(LEASE), "--leader-elect-renew-deadline", str(RENEW),
        "--leader-elect-retry-period", str(RETRY), env=env, cwd=str(ROOT),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    return Proc(proc)


async def _poll(fn: Any, timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await fn()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last={last!r})")


async def test_kill_leader_standby_takes_over(tmp_path: Path) -> None:
    async with running_apiserver(tmp_path) as api:
        c = api.client
        await c.create("v1", "nodes", None, {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}})
        await c.create("v1", "services", NS, {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                                              "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
        await c.create("v1", "pods", NS, {"apiVersion": "v1", "kind": "Pod",
                                          "metadata": {"name": "p1", "labels": {"app": "web"}},
                                          "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]}})

        async def set_ready(ready: bool) -> None:
            await c.patch("v1", "pods", NS, "p1", {"status": {
                "phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
                "conditions": [{"type": "Ready", "status": str(ready), "lastTransitionTime": _now()}]}},
                subresource="status")

        def slice_ready(want: bool) -> Any:
            async def check() -> bool:
                res = await c.list("discovery.k8s.io/v1", "endpointslices", NS,
                                   label_selector="kubernetes.io/service-name=web")
                eps = [e for s in res["items"] for e in s.get("endpoints") or []]
                return len(eps) == 1 and bool(eps[0]["conditions"].get("ready")) is want
            return check

        await set_ready(True)
        a = await _spawn(api.kubeconfig)
        procs = [a]
        try:
            await asyncio.wait_for(a.leading.wait(), 30)
            b = await _spawn(api.kubeconfig)
            procs.append(b)
            await _poll(slice_ready(True), 30)
            # b runs but stands by: it never logs "became leader" while a renews
            await asyncio.sleep(LEASE + 1)
            assert not b.leading.is_set(), "two leaders"
            lease = await c.get("coordination.k8s.io/v1", "leases", "kube-system", "kube-controller-manager")
            assert lease["spec"]["holderIdentity"] == a.identity
            transitions = lease["spec"].get("leaseTransitions", 0)

            await a.kill(signal.SIGKILL)
            t0 = time.monotonic()
            await set_ready(False)  # a readiness change while nobody leads
            await asyncio.wait_for(b.leading.wait(), LEASE + 5)
            takeover = time.monotonic() - t0
            await _poll(slice_ready(False), 15)
            reached = time.monotonic() - t0
            print(f"takeover {takeover:.2f}s, readiness reached the slice {reached:.2f}s after kill -9")
            # upstream bound: lease duration + one jittered retry period (plus process noise on a busy CPU)
            assert takeover <= LEASE + RETRY * 1.2 + 1.5, takeover
            lease = await c.get("coordination.k8s.io/v1", "leases", "kube-system", "kube-controller-manager")
            assert lease["spec"]["holderIdentity"] == b.identity
            assert lease["spec"]["leaseTransitions"] == transitions + 1
            await set_ready(True)
            await _poll(slice_ready(True), 15)
            # a clean stop releases the Lease (leaseDurationSeconds 1, empty holder)
            await b.kill(signal.SIGTERM)
            assert b.proc.returncode == 0, "".join(b.lines[-20:])
            lease = await c.get("coordination.k8s.io/v1", "leases", "kube-system", "kube-controller-manager")
            assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseDurationSeconds"]) in (("", 1), (None, 1))
        finally:
            for p in procs:
                await p.kill()
