"""CronJob controller core: a CronJob and the Jobs it owns -> Job creates/deletes + status.

As upstream's CronJob controller (v2): the most recent schedule time that is due (after
``lastScheduleTime``, or the creation time) gets one Job named ``<cronjob>-<minutes since the
epoch>``, unless suspended, past ``startingDeadlineSeconds``, or blocked by the concurrency policy
(``Forbid`` skips while a Job is active, ``Replace`` deletes the active ones first). Finished Jobs
beyond the history limits are deleted, oldest first; the sync is requeued for the next schedule.
"""

from __future__ import annotations

import copy
import zoneinfo
from datetime import UTC, datetime, timedelta

from servicenet.api import cron
from servicenet.api.wire import meta as meta_of

from .actions import (
    Action,
    Event,
    EventIntent,
    Obj,
    Result,
    controller_ref,
    fmt_time,
    meta,
    name_of,
    ns_of,
    parse_time,
    uid_of,
)

SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
MAX_MISSED = 100  # upstream gives up listing missed times past this many


def _job_state(job: Obj) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return str(c["type"])
    return None


def job_name(cj: Obj, scheduled: datetime) -> str:
    return f"{name_of(cj)}-{int(scheduled.timestamp()) // 60}"


def job_from_template(cj: Obj, scheduled: datetime) -> Obj:
    jt = (cj.get("spec") or {}).get("jobTemplate") or {}
    tmd = meta_of(jt)
    md: Obj = {"name": job_name(cj, scheduled), "namespace": ns_of(cj),
               "labels": dict(tmd.get("labels") or {}),
               "annotations": {**(tmd.get("annotations") or {}), SCHEDULED_ANNOTATION: fmt_time(scheduled)},
               "ownerReferences": [controller_ref(cj, "batch/v1", "CronJob")]}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": md, "spec": copy.deepcopy(jt.get("spec") or {})}


def _ref(job: Obj) -> Obj:
    return {"kind": "Job", "namespace": ns_of(job), "name": name_of(job), "uid": uid_of(job),
            "apiVersion": "batch/v1", "resourceVersion": meta(job).get("resourceVersion", "")}


def _zone(cj: Obj) -> zoneinfo.ZoneInfo | None:
    tz = (cj.get("spec") or {}).get("timeZone")
    try:
        return zoneinfo.ZoneInfo(tz) if tz else None
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        return None


def most_recent_due(sched: cron.Schedule, since: datetime, now: datetime, zone: zoneinfo.ZoneInfo | None
                    ) -> tuple[datetime | None, datetime | None, int]:
    """(latest schedule time in (since, now], next one after now, how many were missed), in UTC."""
    tz = zone or UTC
    t = since.astimezone(tz).replace(tzinfo=None)
    end = now.astimezone(tz).replace(tzinfo=None)
    last: datetime | None = None
    missed = 0
    while True:
        nxt = sched.next(t)
        if nxt is None:
            return (last.replace(tzinfo=tz).astimezone(UTC) if last else None), None, missed
        if nxt > end:
            return (last.replace(tzinfo=tz).astimezone(UTC) if last else None), nxt.replace(tzinfo=tz).astimezone(
                UTC), missed
        last, t = nxt, nxt
        missed += 1
        if missed > MAX_MISSED:
            t = end - timedelta(minutes=1)  # skip ahead: only the most recent one matters


def reconcile(cj: Obj, jobs: list[Obj], now: datetime) -> Result:
    """``jobs`` are the Jobs this CronJob controls."""
    spec, old_status = cj.get("spec") or {}, cj.get("status") or {}
    ns = ns_of(cj)
    actions: list[Action] = []
    events: list[Event] = []
    active = [j for j in jobs if _job_state(j) is None]
    status: Obj = {k: v for k, v in old_status.items() if k in ("lastScheduleTime", "lastSuccessfulTime")}
    for j in jobs:
        if _job_state(j) == "Complete":
            done = (j.get("status") or {}).get("completionTime")
            if done and (not status.get("lastSuccessfulTime") or done > status["lastSuccessfulTime"]):
                status["lastSuccessfulTime"] = done
    requeue: float | None = None
    if not meta(cj).get("deletionTimestamp"):
        try:
            sched = cron.parse(spec.get("schedule") or "")
        except cron.CronError as exc:
            events.append(Event(cj, "UnparseableSchedule", f"unparseable schedule: {exc}", "Warning"))
            sched = None
        if sched is not None:
            since = parse_time(old_status.get("lastScheduleTime")) or parse_time(
                meta(cj).get("creationTimestamp")) or now
            due, nxt, _missed = most_recent_due(sched, since, now, _zone(cj))
            if nxt is not None:
                requeue = max(0.1, (nxt - now).total_seconds() + 0.1)
            deadline = spec.get("startingDeadlineSeconds")
            too_late = due is not None and deadline is not None and (now - due).total_seconds() > int(deadline)
            existing = {name_of(j) for j in jobs}
            if due is not None and not spec.get("suspend") and not too_late \
                    and job_name(cj, due) not in existing:
                policy = spec.get("concurrencyPolicy") or "Allow"
                if policy == "Forbid" and active:
                    events.append(Event(cj, "JobAlreadyActive", "Not starting job because prior execution is "
                                        "running and concurrency policy is Forbid"))
                else:
                    if policy == "Replace":
                        for j in active:
                            actions.append(Action("delete", "batch/v1", "jobs", ns, name_of(j),
                                                  body={"propagationPolicy": "Background"},
                                                  event=EventIntent("SuccessfulDelete",
                                                                    f"Deleted job {name_of(j)}")))
                        active = []
                    job = job_from_template(cj, due)
                    actions.append(Action("create", "batch/v1", "jobs", ns, "", job,
                                          event=EventIntent("SuccessfulCreate", "Created job {name}")))
                    status["lastScheduleTime"] = fmt_time(due)
    status["active"] = [_ref(j) for j in sorted(active, key=name_of)]
    if not status["active"]:
        del status["active"]
    # history limits: newest finished jobs are kept
    for state, limit_key, default in (("Complete", "successfulJobsHistoryLimit", 3),
                                      ("Failed", "failedJobsHistoryLimit", 1)):
        limit = spec.get(limit_key)
        limit = default if limit is None else int(limit)
        done = sorted((j for j in jobs if _job_state(j) == state and not meta(j).get("deletionTimestamp")),
                      key=lambda j: ((j.get("status") or {}).get("startTime") or meta(j).get("creationTimestamp")
                                     or "", name_of(j)))
        for j in done[:max(0, len(done) - limit)]:
            actions.append(Action("delete", "batch/v1", "jobs", ns, name_of(j),
                                  body={"propagationPolicy": "Background"},
                                  event=EventIntent("SuccessfulDelete", f"Deleted job {name_of(j)}")))
    if status != {k: v for k, v in old_status.items() if k in ("lastScheduleTime", "lastSuccessfulTime", "active")}:
        actions.append(Action("update_status", "batch/v1", "cronjobs", ns, name_of(cj), {**cj, "status": status}))
    return Result(actions=tuple(actions), events=tuple(events), requeue_after=requeue)
