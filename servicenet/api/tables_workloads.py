"""Table columns and rows of ReplicationController, DaemonSet, Job, CronJob and ServiceAccount,
cell for cell like upstream's printers (``pkg/printers/internalversion/printers.go``).

Merged into :mod:`servicenet.api.tables`' registries; column descriptions are our own wording.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from servicenet.api.selectors import format_labels, label_selector_from_dict
from servicenet.api.table_cells import AGE as _AGE
from servicenet.api.table_cells import CONTAINERS as _CONTAINERS
from servicenet.api.table_cells import IMAGES as _IMAGES
from servicenet.api.table_cells import NAME as _NAME
from servicenet.api.table_cells import Obj, Row
from servicenet.api.table_cells import col as _col
from servicenet.api.table_cells import containers as _containers
from servicenet.api.table_cells import md as _md
from servicenet.api.table_cells import spec as _spec
from servicenet.api.table_cells import status as _status
from servicenet.api.timefmt import human_duration, parse_rfc3339, translate_timestamp_since

_SELECTOR = _col("Selector", desc="Label selector of the pods.", prio=1)

COLUMNS: dict[str, list[dict[str, Any]]] = {
    "ReplicationController": [
        _NAME,
        _col("Desired", "integer", desc="Desired number of pods."),
        _col("Current", "integer", desc="Pods currently owned."),
        _col("Ready", "integer", desc="Ready pods."),
        _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
    ],
    "DaemonSet": [
        _NAME,
        _col("Desired", "integer", desc="Nodes that should run the daemon pod."),
        _col("Current", "integer", desc="Nodes running at least one daemon pod."),
        _col("Ready", "integer", desc="Nodes whose daemon pod is ready."),
        _col("Up-to-date", "integer", desc="Nodes running the latest template."),
        _col("Available", "integer", desc="Nodes whose daemon pod is available."),
        _col("Node Selector", desc="Node labels a node needs to run the pod."),
        _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
    ],
    "Job": [
        _NAME,
        _col("Status", desc="Summarised state of the job."),
        _col("Completions", desc="Succeeded pods out of the required completions."),
        _col("Duration", desc="Time the job ran (or has been running)."),
        _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
    ],
    "CronJob": [
        _NAME,
        _col("Schedule", desc="Cron schedule of the job."),
        _col("Timezone", desc="Time zone the schedule is read in."),
        _col("Suspend", "boolean", desc="Whether new runs are suspended."),
        _col("Active", "integer", desc="Jobs currently running."),
        _col("Last Schedule", desc="Time since the job was last scheduled."),
        _AGE, _CONTAINERS, _IMAGES, _SELECTOR,
    ],
    "ServiceAccount": [_NAME, _col("Secrets", "integer", desc="Secrets listed by the account."), _AGE],
}


def format_label_selector(sel: Mapping[str, Any] | None) -> str:
    """``metav1.FormatLabelSelector``: ``<none>`` when absent or empty, ``<error>`` when invalid."""
    if sel is None:
        return "<none>"
    try:
        s = str(label_selector_from_dict(sel))
    except Exception:
        return "<error>"
    return s or "<none>"


def _int(v: Any) -> int:
    return int(v) if isinstance(v, int) else 0


def _replicationcontroller(o: Obj, now: datetime) -> Row:
    spec, st = _spec(o), _status(o)
    names, images = _containers(((spec.get("template") or {}).get("spec")) or {})
    return [_md(o).get("name", ""), _int(spec.get("replicas", 1)), _int(st.get("replicas")),
            _int(st.get("readyReplicas")), translate_timestamp_since(_md(o).get("creationTimestamp"), now),
            names, images, format_labels(spec.get("selector"))], None


def _daemonset(o: Obj, now: datetime) -> Row:
    spec, st = _spec(o), _status(o)
    pod_spec = ((spec.get("template") or {}).get("spec")) or {}
    names, images = _containers(pod_spec)
    return [_md(o).get("name", ""), _int(st.get("desiredNumberScheduled")), _int(st.get("currentNumberScheduled")),
            _int(st.get("numberReady")), _int(st.get("updatedNumberScheduled")), _int(st.get("numberAvailable")),
            format_labels(pod_spec.get("nodeSelector")),
            translate_timestamp_since(_md(o).get("creationTimestamp"), now), names, images,
            format_label_selector(spec.get("selector"))], None


def _has_condition(o: Obj, ctype: str) -> bool:
    return any(c.get("type") == ctype and c.get("status") == "True" for c in _status(o).get("conditions") or [])


def job_status_word(o: Obj) -> str:
    if _has_condition(o, "Complete"):
        return "Complete"
    if _has_condition(o, "Failed"):
        return "Failed"
    if _md(o).get("deletionTimestamp"):
        return "Terminating"
    for c in ("Suspended", "FailureTarget", "SuccessCriteriaMet"):
        if _has_condition(o, c):
            return c
    return "Running"


def _job(o: Obj, now: datetime) -> Row:
    spec, st = _spec(o), _status(o)
    succeeded = _int(st.get("succeeded"))
    if spec.get("completions") is not None:
        completions = f"{succeeded}/{_int(spec.get('completions'))}"
    elif _int(spec.get("parallelism")) > 1:
        completions = f"{succeeded}/1 of {_int(spec.get('parallelism'))}"
    else:
        completions = f"{succeeded}/1"
    start, end = parse_rfc3339(st.get("startTime")), parse_rfc3339(st.get("completionTime"))
    duration = ""
    if start is not None:
        duration = human_duration((end or now) - start)
    names, images = _containers(((spec.get("template") or {}).get("spec")) or {})
    return [_md(o).get("name", ""), job_status_word(o), completions, duration,
            translate_timestamp_since(_md(o).get("creationTimestamp"), now), names, images,
            format_label_selector(spec.get("selector"))], None


def _cronjob(o: Obj, now: datetime) -> Row:
    spec, st = _spec(o), _status(o)
    jspec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    names, images = _containers(((jspec.get("template") or {}).get("spec")) or {})
    suspend = spec.get("suspend")
    last = st.get("lastScheduleTime")
    return [_md(o).get("name", ""), spec.get("schedule", ""), spec.get("timeZone") or "<none>",
            "<unset>" if suspend is None else ("True" if suspend else "False"), len(st.get("active") or []),
            translate_timestamp_since(last, now) if last else "<none>",
            translate_timestamp_since(_md(o).get("creationTimestamp"), now), names, images,
            format_label_selector(jspec.get("selector"))], None


def _serviceaccount(o: Obj, now: datetime) -> Row:
    return [_md(o).get("name", ""), len(o.get("secrets") or []),
            translate_timestamp_since(_md(o).get("creationTimestamp"), now)], None


PRINTERS: dict[str, Callable[[Obj, datetime], Row]] = {
    "ReplicationController": _replicationcontroller, "DaemonSet": _daemonset, "Job": _job, "CronJob": _cronjob,
    "ServiceAccount": _serviceaccount,
}
