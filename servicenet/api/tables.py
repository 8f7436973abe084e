"""Server-side ``meta.k8s.io/v1`` Table rendering, column for column like upstream's printers.

The API server renders Tables in *wide* mode (all columns, kubectl hides ``priority>0`` ones
unless ``-o wide``), so every row carries every cell.  Cells follow
``pkg/printers/internalversion/printers.go``; column descriptions are our own wording.

Watch streams: the first event's Table carries ``columnDefinitions``, later ones pass
``no_headers=True`` (upstream flips ``TableOptions.NoHeaders`` after the first object), which
renders ``"columnDefinitions": null``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from servicenet.api import tables_workloads
from servicenet.api.errors import bad_request
from servicenet.api.selectors import format_labels, label_selector_from_dict
from servicenet.api.table_cells import AGE as _AGE
from servicenet.api.table_cells import CONTAINERS as _CONTAINERS
from servicenet.api.table_cells import IMAGES as _IMAGES
from servicenet.api.table_cells import NAME as _NAME
from servicenet.api.table_cells import Cell, Obj
from servicenet.api.table_cells import Row as _RowT
from servicenet.api.table_cells import age as _age
from servicenet.api.table_cells import col as _col
from servicenet.api.table_cells import containers as _containers
from servicenet.api.table_cells import md as _md
from servicenet.api.table_cells import spec as _spec
from servicenet.api.table_cells import status as _status
from servicenet.api.timefmt import parse_rfc3339, translate_timestamp_since
from servicenet.api.views import meta as meta_of
from servicenet.api.views import service_cluster_ips

__all__ = ["column_definitions", "partial_object_metadata", "to_table", "INCLUDE_OBJECT_VALUES"]

INCLUDE_OBJECT_VALUES = ("None", "Metadata", "Object")



_COLUMNS: dict[str, list[dict[str, Any]]] = {
    "Pod": [
        _NAME,
        _col("Ready", desc="Ready containers out of all containers of the pod."),
        _col("Status", desc="Summarised status of the pod and its containers."),
        _col("Restarts", desc="Container restarts, with the age of the latest one."),
        _AGE,
        _col("IP", desc="The pod's primary IP address.", prio=1),
        _col("Node", desc="Node the pod is bound to.", prio=1),
        _col("Nominated Node", desc="Node nominated by preemption, if any.", prio=1),
        _col("Readiness Gates", desc="Readiness gates satisfied out of all gates.", prio=1),
    ],
    "Service": [
        _NAME,
        _col("Type", desc="How the service is exposed."),
        _col("Cluster-IP", desc="The service's primary cluster IP."),
        _col("External-IP", desc="External IPs or load-balancer ingress addresses."),
        _col("Port(s)", desc="Service ports, with node ports when allocated."),
        _AGE,
        _col("Selector", desc="Label selector choosing the backing pods.", prio=1),
    ],
    "Endpoints": [_NAME, _col("Endpoints", desc="Up to three address:port pairs."), _AGE],
    "EndpointSlice": [
        _NAME,
        _col("AddressType", desc="Address family of the slice."),
        _col("Ports", desc="Ports of the slice."),
        _col("Endpoints", desc="Up to three endpoint addresses."),
        _AGE,
    ],
    "Deployment": [
        _NAME,
        _col("Ready", desc="Ready pods out of desired pods."),
        _col("Up-to-date", desc="Pods running the latest template."),
        _col("Available", desc="Pods available to serve."),
        _AGE,
        _CONTAINERS,
        _IMAGES,
        _col("Selector", desc="Label selector of the deployment.", prio=1),
    ],
    "ReplicaSet": [
        _NAME,
        _col("Desired", "integer", desc="Desired number of pods."),
        _col("Current", "integer", desc="Pods currently owned."),
        _col("Ready", "integer", desc="Ready pods."),
        _AGE,
        _CONTAINERS,
        _IMAGES,
        _col("Selector", desc="Label selector of the replica set.", prio=1),
    ],
    "StatefulSet": [_NAME, _col("Ready", desc="Ready pods out of desired pods."), _AGE, _CONTAINERS, _IMAGES],
    "Namespace": [_NAME, _col("Status", desc="Lifecycle phase of the namespace."), _AGE],
    "Node": [
        _NAME,
        _col("Status", desc="Readiness and schedulability of the node."),
        _col("Roles", desc="Roles taken from node-role labels."),
        _AGE,
        _col("Version", desc="Kubelet version reported by the node."),
        _col("Internal-IP", desc="First internal address.", prio=1),
        _col("External-IP", desc="First external address.", prio=1),
        _col("OS-Image", desc="Operating system image.", prio=1),
        _col("Kernel-Version", desc="Kernel version.", prio=1),
        _col("Container-Runtime", desc="Container runtime version.", prio=1),
    ],
    "ConfigMap": [_NAME, _col("Data", desc="Number of data and binaryData keys."), _AGE],
    "Secret": [_NAME, _col("Type", desc="Secret type."), _col("Data", desc="Number of data keys."), _AGE],
    "Event": [
        _col("Last Seen", desc="Time since the event was last observed."),
        _col("Type", desc="Normal or Warning."),
        _col("Reason", desc="Machine-readable reason."),
        _col("Object", desc="kind/name of the involved object."),
        _col("Subobject", desc="Field path inside the involved object.", prio=1),
        _col("Source", desc="Component that reported the event.", prio=1),
        _col("Message", desc="Human-readable description."),
        _col("First Seen", desc="Time since the event was first observed.", prio=1),
        _col("Count", desc="How many times the event occurred.", prio=1),
        _col("Name", fmt="name", desc="Name of the event object.", prio=1),
    ],
    "Ingress": [
        _NAME,
        _col("Class", desc="IngressClass handling this ingress."),
        _col("Hosts", desc="Hosts matched by the rules."),
        _col("Address", desc="Load-balancer ingress points."),
        _col("Ports", desc="Ports opened (443 when TLS is configured)."),
        _AGE,
    ],
    "IngressClass": [
        _NAME,
        _col("Controller", desc="Controller implementing the class."),
        _col("Parameters", desc="Reference to the class parameters."),
        _AGE,
    ],
}

_DEFAULT_COLUMNS = [
    _NAME,
    _col("Created At", "date", desc="Creation timestamp of the object."),
]


def column_definitions(kind: str) -> list[dict[str, Any]]:
    return [dict(c) for c in _COLUMNS.get(kind, _DEFAULT_COLUMNS)]


def partial_object_metadata(obj: Obj, group_version: str = "meta.k8s.io/v1") -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": group_version,
            "metadata": dict(meta_of(obj))}


# ---------------------------------------------------------------------------------------------
# helpers


def _list_with_more(items: list[str], count: int, limit: int = 3) -> str:
    if count > limit:
        return ",".join(items[:limit]) + f" + {count - limit} more..."
    return ",".join(items) or "<unset>"


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

_Row = _RowT


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


def _service_external_ip(o: Obj) -> str:
    spec = _spec(o)
    t = spec.get("type") or ""
    ext = list(spec.get("externalIPs") or [])
    if t in ("ClusterIP", "NodePort"):
        return ",".join(ext) if ext else "<none>"
    if t == "LoadBalancer":
        lb = _lb_ingress(_status(o).get("loadBalancer") or {})
        if ext:
            return ",".join(([*lb.split(",")] if lb else []) + ext)
        return lb or "<pending>"
    if t == "ExternalName":
        return spec.get("externalName") or ""
    return "<unknown>"


def _service(o: Obj, now: datetime) -> _Row:
    spec = _spec(o)
    ips = service_cluster_ips(spec)
    ports = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol") or "TCP"
        if int(p.get("nodePort") or 0) > 0:
            ports.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            ports.append(f"{p.get('port')}/{proto}")
    return [_md(o).get("name", ""), spec.get("type") or "", ips[0] if ips else "<none>", _service_external_ip(o),
            ",".join(ports) or "<none>", _age(o, now), format_labels(spec.get("selector"))], None


def _format_endpoints(o: Obj) -> str:
    subsets = o.get("subsets") or []
    if not subsets:
        return "<none>"
    out: list[str] = []
    count = 0
    more = False
    for ss in subsets:
        addrs = ss.get("addresses") or []
        ports = ss.get("ports") or []
        if not ports:
            count += len(addrs)
            for a in addrs:
                if len(out) == 3:
                    more = True
                    break
                out.append(a.get("ip", ""))
            continue
        for p in ports:
            count += len(addrs)
            for a in addrs:
                if len(out) == 3:
                    more = True
                    break
                out.append(_host_port(a.get("ip", ""), p.get("port")))
    s = ",".join(out)
    return f"{s} + {count - 3} more..." if more else s


def _endpoints(o: Obj, now: datetime) -> _Row:
    return [_md(o).get("name", ""), _format_endpoints(o), _age(o, now)], None


def _endpointslice(o: Obj, now: datetime) -> _Row:
    ports = []
    for p in o.get("ports") or []:
        if p.get("port") is not None:
            ports.append(str(p["port"]))
        elif p.get("name") is not None:
            ports.append(str(p["name"]))
        else:
            ports.append("*")
    addrs = [a for e in o.get("endpoints") or [] for a in e.get("addresses") or []]
    return [_md(o).get("name", ""), o.get("addressType") or "", _list_with_more(ports, len(ports)),
            _list_with_more(addrs, len(addrs)), _age(o, now)], None


def _selector_string(sel: Mapping[str, Any] | None, *, empty: str) -> str | None:
    try:
        s = str(label_selector_from_dict(sel)) if sel is not None else ""
    except Exception:
        return None
    return s or empty


def _deployment(o: Obj, now: datetime) -> _Row:
    spec, st = _spec(o), _status(o)
    names, images = _containers(_template_spec(o))
    sel = _selector_string(spec.get("selector"), empty="")
    return [_md(o).get("name", ""), f"{int(st.get('readyReplicas') or 0)}/{int(spec.get('replicas', 1) or 0)}",
            int(st.get("updatedReplicas") or 0), int(st.get("availableReplicas") or 0), _age(o, now),
            names, images, "<invalid>" if sel is None else sel], None


def _replicaset(o: Obj, now: datetime) -> _Row:
    spec, st = _spec(o), _status(o)
    names, images = _containers(_template_spec(o))
    sel = _selector_string(spec.get("selector"), empty="<none>")
    return [_md(o).get("name", ""), int(spec.get("replicas", 1) or 0), int(st.get("replicas") or 0),
            int(st.get("readyReplicas") or 0), _age(o, now), names, images,
            "<error>" if sel is None else sel], None


def _statefulset(o: Obj, now: datetime) -> _Row:
    spec, st = _spec(o), _status(o)
    names, images = _containers(_template_spec(o))
    return [_md(o).get("name", ""), f"{int(st.get('readyReplicas') or 0)}/{int(spec.get('replicas', 1) or 0)}",
            _age(o, now), names, images], None


def _namespace(o: Obj, now: datetime) -> _Row:
    return [_md(o).get("name", ""), _status(o).get("phase") or "", _age(o, now)], None


def _node(o: Obj, now: datetime) -> _Row:
    st = _status(o)
    status: list[str] = []
    for c in st.get("conditions") or []:
        if c.get("type") == "Ready":
            status = ["Ready" if c.get("status") == "True" else "NotReady"]
    if not status:
        status = ["Unknown"]
    if _spec(o).get("unschedulable"):
        status.append("SchedulingDisabled")
    roles = set()
    for k, v in (_md(o).get("labels") or {}).items():
        if k.startswith("node-role.kubernetes.io/") and len(k) > len("node-role.kubernetes.io/"):
            roles.add(k[len("node-role.kubernetes.io/"):])
        elif k == "kubernetes.io/role" and v:
            roles.add(v)
    info = st.get("nodeInfo") or {}

    def addr(kind: str) -> str:
        for a in st.get("addresses") or []:
            if a.get("type") == kind:
                return a.get("address", "")
        return "<none>"

    return [_md(o).get("name", ""), ",".join(status), ",".join(sorted(roles)) or "<none>", _age(o, now),
            info.get("kubeletVersion") or "", addr("InternalIP"), addr("ExternalIP"),
            info.get("osImage") or "<unknown>", info.get("kernelVersion") or "<unknown>",
            info.get("containerRuntimeVersion") or "<unknown>"], None


def _configmap(o: Obj, now: datetime) -> _Row:
    return [_md(o).get("name", ""), len(o.get("data") or {}) + len(o.get("binaryData") or {}), _age(o, now)], None


def _secret(o: Obj, now: datetime) -> _Row:
    return [_md(o).get("name", ""), o.get("type") or "", len(o.get("data") or {}), _age(o, now)], None


def _event(o: Obj, now: datetime) -> _Row:
    first = o.get("firstTimestamp")
    first_s = (translate_timestamp_since(first, now) if parse_rfc3339(first)
               else translate_timestamp_since(o.get("eventTime"), now))
    last = o.get("lastTimestamp")
    last_s = translate_timestamp_since(last, now) if parse_rfc3339(last) else first_s
    count = int(o.get("count") or 0)
    series = o.get("series")
    if series is not None:
        last_s = translate_timestamp_since(series.get("lastObservedTime"), now)
        count = int(series.get("count") or 0)
    elif count == 0:
        count = 1
    io = o.get("involvedObject") or {}
    kind = (io.get("kind") or "").lower()
    target = f"{kind}/{io['name']}" if io.get("name") else kind
    src = o.get("source") or {}
    component = src.get("component") or o.get("reportingComponent") or ""
    host = src.get("host") or o.get("reportingInstance") or ""
    source = f"{component}, {host}" if host else component
    return [last_s, o.get("type") or "", o.get("reason") or "", target, io.get("fieldPath") or "", source,
            (o.get("message") or "").strip(), first_s, count, _md(o).get("name", "")], None


def _ingress(o: Obj, now: datetime) -> _Row:
    spec = _spec(o)
    rules = spec.get("rules") or []
    hosts: list[str] = []
    more = False
    for r in rules:
        if len(hosts) == 3:
            more = True
        if not more and r.get("host"):
            hosts.append(r["host"])
    if not hosts:
        hosts_s = "*"
    elif more:
        hosts_s = ",".join(hosts) + f" + {len(rules) - 3} more..."
    else:
        hosts_s = ",".join(hosts)
    cls = spec.get("ingressClassName")
    return [_md(o).get("name", ""), cls if cls is not None else "<none>", hosts_s,
            _lb_ingress(_status(o).get("loadBalancer") or {}), "80, 443" if spec.get("tls") else "80",
            _age(o, now)], None


def _ingressclass(o: Obj, now: datetime) -> _Row:
    spec = _spec(o)
    params = "<none>"
    p = spec.get("parameters")
    if p is not None:
        params = p.get("kind", "")
        if p.get("apiGroup") is not None:
            params += "." + p["apiGroup"]
        params += "/" + p.get("name", "")
    return [_md(o).get("name", ""), spec.get("controller") or "", params, _age(o, now)], None


def _default(o: Obj, now: datetime) -> _Row:
    dt = parse_rfc3339(_md(o).get("creationTimestamp"))
    created = dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if dt else "0001-01-01T00:00:00Z"
    return [_md(o).get("name", ""), created], None


_PRINTERS: dict[str, Callable[[Obj, datetime], _Row]] = {
    "Pod": _pod, "Service": _service, "Endpoints": _endpoints, "EndpointSlice": _endpointslice,
    "Deployment": _deployment, "ReplicaSet": _replicaset, "StatefulSet": _statefulset,
    "Namespace": _namespace, "Node": _node, "ConfigMap": _configmap, "Secret": _secret, "Event": _event,
    "Ingress": _ingress, "IngressClass": _ingressclass,
}
_PRINTERS.update(tables_workloads.PRINTERS)
_COLUMNS.update(tables_workloads.COLUMNS)


def to_table(info_kind: str, objs: Sequence[Obj], *, now: datetime, include_object: str | None = "Metadata",
             resource_version: str = "", continue_token: str | None = None,
             remaining_item_count: int | None = None, no_headers: bool = False,
             group_version: str = "meta.k8s.io/v1") -> dict[str, Any]:
    """Render ``objs`` (all of kind ``info_kind``) as a Table.

    ``include_object``: ``"Metadata"`` (default, ``None``/``""`` mean the same) → each row's
    ``object`` is a ``PartialObjectMetadata``; ``"Object"`` → the full object; ``"None"`` → null.
    ``group_version`` is the negotiated Table version (``meta.k8s.io/v1`` or ``…/v1beta1``).
    """
    mode = include_object or "Metadata"
    if mode not in INCLUDE_OBJECT_VALUES:
        raise bad_request(f'includeObject: Unsupported value: "{mode}": supported values: "None", "Metadata", "Object"')
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    printer = _PRINTERS.get(info_kind, _default)
    rows: list[dict[str, Any]] = []
    for o in objs:
        cells, conds = printer(o, now)
        row: dict[str, Any] = {"cells": cells}
        if conds:
            row["conditions"] = conds
        if mode == "Metadata":
            row["object"] = partial_object_metadata(o, group_version)
        elif mode == "Object":
            row["object"] = dict(o)
        else:
            row["object"] = None
        rows.append(row)
    meta: dict[str, Any] = {}
    if resource_version:
        meta["resourceVersion"] = resource_version
    if continue_token:
        meta["continue"] = continue_token
    if remaining_item_count is not None:
        meta["remainingItemCount"] = remaining_item_count
    return {
        "kind": "Table",
        "apiVersion": group_version,
        "metadata": meta,
        "columnDefinitions": None if no_headers else column_definitions(info_kind),
        "rows": rows,
    }
