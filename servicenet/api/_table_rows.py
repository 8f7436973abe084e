"""Table row helpers and the Pod row (the largest printer), for :mod:`servicenet.api.tables` (pure).

Cells follow upstream's ``pkg/printers/internalversion/printers.go``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from servicenet.api.timefmt import parse_rfc3339, translate_timestamp_since

Obj = Mapping[str, Any]
Cell = str | int | bool

# ---------------------------------------------------------------------------------------------
# helpers


def _md(o: Obj) -> Mapping[str, Any]:
    return o.get("metadata") or {}


def _spec(o: Obj) -> Mapping[str, Any]:
    return o.get("spec") or {}


def _status(o: Obj) -> Mapping[str, Any]:
    return o.get("status") or {}


def _age(o: Obj, now: datetime) -> str:
    return translate_timestamp_since(_md(o).get("creationTimestamp"), now)


def _list_with_more(items: list[str], count: int, limit: int = 3) -> str:
    if count > limit:
        return ",".join(items[:limit]) + f" + {count - limit} more..."
    return ",".join(items) or "<unset>"


def _containers(template_spec: Mapping[str, Any]) -> tuple[str, str]:
    cs = template_spec.get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)


def _template_spec(o: Obj) -> Mapping[str, Any]:
    return ((_spec(o).get("template") or {}).get("spec")) or {}


def _host_port(ip: str, port: Any) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _lb_ingress(status_lb: Mapping[str, Any]) -> str:
    seen = set()
    for ing in status_lb.get("ingress") or []:
        if ing.get("ip"):
            seen.add(ing["ip"])
        elif ing.get("hostname"):
            seen.add(ing["hostname"])
    return ",".join(sorted(seen))


# ---------------------------------------------------------------------------------------------
# per-kind rows (each returns (cells, row conditions))

_Row = tuple[list[Cell], list[dict[str, str]] | None]


def _is_restartable_init(c: Mapping[str, Any] | None) -> bool:
    return bool(c) and c.get("restartPolicy") == "Always"  # type: ignore[union-attr]


def _ts_before(a: str | None, b: str | None) -> bool:
    da, db = parse_rfc3339(a), parse_rfc3339(b)
    if db is None:
        return False
    return da is None or da < db


def _pod(o: Obj, now: datetime) -> _Row:
    spec, st = _spec(o), _status(o)
    md = _md(o)
    restarts = 0
    restartable_restarts = 0
    total = len(spec.get("containers") or [])
    ready = 0
    last_restart: str | None = None
    last_restartable_restart: str | None = None
    phase = st.get("phase") or ""
    reason = st.get("reason") or phase
    conditions = st.get("conditions") or []
    for c in conditions:
        if c.get("type") == "PodScheduled" and c.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"
    row_conditions = None
    if phase == "Succeeded":
        row_conditions = [{"type": "Completed", "status": "True", "reason": "Succeeded",
                           "message": "The pod has completed successfully."}]
    elif phase == "Failed":
        row_conditions = [{"type": "Completed", "status": "True", "reason": "Failed",
                           "message": "The pod failed."}]

    init_specs = {c.get("name"): c for c in spec.get("initContainers") or []}
    total += sum(1 for c in init_specs.values() if _is_restartable_init(c))
    n_init = len(spec.get("initContainers") or [])
    initializing = False
    for i, cs in enumerate(st.get("initContainerStatuses") or []):
        restarts += int(cs.get("restartCount") or 0)
        last_term = (cs.get("lastState") or {}).get("terminated")
        if last_term and _ts_before(last_restart, last_term.get("finishedAt")):
            last_restart = last_term.get("finishedAt")
        restartable = _is_restartable_init(init_specs.get(cs.get("name")))
        if restartable:
            restartable_restarts += int(cs.get("restartCount") or 0)
            if last_term and _ts_before(last_restartable_restart, last_term.get("finishedAt")):
                last_restartable_restart = last_term.get("finishedAt")
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if term is not None and int(term.get("exitCode") or 0) == 0:
            continue
        if restartable and cs.get("started"):
            if cs.get("ready"):
                ready += 1
            continue
        if term is not None:
            if not term.get("reason"):
                if term.get("signal"):
                    reason = f"Init:Signal:{term['signal']}"
                else:
                    reason = f"Init:ExitCode:{int(term.get('exitCode') or 0)}"
            else:
                reason = "Init:" + term["reason"]
        elif waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            reason = "Init:" + waiting["reason"]
        else:
            reason = f"Init:{i}/{n_init}"
        initializing = True
        break

    initialized = any(c.get("type") == "Initialized" and c.get("status") == "True" for c in conditions)
    if not initializing or initialized:
        restarts = restartable_restarts
        last_restart = last_restartable_restart
        has_running = False
        for cs in reversed(st.get("containerStatuses") or []):
            restarts += int(cs.get("restartCount") or 0)
            last_term = (cs.get("lastState") or {}).get("terminated")
            if last_term and _ts_before(last_restart, last_term.get("finishedAt")):
                last_restart = last_term.get("finishedAt")
            state = cs.get("state") or {}
            term, waiting = state.get("terminated"), state.get("waiting")
            if waiting is not None and waiting.get("reason"):
                reason = waiting["reason"]
            elif term is not None and term.get("reason"):
                reason = term["reason"]
            elif term is not None:
                if term.get("signal"):
                    reason = f"Signal:{term['signal']}"
                else:
                    reason = f"ExitCode:{int(term.get('exitCode') or 0)}"
            elif cs.get("ready") and state.get("running") is not None:
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            pod_ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            reason = "Running" if pod_ready else "NotReady"

    if md.get("deletionTimestamp") and st.get("reason") == "NodeLost":
        reason = "Unknown"
    elif md.get("deletionTimestamp") and phase not in ("Failed", "Succeeded"):
        reason = "Terminating"

    restarts_s = str(restarts)
    if restarts != 0 and parse_rfc3339(last_restart) is not None:
        restarts_s = f"{restarts} ({translate_timestamp_since(last_restart, now)} ago)"

    pod_ip = st.get("podIP") or ""
    if not pod_ip and st.get("podIPs"):
        pod_ip = st["podIPs"][0].get("ip") or ""
    gates = spec.get("readinessGates") or []
    gates_s = "<none>"
    if gates:
        n_true = 0
        for g in gates:
            for c in conditions:
                if c.get("type") == g.get("conditionType"):
                    if c.get("status") == "True":
                        n_true += 1
                    break
        gates_s = f"{n_true}/{len(gates)}"
    cells: list[Cell] = [
        md.get("name", ""), f"{ready}/{total}", reason, restarts_s, _age(o, now),
        pod_ip or "<none>", spec.get("nodeName") or "<none>", st.get("nominatedNodeName") or "<none>", gates_s,
    ]
    return cells, row_conditions
