"""EndpointSlice core: literal expectations derived from upstream reconciler behaviour."""

from __future__ import annotations

import pytest
from ctrl_fixtures import FakeStore, node, pod, svc

from servicenet.controllers import endpointslice_core as esc
from servicenet.controllers.actions import Obj

NODES = {"node-1": node("node-1", "zone-a"), "node-2": node("node-2", None)}
T = "2026-01-01T00:00:00.5Z"


def pods_n(n: int, start: int = 0, **kw: object) -> list[Obj]:
    return [pod(f"web-{i}", ip=f"10.244.{i // 250}.{i % 250 + 1}", **kw) for i in range(start, start + n)]  # type: ignore[arg-type]


def run(service: Obj, pods: list[Obj], store: FakeStore, max_eps: int = 100, nodes: dict[str, Obj] = NODES):
    res = esc.reconcile(service, pods, nodes, store.list(), config=esc.Config(max_eps), trigger_time=T)
    store.apply(res.actions)
    return res


def test_basic_slice_literal() -> None:
    s = svc(labels={"team": "a", esc.SERVICE_NAME_LABEL: "spoof"})
    p = pod("web-0", ip="10.244.0.5", node="node-1")
    res = esc.reconcile(s, [p], NODES, [], trigger_time=T)
    assert [a.verb for a in res.actions] == ["create"]
    a = res.actions[0]
    assert (a.api_version, a.plural, a.namespace) == ("discovery.k8s.io/v1", "endpointslices", "default")
    assert a.body == {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": "web-",
            "namespace": "default",
            "labels": {
                "team": "a",
                "kubernetes.io/service-name": "web",
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
            },
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Service", "name": "web", "uid": "uid-svc-web", "controller": True, "blockOwnerDeletion": True}
            ],
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": T},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": ["10.244.0.5"],
                "conditions": {"ready": True, "serving": True, "terminating": False},
                "targetRef": {"kind": "Pod", "namespace": "default", "name": "web-0", "uid": "uid-pod-web-0"},
                "nodeName": "node-1",
                "zone": "zone-a",
            }
        ],
    }


def test_headless_label_and_no_ports() -> None:
    s = svc(cluster_ip="None", ports=[])
    res = esc.reconcile(s, [pod("web-0")], NODES, [])
    body = res.actions[0].body
    assert body is not None
    assert body["metadata"]["labels"]["service.kubernetes.io/headless"] == ""
    assert body["ports"] == []
    assert len(body["endpoints"]) == 1


@pytest.mark.parametrize(
    "n,max_eps,sizes",
    [(250, 100, [100, 100, 50]), (1000, 100, [100] * 10), (7, 3, [3, 3, 1]), (100, 100, [100])],
)
def test_packing_from_scratch(n: int, max_eps: int, sizes: list[int]) -> None:
    store = FakeStore()
    res = run(svc(), pods_n(n), store, max_eps)
    assert all(a.verb == "create" for a in res.actions)
    assert sorted((len(s["endpoints"]) for s in store.list()), reverse=True) == sizes
    # idempotent: a second pass writes nothing
    assert esc.reconcile(svc(), pods_n(n), NODES, store.list(), config=esc.Config(max_eps)).actions == ()


def test_one_pod_change_rewrites_exactly_one_slice() -> None:
    store = FakeStore()
    pods = pods_n(1000)
    run(svc(), pods, store)
    pods[537] = pod("web-537", ip=pods[537]["status"]["podIP"], ready=False)
    res = run(svc(), pods, store)
    assert [a.verb for a in res.actions] == ["update"]
    body = res.actions[0].body
    assert body is not None
    changed = [e for e in body["endpoints"] if e["targetRef"]["name"] == "web-537"]
    assert changed[0]["conditions"] == {"ready": False, "serving": False, "terminating": False}
    assert len(body["endpoints"]) == 100


def test_new_pod_fills_closest_to_full_unchanged_slice() -> None:
    store = FakeStore()
    run(svc(), pods_n(250), store)  # 100, 100, 50
    res = run(svc(), pods_n(251), store)
    assert [a.verb for a in res.actions] == ["update"]
    assert res.actions[0].body is not None and len(res.actions[0].body["endpoints"]) == 51


def test_removed_pod_and_added_pod_share_one_update() -> None:
    store = FakeStore()
    run(svc(), pods_n(250), store)
    pods = pods_n(251)
    del pods[3]  # remove from the first slice; the new one should join the slice being updated
    res = run(svc(), pods, store)
    assert [a.verb for a in res.actions] == ["update"]
    assert sorted(len(s["endpoints"]) for s in store.list()) == [50, 100, 100]


def test_slice_emptied_is_deleted_and_create_becomes_update() -> None:
    store = FakeStore()
    run(svc(), pods_n(3), store)
    (old,) = store.list()
    # all pods replaced by new ones: the create of a new slice is turned into an update
    res = run(svc(), pods_n(3, start=10), store)
    assert [a.verb for a in res.actions] == ["update"]
    assert res.actions[0].name == old["metadata"]["name"]
    assert [e["targetRef"]["name"] for e in store.list()[0]["endpoints"]] == ["web-10", "web-11", "web-12"]


@pytest.mark.parametrize(
    "ready,terminating,publish,expected",
    [
        (True, False, False, {"ready": True, "serving": True, "terminating": False}),
        (False, False, False, {"ready": False, "serving": False, "terminating": False}),
        (True, True, False, {"ready": False, "serving": True, "terminating": True}),
        (False, True, False, {"ready": False, "serving": False, "terminating": True}),
        (False, False, True, {"ready": True, "serving": False, "terminating": False}),
        (True, True, True, {"ready": True, "serving": True, "terminating": True}),
    ],
)
def test_conditions(ready: bool, terminating: bool, publish: bool, expected: dict[str, bool]) -> None:
    s = svc(publishNotReadyAddresses=publish)
    res = esc.reconcile(s, [pod("web-0", ready=ready, terminating=terminating)], NODES, [])
    assert res.actions[0].body is not None
    assert res.actions[0].body["endpoints"][0]["conditions"] == expected


@pytest.mark.parametrize(
    "hostname,subdomain,expected",
    [("web-0", "web", "web-0"), ("web-0", "other", None), ("", "web", None), ("h", "", None)],
)
def test_hostname_rule(hostname: str, subdomain: str, expected: str | None) -> None:
    res = esc.reconcile(svc(), [pod("web-0", hostname=hostname, subdomain=subdomain)], NODES, [])
    assert res.actions[0].body is not None
    assert res.actions[0].body["endpoints"][0].get("hostname") == expected


def test_named_target_port_resolves_per_pod_into_groups() -> None:
    s = svc(ports=[{"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"}])
    p1 = pod("web-a", ip="10.244.0.1", ports=[{"name": "web", "containerPort": 8080}])
    p2 = pod("web-b", ip="10.244.0.2", ports=[{"name": "web", "containerPort": 9090}])
    p3 = pod("web-c", ip="10.244.0.3", ports=[{"name": "web", "containerPort": 8080}])
    p4 = pod("web-d", ip="10.244.0.4", ports=[{"name": "other", "containerPort": 1}])
    res = esc.reconcile(s, [p1, p2, p3, p4], NODES, [])
    got = sorted(
        (tuple(p["port"] for p in a.body["ports"]), sorted(e["targetRef"]["name"] for e in a.body["endpoints"]))  # type: ignore[index]
        for a in res.actions
    )
    assert got == [((), ["web-d"]), ((8080,), ["web-a", "web-c"]), ((9090,), ["web-b"])]


def test_placeholder_created_then_kept_then_replaced() -> None:
    store = FakeStore()
    res = run(svc(), [], store)
    assert [a.verb for a in res.actions] == ["create"]
    (ph,) = store.list()
    assert ph["endpoints"] == [] and ph["ports"] == []
    assert run(svc(), [], store).actions == ()
    res = run(svc(), [pod("web-0")], store)
    assert [(a.verb, a.name) for a in res.actions] == [("update", ph["metadata"]["name"])]
    res = run(svc(), [], store)
    assert [a.verb for a in res.actions] == ["update"]
    assert store.list()[0]["endpoints"] == [] and store.list()[0]["ports"] == []


def test_skips_terminal_and_ipless_pods_but_keeps_terminating() -> None:
    pods = [
        pod("web-0", phase="Succeeded"),
        pod("web-1", phase="Failed", ip="10.244.0.9"),
        pod("web-2", ip=None),
        pod("web-3", ip="10.244.0.3", terminating=True, ready=False),
        pod("web-4", ip="10.244.0.4", phase="Pending", ready=False),
    ]
    res = esc.reconcile(svc(), pods, NODES, [])
    assert res.actions[0].body is not None
    assert [e["targetRef"]["name"] for e in res.actions[0].body["endpoints"]] == ["web-3", "web-4"]


@pytest.mark.parametrize("spec", [{"selector": {}}, {"type": "ExternalName", "externalName": "x.example"}])
def test_selectorless_and_externalname_get_no_slices(spec: Obj) -> None:
    store = FakeStore()
    run(svc(), pods_n(2), store)
    s = svc(**{k: v for k, v in spec.items() if k != "selector"}, selector=spec.get("selector"))  # type: ignore[arg-type]
    assert esc.reconcile(s, [], NODES, []).actions == ()
    res = esc.reconcile(s, pods_n(2), NODES, store.list())
    assert [a.verb for a in res.actions] == ["delete"]


def test_missing_node_skips_pod_and_requeues() -> None:
    res = esc.reconcile(svc(), [pod("web-0", node="ghost"), pod("web-1", ip="10.244.0.2")], NODES, [])
    assert res.requeue_after is not None and res.errors
    assert res.actions[0].body is not None
    assert [e["targetRef"]["name"] for e in res.actions[0].body["endpoints"]] == ["web-1"]
    res = esc.reconcile(svc(publishNotReadyAddresses=True), [pod("web-0", node="ghost")], NODES, [])
    assert res.requeue_after is None and res.actions[0].body is not None
    assert "zone" not in res.actions[0].body["endpoints"][0]


def test_label_change_updates_slices_only() -> None:
    store = FakeStore()
    run(svc(), pods_n(150), store)
    res = run(svc(labels={"tier": "front"}), pods_n(150), store)
    assert sorted(a.verb for a in res.actions) == ["update", "update"]
    assert all(s["metadata"]["labels"]["tier"] == "front" for s in store.list())


def test_dual_stack_and_foreign_slices() -> None:
    s = svc(ipFamilies=["IPv4", "IPv6"])
    p = pod("web-0", ips=["10.244.0.1", "fd00::1"])
    res = esc.reconcile(s, [p], NODES, [])
    assert sorted((a.body["addressType"], a.body["endpoints"][0]["addresses"][0]) for a in res.actions) == [  # type: ignore[index]
        ("IPv4", "10.244.0.1"),
        ("IPv6", "fd00::1"),
    ]
    # a slice owned by an older Service object with the same name is deleted
    stale = esc.new_slice(svc(), "IPv4", [])
    stale["metadata"].update(name="web-old", ownerReferences=[{"uid": "other", "controller": True}])
    res = esc.reconcile(svc(), [p], NODES, [stale])
    assert sorted(a.verb for a in res.actions) == ["create", "delete"]


def test_deleting_service_gets_no_creates() -> None:
    s = svc()
    s["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert esc.reconcile(s, pods_n(3), NODES, []).actions == ()


def test_trigger_time_cleared_when_unknown() -> None:
    store = FakeStore()
    run(svc(), pods_n(2), store)
    res = esc.reconcile(svc(), pods_n(3), NODES, store.list(), trigger_time=None)
    assert res.actions[0].body is not None
    assert esc.TRIGGER_TIME_ANNOTATION not in res.actions[0].body["metadata"]["annotations"]
