"""Controller wake-up table: events in, (controller, key) out — no informers, no sockets."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from servicenet.api import wellknown as wk
from servicenet.api.selectors import equality_selector_matches
from servicenet.api.views import Obj, labels_of, ns_of
from servicenet.controllers.wakeup import Wake, key_of, wakes


@dataclass
class FakeCaches:
    services: list[Obj] = field(default_factory=list)
    slices: list[Obj] = field(default_factory=list)
    pods: list[Obj] = field(default_factory=list)

    def services_for_pod(self, pod: Obj) -> set[str]:
        return {key_of(s) for s in self.services if ns_of(s) == ns_of(pod)
                and equality_selector_matches(s["spec"].get("selector"), labels_of(pod))}

    def service(self, namespace: str, name: str) -> Obj | None:
        return next((s for s in self.services if key_of(s) == f"{namespace}/{name}"), None)

    def slices_of_service(self, key: str) -> Iterable[Obj]:
        return [s for s in self.slices if f"{ns_of(s)}/{labels_of(s).get(wk.SERVICE_NAME_LABEL)}" == key]

    def pods_on_node(self, node: str) -> Iterable[Obj]:
        return [p for p in self.pods if p["spec"].get("nodeName") == node]

    def unscheduled_pods(self) -> Iterable[Obj]:
        return [p for p in self.pods if not p["spec"].get("nodeName")]


def svc(name: str, selector: dict[str, str] | None = None) -> Obj:
    return {"metadata": {"name": name, "namespace": "a"}, "spec": {"selector": selector} if selector else {}}


def pod(name: str, labels: dict[str, str], node: str = "n1", ip: str = "10.0.0.1", owner: str = "") -> Obj:
    md: Obj = {"name": name, "namespace": "a", "labels": labels}
    if owner:
        kind, oname = owner.split("/")
        md["ownerReferences"] = [{"kind": kind, "name": oname, "uid": "u", "controller": True}]
    return {"metadata": md, "spec": {"nodeName": node, "schedulerName": "default-scheduler"},
            "status": {"podIP": ip}}


def node(name: str, ready: bool, zone: str = "") -> Obj:
    return {"metadata": {"name": name, "labels": {wk.ZONE_LABEL: zone} if zone else {}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def slice_(svc_name: str, manager: str) -> Obj:
    return {"metadata": {"name": f"{svc_name}-x", "namespace": "a",
                         "labels": {wk.SERVICE_NAME_LABEL: svc_name, wk.MANAGED_BY_LABEL: manager}}}


CACHES = FakeCaches(
    services=[svc("web", {"app": "web"}), svc("ext"), svc("db", {"app": "db"})],
    slices=[slice_("web", wk.ENDPOINTSLICE_CONTROLLER), slice_("web2", wk.ENDPOINTSLICE_MIRRORING_CONTROLLER)],
    pods=[pod("w1", {"app": "web"}), pod("pending", {"app": "x"}, node="")],
)
EP, EPS, MIR = "endpoints", "endpointslice", "mirroring"

CASES = [
    # (plural, etype, obj, old, wakes)
    ("services", "ADDED", svc("web", {"app": "web"}), None, [(EPS, "a/web"), (EP, "a/web")]),
    ("services", "ADDED", svc("ext"), None, [(EPS, "a/ext"), (EP, "a/ext"), (MIR, "a/ext")]),
    ("services", "MODIFIED", svc("web", {"app": "web"}), svc("web"),
     [(EPS, "a/web"), (EP, "a/web"), (MIR, "a/web")]),  # gained a selector: mirroring cleans up
    ("services", "MODIFIED", svc("web2", {"app": "x"}), svc("web2", {"app": "x"}),
     [(EPS, "a/web2"), (EP, "a/web2"), (MIR, "a/web2")]),  # still owns mirrored slices
    ("pods", "ADDED", pod("w2", {"app": "web"}), None, [(EPS, "a/web"), (EP, "a/web")]),
    ("pods", "MODIFIED", pod("w2", {"app": "web"}), pod("w2", {"app": "web"}), []),  # nothing relevant changed
    ("pods", "MODIFIED", pod("w2", {"app": "web"}, ip="10.0.0.9"), pod("w2", {"app": "web"}),
     [(EPS, "a/web"), (EP, "a/web")]),
    ("pods", "MODIFIED", pod("w2", {"app": "db"}), pod("w2", {"app": "web"}),
     [(EPS, "a/db"), (EP, "a/db"), (EPS, "a/web"), (EP, "a/web")]),  # label change: both services
    ("pods", "MODIFIED", pod("r1", {}, owner="ReplicaSet/rs1"), pod("r1", {}, owner="ReplicaSet/rs1"),
     [("replicaset", "a/rs1")]),
    ("pods", "ADDED", pod("s1", {}, node="", owner="StatefulSet/db"), None,
     [("statefulset", "a/db"), ("scheduler", "a/s1")]),
    ("pods", "DELETED", pod("s1", {}, node=""), pod("s1", {}, node=""), []),
    ("endpointslices", "MODIFIED", slice_("web", wk.ENDPOINTSLICE_CONTROLLER), None, [(EPS, "a/web")]),
    ("endpointslices", "DELETED", slice_("ext", wk.ENDPOINTSLICE_MIRRORING_CONTROLLER), None, [(MIR, "a/ext")]),
    ("endpointslices", "ADDED", slice_("web", "someone-else"), None, []),
    ("endpoints", "MODIFIED", svc("web"), None, [(EP, "a/web")]),
    ("endpoints", "MODIFIED", svc("ext"), None, [(MIR, "a/ext")]),
    ("endpoints", "ADDED", svc("gone"), None, [(MIR, "a/gone")]),
    ("nodes", "MODIFIED", node("n1", True), node("n1", False), [("nodelifecycle", "n1"), ("scheduler", "a/pending")]),
    ("nodes", "MODIFIED", node("n1", True), node("n1", True), [("nodelifecycle", "n1")]),
    # a label change on a Ready node: the zone moves endpoints, and pending pods may fit now
    ("nodes", "MODIFIED", node("n1", True, "z2"), node("n1", True, "z1"), [("nodelifecycle", "n1"), (EPS, "a/web"), ("scheduler", "a/pending")]),
    ("nodes", "MODIFIED", node("n1", False, "z2"), node("n1", False, "z1"), [("nodelifecycle", "n1"), (EPS, "a/web")]),
    ("nodes", "DELETED", node("n9", False), None, [("nodelifecycle", "n9")]),
    ("replicasets", "ADDED", pod("rs1", {}, owner="Deployment/d"), None, [("replicaset", "a/rs1"), ("deployment", "a/d")]),
    ("deployments", "MODIFIED", svc("d"), None, [("deployment", "a/d")]),
    ("statefulsets", "DELETED", svc("db"), None, [("statefulset", "a/db")]),
]


@pytest.mark.parametrize("plural, etype, obj, old, want", CASES)
def test_wake_table(plural, etype, obj, old, want):
    got = wakes(plural, etype, obj, old, CACHES)
    assert sorted(got, key=lambda w: (w.controller, w.key)) == sorted(
        (Wake(c, k) for c, k in want), key=lambda w: (w.controller, w.key))
