"""Pod status as the kubelet computes it: phase, conditions, container statuses, restart backoff.

Pure: the runtime hands in container status dicts it built with the helpers below and gets
back the ``status`` to write.  Timestamps are passed in as RFC 3339 strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servicenet.api.views import Obj

__all__ = [
    "Backoff",
    "compute_pod_status",
    "pod_phase",
    "running_state",
    "terminated_state",
    "waiting_state",
]

KUBELET_CONDITIONS = ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready")


def waiting_state(reason: str, message: str = "") -> Obj:
    w: Obj = {"reason": reason}
    if message:
        w["message"] = message
    return {"waiting": w}


def running_state(started_at: str) -> Obj:
    return {"running": {"startedAt": started_at}}


def terminated_state(exit_code: int, started_at: str | None, finished_at: str, reason: str | None = None,
                     message: str = "", signal: int | None = None, container_id: str = "") -> Obj:
    t: Obj = {"exitCode": exit_code,
              "reason": reason or ("Completed" if exit_code == 0 else "Error")}
    if signal:
        t["signal"] = signal
    if message:
        t["message"] = message
    t["startedAt"] = started_at
    t["finishedAt"] = finished_at
    if container_id:
        t["containerID"] = container_id
    return {"terminated": t}


@dataclass(frozen=True, slots=True)
class Backoff:
    """CrashLoopBackOff: the first restart is immediate, then ``base`` doubling up to ``cap``.

    ``count`` is how many restarts have happened since the backoff was last reset; a container
    that ran for ``reset_after`` seconds resets it.
    """

    base: float = 10.0
    cap: float = 300.0
    reset_after: float = 600.0

    def delay(self, count: int) -> float:
        if count <= 0:
            return 0.0
        return min(self.base * (2 ** (count - 1)), self.cap)

    def next_count(self, count: int, ran_for: float) -> int:
        """The backoff count after a container that ran ``ran_for`` seconds exited."""
        return 0 if ran_for >= self.reset_after else count


def _terminated_of(cs: Obj) -> Obj | None:
    return (cs.get("state") or {}).get("terminated")


def _has_run(cs: Obj) -> bool:
    return bool((cs.get("lastState") or {}).get("terminated"))


def pod_phase(spec: Obj, init_statuses: list[Obj], statuses: list[Obj]) -> str:
    """The pod phase from container statuses (upstream ``getPhase``, without sidecars)."""
    policy = spec.get("restartPolicy") or "Always"
    for cs in init_statuses:
        t = _terminated_of(cs)
        if t is not None and t.get("exitCode") == 0:
            continue
        if t is not None and policy == "Never":
            return "Failed"
        return "Pending"
    n = len(spec.get("containers") or [])
    running = waiting = stopped = succeeded = 0
    for cs in statuses:
        st = cs.get("state") or {}
        if "running" in st:
            running += 1
        elif "terminated" in st:
            stopped += 1
            if st["terminated"].get("exitCode") == 0:
                succeeded += 1
        elif _has_run(cs):
            stopped += 1
            if cs["lastState"]["terminated"].get("exitCode") == 0:
                succeeded += 1
        else:
            waiting += 1
    waiting += n - len(statuses)
    if waiting > 0:
        return "Pending"
    if running > 0:
        return "Running"
    if stopped == n:
        if policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if policy == "Never" else "Running"
    return "Running" if policy == "Always" else "Pending"


def _cond(ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
    c: Obj = {"type": ctype, "status": "True" if ok else "False"}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def _names(statuses: list[Obj], pred: Any) -> list[str]:
    return [cs["name"] for cs in statuses if pred(cs)]


def compute_pod_status(pod: Obj, *, init_statuses: list[Obj], statuses: list[Obj], pod_ips: list[str],
                       host_ip: str, sandbox_ready: bool, start_time: str, now: str,
                       message: str = "", reason: str = "") -> Obj:
    """The full ``status`` the kubelet would write for this pod right now.

    Conditions owned by others (``PodScheduled``, readiness gates, ``DisruptionTarget``...) are
    kept from the pod's current status; ``lastTransitionTime`` only moves when a status flips.
    """
    spec = pod.get("spec") or {}
    old = pod.get("status") or {}
    old_conds = {c["type"]: c for c in old.get("conditions") or []}
    phase = pod_phase(spec, init_statuses, statuses)

    pending_init = _names(init_statuses, lambda cs: (_terminated_of(cs) or {}).get("exitCode") != 0)
    initialized = _cond("Initialized", not pending_init, *(
        ("ContainersNotInitialized", f"containers with incomplete status: [{' '.join(pending_init)}]")
        if pending_init else ()))
    listed = {cs["name"] for cs in statuses}
    unready = [c["name"] for c in spec.get("containers") or []
               if c["name"] not in listed or not next(cs for cs in statuses if cs["name"] == c["name"]).get("ready")]
    if phase == "Succeeded":
        containers_ready = _cond("ContainersReady", False, "PodCompleted")
        ready = _cond("Ready", False, "PodCompleted")
    else:
        containers_ready = _cond("ContainersReady", not unready, *(
            ("ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]") if unready else ()))
        gate_msgs = []
        for gate in spec.get("readinessGates") or []:
            ctype = gate["conditionType"]
            c = old_conds.get(ctype)
            if c is None:
                gate_msgs.append(f'corresponding condition of pod readiness gate "{ctype}" does not exist.')
            elif c.get("status") != "True":
                gate_msgs.append(f'the status of pod readiness gate "{ctype}" is not "True", but {c.get("status")}')
        if unready:
            msg = f"containers with unready status: [{' '.join(unready)}]"
            if gate_msgs:
                msg += ", " + ", ".join(gate_msgs)
            ready = _cond("Ready", False, "ContainersNotReady", msg)
        elif gate_msgs:
            ready = _cond("Ready", False, "ReadinessGatesNotReady", ", ".join(gate_msgs))
        else:
            ready = _cond("Ready", True)
    mine = [_cond("PodReadyToStartContainers", sandbox_ready), initialized, containers_ready, ready]
    conditions: list[Obj] = []
    if "PodScheduled" not in old_conds:
        conditions.append(_cond("PodScheduled", True))
    for c in old.get("conditions") or []:
        if c["type"] not in KUBELET_CONDITIONS:
            conditions.append(c)
    for c in mine:
        prev = old_conds.get(c["type"])
        c["lastProbeTime"] = None
        c["lastTransitionTime"] = (prev.get("lastTransitionTime") if prev and prev.get("status") == c["status"]
                                   else now)
        conditions.append(c)
    for c in conditions:
        if c["type"] == "PodScheduled" and "lastTransitionTime" not in c:
            c["lastTransitionTime"] = now
            c["lastProbeTime"] = None
    status: Obj = {"phase": phase, "conditions": conditions}
    if message:
        status["message"] = message
    if reason:
        status["reason"] = reason
    if host_ip:
        status["hostIP"] = host_ip
        status["hostIPs"] = [{"ip": host_ip}]
    if pod_ips:
        status["podIP"] = pod_ips[0]
        status["podIPs"] = [{"ip": ip} for ip in pod_ips]
    status["startTime"] = start_time
    if init_statuses:
        status["initContainerStatuses"] = init_statuses
    status["containerStatuses"] = statuses
    status["qosClass"] = old.get("qosClass") or qos_class(spec)
    return status


def qos_class(spec: Obj) -> str:
    """BestEffort / Burstable / Guaranteed from the containers' requests and limits."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim or (r in req and str(req[r]) != str(lim[r])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
