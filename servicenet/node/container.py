"""One container of a pod: start, supervise (restart + CrashLoopBackOff), probe, stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from servicenet.api.timefmt import format_rfc3339
from servicenet.api.views import Obj
from servicenet.common import log
from servicenet.node import prober, restart
from servicenet.node import probes as pr
from servicenet.node.host import ContainerHost
from servicenet.node.process import ContainerProcess
from servicenet.node.status import running_state, terminated_state, waiting_state

__all__ = ["ContainerRun", "now_str"]

_log = log.get("node.container")


def now_str() -> str:
    return format_rfc3339(datetime.now(UTC))


@dataclass
class ContainerRun:
    """Mutable runtime state of one container; ``status()`` renders its containerStatus."""

    spec: Obj
    init: bool = False
    state: Obj = field(default_factory=lambda: waiting_state("ContainerCreating"))
    last_state: Obj = field(default_factory=dict)
    restart_count: int = 0
    backoff_count: int = 0
    ready: bool = False
    started: bool = False
    proc: ContainerProcess | None = None
    started_mono: float = 0.0
    env: dict[str, str] = field(default_factory=dict)
    done: bool = False  # finished for good (init success, or policy says no restart)
    log_path: str = ""
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return self.spec["name"]

    def status(self) -> Obj:
        s: Obj = {"name": self.name, "image": self.spec.get("image", ""), "imageID": "",
                  "ready": self.ready, "restartCount": self.restart_count, "state": self.state,
                  "lastState": self.last_state}
        if self.proc is not None:
            s["containerID"] = f"servicenet://{self.proc.pid}"
        s["started"] = self.started
        return s


async def probe_loop(worker: ContainerHost, run: ContainerRun, proc: ContainerProcess) -> None:
    """Drive the startup, then readiness + liveness probes of one container run."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    specs = {k: pr.ProbeSpec.from_container(run.spec, k) for k in pr.ProbeKind}
    trackers = {k: pr.ProbeTracker(s, start) for k, s in specs.items() if s is not None}
    startup = trackers.pop(pr.ProbeKind.STARTUP, None)
    if startup is None:
        run.started = True
        if pr.ProbeKind.READINESS not in trackers:
            run.ready = True
        worker.mark_dirty()
    while True:
        active = [startup] if (startup is not None and not run.started) else list(trackers.values())
        if not active:
            return
        due = min(t.due() for t in active)
        await asyncio.sleep(max(0.0, due - loop.time()))
        for t in [t for t in active if t.due() <= loop.time() + 0.001]:
            ok, msg = await prober.run_probe(t.spec, run.spec, worker.pod_ip(), worker.runtime.network.connect,
                                         lambda argv, to: worker.exec_probe(run, argv, to))
            flipped = t.observe(ok, loop.time())
            if not ok:
                worker.event("Warning", "Unhealthy", f"{_probe_word(t.spec.kind)} probe failed: {msg}")
            if flipped is None:
                continue
            kind = t.spec.kind
            if kind is pr.ProbeKind.STARTUP and flipped:
                run.started = True
                if pr.ProbeKind.READINESS not in trackers:
                    run.ready = True
                for other in trackers.values():  # probes start once the container has started
                    other._due = loop.time() + other.spec.initial_delay
            elif kind is pr.ProbeKind.READINESS:
                run.ready = flipped
            elif not flipped:  # liveness or startup failure: restart the container
                worker.event("Normal", "Killing",
                             f"Container {run.name} failed {_probe_word(kind).lower()} probe, will be restarted")
                await stop_process(worker, run, proc, worker.grace_seconds(), pre_stop=True)
                return
            worker.mark_dirty()


def _probe_word(kind: pr.ProbeKind) -> str:
    return {"readinessProbe": "Readiness", "livenessProbe": "Liveness", "startupProbe": "Startup"}[kind.value]


async def stop_process(worker: ContainerHost, run: ContainerRun, proc: ContainerProcess, grace: float,
                       pre_stop: bool) -> None:
    """preStop hook, SIGTERM, wait up to ``grace`` seconds in total, then SIGKILL."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    hook = ((run.spec.get("lifecycle") or {}).get("preStop") or {}) if pre_stop else {}
    if hook and proc.alive():
        with contextlib.suppress(TimeoutError, OSError, ValueError):
            async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                await run_hook(worker, run, hook)
    if proc.alive():
        proc.kill(signal.SIGTERM)
    try:
        async with asyncio.timeout(max(deadline - loop.time(), 0.0)):
            await proc.wait()
    except TimeoutError:
        proc.kill(signal.SIGKILL)
        await proc.wait()


async def run_hook(worker: ContainerHost, run: ContainerRun, hook: Obj) -> None:
    if "exec" in hook:
        await worker.exec_probe(run, list(hook["exec"].get("command") or []), 3600.0)
    elif "httpGet" in hook:
        spec = pr.ProbeSpec(kind=pr.ProbeKind.LIVENESS, handler={"httpGet": hook["httpGet"]}, timeout=3600.0)
        await prober.run_probe(spec, run.spec, worker.pod_ip(), worker.runtime.network.connect,
                           lambda argv, to: worker.exec_probe(run, argv, to))
    elif "sleep" in hook:
        await asyncio.sleep(float(hook["sleep"].get("seconds") or 0))


async def supervise(worker: ContainerHost, run: ContainerRun, start: Callable[[ContainerRun], Awaitable[bool]],
                    adopted: ContainerProcess | None = None) -> None:
    """Run a container until the pod terminates or the restart policy lets it rest."""
    policy = restart.effective_policy((worker.pod.get("spec") or {}).get("restartPolicy"), run.init)
    backoff = worker.runtime.cfg.backoff
    loop = asyncio.get_running_loop()
    first = True
    while not worker.terminating:
        if first and adopted is not None:
            run.proc = adopted
            run.started_mono = loop.time()
        elif not await start(run):
            return
        first = False
        proc = run.proc
        assert proc is not None
        probes = None if run.init else asyncio.create_task(probe_loop(worker, run, proc))
        try:
            code = await proc.wait()
        finally:
            if probes is not None:
                probes.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await probes
        ran_for = loop.time() - run.started_mono
        started_at = (run.state.get("running") or {}).get("startedAt")
        run.ready = False
        run.started = False
        if code is None:
            term = terminated_state(0, started_at, now_str(), reason="Unknown",
                                    message="exit status lost while the node agent was down")
            code = 0
        else:
            term = terminated_state(code, started_at, now_str(), signal=proc.term_signal,
                                    container_id=f"servicenet://{proc.pid}")
        run.state = term
        worker.mark_dirty()
        worker.save_state()
        if worker.terminating:
            return
        decision = restart.decide(policy, code, ran_for, run.backoff_count, backoff)
        if decision.action is restart.Restart.NEVER:
            run.done = True
            worker.container_finished(run)
            return
        delay = decision.delay
        run.last_state = term
        if delay > 0:
            pod = worker.pod["metadata"]
            msg = (f"back-off {delay:g}s restarting failed container={run.name} "
                   f"pod={pod['name']}_{pod.get('namespace', '')}({pod.get('uid', '')})")
            run.state = waiting_state("CrashLoopBackOff", msg)
            worker.mark_dirty()
            worker.event("Warning", "BackOff", "Back-off restarting failed container "
                         f"{run.name} in pod {pod['name']}_{pod.get('namespace', '')}({pod.get('uid', '')})")
            run._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await run._wake.wait()  # set when the pod starts terminating
            if worker.terminating:
                return
        run.backoff_count = decision.backoff_count
        run.restart_count += 1


def mark_running(run: ContainerRun, proc: ContainerProcess) -> None:
    run.proc = proc
    run.state = running_state(now_str())
    run.started_mono = asyncio.get_running_loop().time()
    run.started = False
    run.ready = False


def log_file(base: str, run: ContainerRun) -> str:
    return os.path.join(base, run.name, f"{run.restart_count}.log")


def wall() -> float:
    return time.time()
