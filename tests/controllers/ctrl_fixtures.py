"""Object builders and a tiny in-memory apply for controller core tests."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from servicenet.controllers.actions import Action, Obj

_uid = itertools.count(1)


def svc(
    name: str = "web",
    ns: str = "default",
    selector: dict[str, str] | None = None,
    ports: list[Obj] | None = None,
    cluster_ip: str = "10.96.0.20",
    labels: dict[str, str] | None = None,
    **spec: Any,
) -> Obj:
    s: Obj = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "uid": f"uid-svc-{name}", "labels": labels or {}},
        "spec": {
            "selector": {"app": name} if selector is None else selector,
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}] if ports is None else ports,
            "clusterIP": cluster_ip,
            "ipFamilies": ["IPv4"],
            **spec,
        },
    }
    return s


def pod(
    name: str,
    ip: str | None = "10.244.0.1",
    ns: str = "default",
    labels: dict[str, str] | None = None,
    ready: bool = True,
    node: str = "node-1",
    phase: str = "Running",
    ports: list[Obj] | None = None,
    terminating: bool = False,
    hostname: str = "",
    subdomain: str = "",
    ips: list[str] | None = None,
) -> Obj:
    spec: Obj = {"nodeName": node, "containers": [{"name": "c", "image": "x", "ports": ports or []}]}
    if hostname:
        spec["hostname"] = hostname
    if subdomain:
        spec["subdomain"] = subdomain
    md: Obj = {"name": name, "namespace": ns, "uid": f"uid-pod-{name}", "labels": {"app": "web"} if labels is None else labels}
    if terminating:
        md["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    status: Obj = {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}
    if ips is not None:
        status["podIPs"] = [{"ip": i} for i in ips]
        status["podIP"] = ips[0] if ips else ""
    elif ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec, "status": status}


def node(name: str = "node-1", zone: str | None = "zone-a", ready: bool = True) -> Obj:
    labels = {"topology.kubernetes.io/zone": zone} if zone else {}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "uid": f"uid-node-{name}", "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


class FakeStore:
    """Applies actions to an in-memory set of objects of one plural, assigning names/RVs."""

    def __init__(self, objs: list[Obj] | None = None) -> None:
        self.objs: dict[tuple[str, str], Obj] = {}
        self._rv = itertools.count(100)
        self._gen = itertools.count(1)
        for o in objs or []:
            self.objs[(o["metadata"]["namespace"], o["metadata"]["name"])] = o

    def apply(self, actions: tuple[Action, ...] | list[Action]) -> list[Obj]:
        out = []
        for a in actions:
            if a.verb == "create":
                body = copy.deepcopy(a.body or {})
                md = body["metadata"]
                if not md.get("name"):
                    md["name"] = md["generateName"] + f"x{next(self._gen):04d}"
                md["namespace"] = a.namespace
                md["uid"] = f"uid-{md['name']}"
                md["resourceVersion"] = str(next(self._rv))
                key = (a.namespace, md["name"])
                assert key not in self.objs, f"create of existing {key}"
                self.objs[key] = body
                out.append(body)
            elif a.verb in ("update", "update_status"):
                key = (a.namespace, a.name)
                assert key in self.objs, f"update of missing {key}"
                body = copy.deepcopy(a.body or {})
                body["metadata"]["resourceVersion"] = str(next(self._rv))
                self.objs[key] = body
                out.append(body)
            elif a.verb in ("patch", "patch_status"):
                key = (a.namespace, a.name)
                assert key in self.objs, f"patch of missing {key}"
                body = merge_patch(self.objs[key], a.body or {})
                body["metadata"]["resourceVersion"] = str(next(self._rv))
                self.objs[key] = body
                out.append(body)
            elif a.verb == "delete":
                key = (a.namespace, a.name)
                assert key in self.objs, f"delete of missing {key}"
                del self.objs[key]
            else:
                raise AssertionError(f"unexpected verb {a.verb}")
        return out

    def list(self) -> list[Obj]:
        return [copy.deepcopy(o) for o in self.objs.values()]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out
