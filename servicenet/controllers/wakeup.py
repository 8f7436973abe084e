"""Pure core: which controllers an informer event wakes, and with which work-queue key.

The controller manager's informer handlers call :func:`wakes` and add the returned keys to the
queues; everything they need from the caches comes through the small :class:`Lookup` seam, so
the table can be tested with a dict-backed fake. Keys are ``namespace/name`` (``name`` for
cluster-scoped objects).

======================  ==========================================================================
event on                wakes (key)
======================  ==========================================================================
Service                 endpointslice, endpoints (the Service); mirroring (the Service) when it
                        has no selector, had none before, or still owns mirrored slices
Pod                     endpointslice, endpoints (each Service selecting it, before and after a
                        label change) when an endpoint-relevant field changed; its controlling
                        ReplicaSet / StatefulSet / ReplicationController / DaemonSet / Job;
                        scheduler (the Pod) while it waits for a node (the other workload kinds
                        are wired in controllers/workloads.py)
EndpointSlice           endpointslice or mirroring (the Service named by its label), by manager
Endpoints               mirroring (no Service, or a selector-less one), else endpoints
Node                    nodelifecycle (the Node); scheduler (every unscheduled Pod) when it turns
                        Ready or, being Ready, changes labels/taints/unschedulable; endpointslice (Services of its Pods) when added, deleted or its
                        zone label changed
ReplicaSet              replicaset (itself); deployment (its controlling Deployment)
Deployment/StatefulSet  deployment / statefulset (itself)
======================  ==========================================================================

Filtering our own write echoes (a slice or Endpoints at the resourceVersion we just wrote) stays
in the shell: it depends on what the manager wrote, not on the event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from servicenet.api import wellknown as wk
from servicenet.api.views import Obj, labels_of, meta, name_of, ns_of

from . import scheduler_core
from .actions import controller_of

__all__ = ["Lookup", "Wake", "WAKE_TABLE", "key_of", "pod_endpoint_fields", "wakes"]


@dataclass(frozen=True, slots=True)
class Wake:
    controller: str
    key: str


class Lookup(Protocol):
    """What the table reads from the informer caches."""

    def services_for_pod(self, pod: Obj) -> set[str]: ...  # keys of Services whose selector matches

    def service(self, namespace: str, name: str) -> Obj | None: ...

    def slices_of_service(self, key: str) -> Iterable[Obj]: ...

    def pods_on_node(self, node: str) -> Iterable[Obj]: ...

    def unscheduled_pods(self) -> Iterable[Obj]: ...


def key_of(o: Obj) -> str:
    ns = ns_of(o)
    return f"{ns}/{name_of(o)}" if ns else name_of(o)


def pod_endpoint_fields(pod: Obj) -> tuple[Any, ...]:
    """What of a pod matters to the endpoint controllers (a change here re-syncs its Services)."""
    spec, st = pod.get("spec") or {}, pod.get("status") or {}
    ready = next((c.get("status") for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    return (
        st.get("podIP"), str(st.get("podIPs")), st.get("phase"), ready, meta(pod).get("deletionTimestamp"),
        spec.get("nodeName"), spec.get("hostname"), spec.get("subdomain"), str(labels_of(pod)),
        str([c.get("ports") for c in spec.get("containers") or []]),
    )


def _has_selector(svc: Obj | None) -> bool:
    return bool(svc is not None and (svc.get("spec") or {}).get("selector"))


def _on_service(etype: str, svc: Obj, old: Obj | None, look: Lookup) -> list[Wake]:
    key = key_of(svc)
    out = [Wake("endpointslice", key), Wake("endpoints", key)]
    if not _has_selector(svc) or (old and not _has_selector(old)):
        out.append(Wake("mirroring", key))
    elif any(labels_of(sl).get(wk.MANAGED_BY_LABEL) == wk.ENDPOINTSLICE_MIRRORING_CONTROLLER
             for sl in look.slices_of_service(key)):
        out.append(Wake("mirroring", key))
    return out


_POD_OWNERS = {"ReplicaSet": "replicaset", "StatefulSet": "statefulset",
               "ReplicationController": "replicationcontroller", "DaemonSet": "daemonset", "Job": "job"}


def _on_pod(etype: str, pod: Obj, old: Obj | None, look: Lookup) -> list[Wake]:
    out: list[Wake] = []
    if old is None or etype == "DELETED" or pod_endpoint_fields(old) != pod_endpoint_fields(pod):
        svcs = look.services_for_pod(pod)
        if old is not None and labels_of(old) != labels_of(pod):
            svcs |= look.services_for_pod(old)
        for s in svcs:
            out += [Wake("endpointslice", s), Wake("endpoints", s)]
    ref = controller_of(pod)
    if ref is not None:
        target = _POD_OWNERS.get(ref.get("kind", ""))
        if target:
            out.append(Wake(target, f"{ns_of(pod)}/{ref['name']}"))
    if etype != "DELETED" and scheduler_core.wants_scheduling(pod):
        out.append(Wake("scheduler", key_of(pod)))
    return out


_SLICE_MANAGERS = {wk.ENDPOINTSLICE_CONTROLLER: "endpointslice", wk.ENDPOINTSLICE_MIRRORING_CONTROLLER: "mirroring"}


def _on_slice(etype: str, sl: Obj, old: Obj | None, look: Lookup) -> list[Wake]:
    labels = labels_of(sl)
    svc = labels.get(wk.SERVICE_NAME_LABEL)
    target = _SLICE_MANAGERS.get(labels.get(wk.MANAGED_BY_LABEL) or "")
    if not svc or target is None:
        return []
    return [Wake(target, f"{ns_of(sl)}/{svc}")]


def _on_endpoints(etype: str, ep: Obj, old: Obj | None, look: Lookup) -> list[Wake]:
    key = key_of(ep)
    svc = look.service(ns_of(ep), name_of(ep))
    return [Wake("endpoints" if _has_selector(svc) else "mirroring", key)]


def _placement_changed(old: Obj, node: Obj) -> bool:
    """Labels, taints or unschedulable changed: pending pods may fit now."""
    o, n = old.get("spec") or {}, node.get("spec") or {}
    return (labels_of(old) != labels_of(node) or o.get("taints") != n.get("taints")
            or o.get("unschedulable") != n.get("unschedulable"))


def _on_node(etype: str, node: Obj, old: Obj | None, look: Lookup) -> list[Wake]:
    out = [Wake("nodelifecycle", name_of(node))]
    became_ready = scheduler_core.node_ready(node) and (old is None or not scheduler_core.node_ready(old))
    if became_ready or (old is not None and scheduler_core.node_ready(node) and _placement_changed(old, node)):
        out += [Wake("scheduler", key_of(p)) for p in look.unscheduled_pods()]
    zone = wk.ZONE_LABEL
    if etype in ("ADDED", "DELETED") or (old and labels_of(old).get(zone) != labels_of(node).get(zone)):
        for p in look.pods_on_node(name_of(node)):
            out += [Wake("endpointslice", s) for s in look.services_for_pod(p)]
    return out


def _on_replicaset(etype: str, rs: Obj, old: Obj | None, look: Lookup) -> list[Wake]:
    out = [Wake("replicaset", key_of(rs))]
    ref = controller_of(rs)
    if ref is not None and ref.get("kind") == "Deployment":
        out.append(Wake("deployment", f"{ns_of(rs)}/{ref['name']}"))
    return out


def _self(controller: str) -> Callable[[str, Obj, Obj | None, Lookup], list[Wake]]:
    return lambda etype, o, old, look: [Wake(controller, key_of(o))]


Handler = Callable[[str, Obj, Obj | None, Lookup], list[Wake]]
# informer resource (plural) -> the rule for its events
WAKE_TABLE: dict[str, Handler] = {
    "services": _on_service,
    "pods": _on_pod,
    "endpointslices": _on_slice,
    "endpoints": _on_endpoints,
    "nodes": _on_node,
    "replicasets": _on_replicaset,
    "deployments": _self("deployment"),
    "statefulsets": _self("statefulset"),
}


def wakes(plural: str, etype: str, obj: Obj, old: Obj | None, look: Lookup) -> list[Wake]:
    """The (controller, key) pairs one event of ``plural`` wakes."""
    return WAKE_TABLE[plural](etype, obj, old, look)
