"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

Pure part: :func:`try_acquire_or_renew` looks at the Lease as read (or ``None``), what this
candidate last observed, and the clocks, and says what to write (create / update) or that
another holder is live. As client-go, a holder's validity is judged by the *observer's*
monotonic clock: the record counts as live until ``observed_at + leaseDurationSeconds``, where
``observed_at`` is when this candidate last saw the record change; ``renewTime`` written by
another machine is never compared with the local clock. Taking over bumps
``leaseTransitions``; renewing keeps ``acquireTime``.

Shell: :class:`LeaderElector` (acquire, renew every ``retry_period``, give up when a renew has
not succeeded for ``renew_deadline``, release on exit with ``leaseDurationSeconds: 1``) and
:class:`LeaderElected`, a Component wrapper that starts the inner component only while leading
and ends the process (SIGTERM to itself, ``lost`` set) when leadership is lost, as upstream's
controller manager exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from servicenet.client.rest import ApiClient, ApiError
from servicenet.common import log
from servicenet.common.component import bounded

API_VERSION = "coordination.k8s.io/v1"
JITTER = 1.2
_log = log.get("leaderelection")


@dataclass(frozen=True, slots=True)
class Config:
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def check(self) -> None:
        if not self.lease_duration > self.renew_deadline > JITTER * self.retry_period > 0:
            raise ValueError("need leaseDuration > renewDeadline > 1.2 * retryPeriod > 0 "
                             f"(got {self.lease_duration}, {self.renew_deadline}, {self.retry_period})")


@dataclass(frozen=True, slots=True)
class Observed:
    """The record this candidate last saw, and its own monotonic time when that record changed."""

    spec: dict[str, Any]
    at: float


@dataclass(frozen=True, slots=True)
class Step:
    """What to do: ``create``/``update`` the Lease with ``spec``, or ``wait`` (someone else leads)."""

    op: str  # "create" | "update" | "wait"
    spec: dict[str, Any]
    observed: Observed | None
    holder: str = ""


def micro_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def try_acquire_or_renew(current: dict[str, Any] | None, observed: Observed | None, me: str, duration: float,
                         mono: float, wall: datetime) -> Step:
    """One attempt (pure). ``current`` is the Lease's spec as just read (None: no Lease)."""
    stamp = micro_time(wall)
    secs = max(1, round(duration))
    if current is None:
        spec = {"holderIdentity": me, "leaseDurationSeconds": secs, "acquireTime": stamp, "renewTime": stamp,
                "leaseTransitions": 0}
        return Step("create", spec, Observed(spec, mono))
    if observed is None or observed.spec != current:
        observed = Observed(dict(current), mono)
    holder = current.get("holderIdentity") or ""
    live_for = float(current.get("leaseDurationSeconds") or 0)
    if holder and holder != me and observed.at + live_for > mono:
        return Step("wait", dict(current), observed, holder)
    transitions = int(current.get("leaseTransitions") or 0)
    if holder == me:
        spec = {**current, "leaseDurationSeconds": secs, "renewTime": stamp}
        spec.setdefault("acquireTime", stamp)
    else:
        spec = {**current, "holderIdentity": me, "leaseDurationSeconds": secs, "acquireTime": stamp,
                "renewTime": stamp, "leaseTransitions": transitions + 1}
    return Step("update", spec, observed, me)


def released(current: dict[str, Any], me: str, wall: datetime) -> dict[str, Any] | None:
    """The record written when the holder steps down (None: not ours to release)."""
    if current.get("holderIdentity") != me:
        return None
    stamp = micro_time(wall)
    return {**current, "holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": stamp, "renewTime": stamp}


class LeaderElector:
    def __init__(self, client: ApiClient, namespace: str, name: str, identity: str | None = None, *,
                 config: Config = Config(), mono: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        config.check()
        self.client, self.namespace, self.name = client, namespace, name
        self.identity = identity or default_identity()
        self.config = config
        self._mono, self._wall = mono, wall
        self._observed: Observed | None = None
        self._lease: dict[str, Any] | None = None  # the whole Lease object last written/read
        self.is_leader = False
        self.leader = ""  # the holder this candidate last saw

    async def try_once(self) -> bool:
        """One acquire-or-renew attempt; True when this candidate holds the Lease afterwards."""
        lease: dict[str, Any] | None
        try:
            lease = await self.client.get(API_VERSION, "leases", self.namespace, self.name)
        except ApiError as exc:
            if exc.status != 404:
                raise
            lease = None
        step = try_acquire_or_renew((lease or {}).get("spec") if lease else None, self._observed, self.identity,
                                    self.config.lease_duration, self._mono(), self._wall())
        self._observed = step.observed
        self.leader = step.holder or self.leader
        if step.op == "wait":
            self.is_leader = False
            return False
        try:
            if step.op == "create":
                body = {"apiVersion": API_VERSION, "kind": "Lease",
                        "metadata": {"name": self.name, "namespace": self.namespace}, "spec": step.spec}
                out = await self.client.create(API_VERSION, "leases", self.namespace, body)
            else:
                assert lease is not None
                out = await self.client.update(API_VERSION, "leases", self.namespace, self.name,
                                               {**lease, "spec": step.spec})
        except ApiError as exc:
            if exc.status in (409, 404):
                self.is_leader = False
                return False  # somebody else wrote first: look again next round
            raise
        self._lease = out
        self._observed = Observed(dict(out.get("spec") or {}), self._mono())
        self.is_leader, self.leader = True, self.identity
        return True

    async def _sleep_jittered(self) -> None:
        await asyncio.sleep(self.config.retry_period * random.uniform(1.0, JITTER))

    async def acquire(self) -> None:
        """Return once this candidate leads (retrying every retry period, jittered)."""
        while True:
            try:
                if await self.try_once():
                    _log.info("became leader", lease=f"{self.namespace}/{self.name}", identity=self.identity)
                    return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("leader election attempt failed", error=repr(exc))
            await self._sleep_jittered()

    async def hold(self) -> None:
        """Renew every retry period; return when a renew has not succeeded for ``renew_deadline``."""
        last_ok = self._mono()
        while True:
            await asyncio.sleep(self.config.retry_period)
            try:
                if await bounded(self.try_once(), self.config.renew_deadline):
                    last_ok = self._mono()
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("lease renew failed", error=repr(exc))
            if not self.is_leader or self._mono() - last_ok >= self.config.renew_deadline:
                self.is_leader = False
                _log.warning("leaderelection lost", lease=f"{self.namespace}/{self.name}", identity=self.identity)
                return

    async def release(self) -> None:
        """Step down (only if still the holder), so a standby takes over at once."""
        if not self.is_leader:
            return
        self.is_leader = False
        with contextlib.suppress(Exception):
            lease = await self.client.get(API_VERSION, "leases", self.namespace, self.name)
            spec = released(lease.get("spec") or {}, self.identity, self._wall())
            if spec is not None:
                await self.client.update(API_VERSION, "leases", self.namespace, self.name, {**lease, "spec": spec})


class LeaderElected:
    """Runs ``inner`` only while ``elector`` leads; losing the lease ends the process."""

    def __init__(self, inner: Any, elector: LeaderElector) -> None:
        self.inner = inner
        self.elector = elector
        self.name = getattr(inner, "name", "component")
        self.lost = False
        self._task: asyncio.Task[None] | None = None
        self._started = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"leader election {self.name}")

    async def _run(self) -> None:
        await self.elector.acquire()
        await self.inner.start()
        self._started = True
        await self.elector.hold()
        self.lost = True
        os.kill(os.getpid(), signal.SIGTERM)  # upstream exits; run_until_signal stops us cleanly

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._started:
            await self.inner.stop()
            self._started = False
        await self.elector.release()

    def describe(self) -> dict[str, str]:
        d = {"identity": self.elector.identity, "lease": f"{self.elector.namespace}/{self.elector.name}"}
        if self._started:
            d.update(self.inner.describe())
        return d


# -- command-line wiring -------------------------------------------------------------------------------


def _bool(s: str) -> bool:
    if s.lower() in ("true", "1", "yes"):
        return True
    if s.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def add_flags(p: argparse.ArgumentParser, default_name: str) -> None:
    """kube-controller-manager's --leader-elect* flags (defaults 15 s / 10 s / 2 s, Lease in kube-system)."""
    p.add_argument("--leader-elect", type=_bool, nargs="?", const=True, default=True,
                   help="run only while holding the Lease (default true)")
    p.add_argument("--leader-elect-lease-duration", type=float, default=15.0)
    p.add_argument("--leader-elect-renew-deadline", type=float, default=10.0)
    p.add_argument("--leader-elect-retry-period", type=float, default=2.0)
    p.add_argument("--leader-elect-resource-namespace", default="kube-system")
    p.add_argument("--leader-elect-resource-name", default=None, help=f"Lease name (default {default_name}; "
                   "kube-scheduler when --controllers=scheduler)")
    p.set_defaults(le_default_name=default_name)


def wrap(component: Any, client: ApiClient, args: argparse.Namespace) -> Any:
    """``component`` behind leader election when --leader-elect, else as is."""
    if not args.leader_elect:
        return component
    name = args.leader_elect_resource_name or (
        "kube-scheduler" if getattr(args, "controllers", "") == "scheduler" else args.le_default_name)
    cfg = Config(args.leader_elect_lease_duration, args.leader_elect_renew_deadline, args.leader_elect_retry_period)
    return LeaderElected(component, LeaderElector(client, args.leader_elect_resource_namespace, name, config=cfg))
