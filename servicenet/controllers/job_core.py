"""Job controller core: a Job and the pods it controls -> pod creates/deletes, status, TTL deletion.

Follows upstream's ``syncJob`` for NonIndexed jobs: keep ``min(parallelism, completions -
succeeded)`` pods active; a pod that ends Succeeded counts towards ``completions`` (or, with no
completions set, the first success completes the job); failed pods, and container restarts of
``OnFailure`` pods, count towards ``backoffLimit``. When the job is done, active pods are removed
and the ``Complete`` (after ``SuccessCriteriaMet``) or ``Failed`` (after ``FailureTarget``)
condition is set; ``activeDeadlineSeconds`` fails it with ``DeadlineExceeded``. A finished job
with ``ttlSecondsAfterFinished`` is deleted (background propagation) that long after it finished.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .actions import (
    Action,
    EventIntent,
    Obj,
    Result,
    fmt_time,
    is_pod_ready,
    is_terminating,
    meta,
    name_of,
    ns_of,
    parse_time,
)
from .replicaset_core import pod_from_template

BURST = 500
JOB_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def _phase(p: Obj) -> str:
    return (p.get("status") or {}).get("phase") or "Pending"


def _restarts(p: Obj) -> int:
    return sum(int(c.get("restartCount") or 0) for c in (p.get("status") or {}).get("containerStatuses") or [])


def _condition(job: Obj, ctype: str) -> Obj | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == "True":
            return c
    return None


def finished(job: Obj) -> str | None:
    """``Complete`` or ``Failed`` when the job has finished, else None."""
    for t in ("Complete", "Failed"):
        if _condition(job, t) is not None:
            return t
    return None


def _cond(ctype: str, reason: str, message: str, now: str) -> Obj:
    return {"type": ctype, "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}


def _ttl_action(job: Obj, now: datetime) -> tuple[list[Action], float | None]:
    ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
    if ttl is None or meta(job).get("deletionTimestamp"):
        return [], None
    done = parse_time((job.get("status") or {}).get("completionTime"))
    if done is None:
        c = _condition(job, "Complete") or _condition(job, "Failed") or {}
        done = parse_time(c.get("lastTransitionTime"))
    if done is None:
        return [], None
    left = (done + timedelta(seconds=int(ttl)) - now).total_seconds()
    if left > 0:
        return [], left
    return [Action("delete", "batch/v1", "jobs", ns_of(job), name_of(job),
                   body={"propagationPolicy": "Background"})], None


def reconcile(job: Obj, pods: list[Obj], now: datetime) -> Result:
    """``pods`` are the pods this Job controls (controller ownerRef), in any state."""
    spec, old_status = job.get("spec") or {}, job.get("status") or {}
    ns, name = ns_of(job), name_of(job)
    now_s = fmt_time(now)
    if finished(job):
        # done: remove what still runs, then wait for the TTL
        actions = [Action("delete", "v1", "pods", ns, name_of(p)) for p in pods
                   if _phase(p) not in ("Succeeded", "Failed") and not is_terminating(p)]
        ttl, requeue = _ttl_action(job, now)
        return Result(actions=tuple(actions + ttl), requeue_after=requeue)

    active = [p for p in pods if _phase(p) not in ("Succeeded", "Failed") and not is_terminating(p)]
    succeeded = sum(1 for p in pods if _phase(p) == "Succeeded")
    failed = sum(1 for p in pods if _phase(p) == "Failed")
    restarts = sum(_restarts(p) for p in pods) if (
        ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") == "OnFailure") else 0
    completions = spec.get("completions")
    parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
    backoff = int(spec.get("backoffLimit", 6) if spec.get("backoffLimit") is not None else 6)
    suspended = bool(spec.get("suspend"))
    start = old_status.get("startTime") or (None if suspended else now_s)

    status: Obj = {k: v for k, v in old_status.items() if k in ("conditions", "completionTime")}
    if start:
        status["startTime"] = start
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Suspended"]
    actions: list[Action] = []
    events: list[EventIntent] = []
    requeue: float | None = None
    done: str | None = None
    if completions is not None and succeeded >= int(completions) or completions is None and succeeded > 0 \
            and not active:
        done = "Complete"
        msg = "Reached expected number of succeeded pods"
        conditions.append(_cond("SuccessCriteriaMet", "CompletionsReached", msg, now_s))
        conditions.append(_cond("Complete", "CompletionsReached", msg, now_s))
        status["completionTime"] = now_s
        events.append(EventIntent("Completed", "Job completed"))
    elif failed + restarts > backoff:
        done = "Failed"
        msg = "Job has reached the specified backoff limit"
        conditions.append(_cond("FailureTarget", "BackoffLimitExceeded", msg, now_s))
        conditions.append(_cond("Failed", "BackoffLimitExceeded", msg, now_s))
        events.append(EventIntent("BackoffLimitExceeded", msg, "Warning"))
    else:
        ads = spec.get("activeDeadlineSeconds")
        st = parse_time(start)
        if ads is not None and st is not None:
            left = (st + timedelta(seconds=int(ads)) - now).total_seconds()
            if left <= 0:
                done = "Failed"
                msg = "Job was active longer than specified deadline"
                conditions.append(_cond("FailureTarget", "DeadlineExceeded", msg, now_s))
                conditions.append(_cond("Failed", "DeadlineExceeded", msg, now_s))
                events.append(EventIntent("DeadlineExceeded", msg, "Warning"))
            else:
                requeue = left
    if done:
        for p in active:
            actions.append(Action("delete", "v1", "pods", ns, name_of(p)))
    elif suspended:
        conditions.append(_cond("Suspended", "JobSuspended", "Job suspended", now_s))
        for p in active:
            actions.append(Action("delete", "v1", "pods", ns, name_of(p)))
    else:
        want = parallelism
        if completions is not None:
            want = min(parallelism, int(completions) - succeeded)
        elif succeeded > 0:
            want = 0  # a success ends a work-queue job once the others finish
        diff = want - len(active)
        tmpl = spec.get("template") or {}
        for _ in range(max(0, min(diff, BURST))):
            body = pod_from_template(job, tmpl, "Job", "batch/v1")
            actions.append(Action("create", "v1", "pods", ns, "", body,
                                  event=EventIntent("SuccessfulCreate", "Created pod: {name}")))
        if diff < 0:
            newest = sorted(active, key=lambda p: meta(p).get("creationTimestamp") or "", reverse=True)
            for p in newest[:-diff]:
                actions.append(Action("delete", "v1", "pods", ns, name_of(p),
                                      event=EventIntent("SuccessfulDelete", f"Deleted pod: {name_of(p)}")))
    if conditions:
        status["conditions"] = conditions
    if active and not (done or suspended):  # omitted when zero, as upstream's JSON
        status["active"] = len(active)
    status["ready"] = 0 if done or suspended else sum(1 for p in active if is_pod_ready(p))
    status["terminating"] = sum(1 for p in pods if is_terminating(p))
    if succeeded:
        status["succeeded"] = succeeded
    if failed:
        status["failed"] = failed
    status["uncountedTerminatedPods"] = {}
    # the finishing event rides on the status write (which carries the resourceVersion), so a
    # sync that raced with it and saw the job unfinished does not record it twice
    if _status_differs(old_status, status) or events:
        actions.append(Action("update_status", "batch/v1", "jobs", ns, name, {**job, "status": status},
                              event=events[0] if events else None))
    return Result(actions=tuple(actions), requeue_after=requeue)


def _status_differs(old: Obj, new: Obj) -> bool:
    keys = set(old) | set(new)
    return any(old.get(k) != new.get(k) for k in keys if k != "conditions") or \
        [(c.get("type"), c.get("status")) for c in old.get("conditions") or []] != \
        [(c.get("type"), c.get("status")) for c in new.get("conditions") or []]
