"""EndpointSlice mirroring core."""

from __future__ import annotations

from ctrl_fixtures import FakeStore, svc

from servicenet.controllers import mirroring_core as mc
from servicenet.controllers.actions import Obj


def eps(subsets: list[Obj], labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "ext",
            "namespace": "default",
            "uid": "uid-ep-ext",
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "subsets": subsets,
    }


EXT = svc("ext", selector={})


def test_mirror_literal() -> None:
    e = eps(
        [
            {
                "addresses": [{"ip": "192.0.2.10", "hostname": "db", "nodeName": "n1"}],
                "notReadyAddresses": [{"ip": "192.0.2.11"}],
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            }
        ],
        labels={"team": "x"},
        annotations={"note": "1", mc.LAST_APPLIED: "{}", "endpoints.kubernetes.io/last-change-trigger-time": "t"},
    )
    (a,) = mc.reconcile(e, EXT, []).actions
    assert a.verb == "create"
    assert a.body == {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "generateName": "ext-",
            "namespace": "default",
            "labels": {
                "team": "x",
                "kubernetes.io/service-name": "ext",
                "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io",
            },
            "annotations": {"note": "1"},
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Endpoints", "name": "ext", "uid": "uid-ep-ext", "controller": True, "blockOwnerDeletion": True}
            ],
        },
        "addressType": "IPv4",
        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": ["192.0.2.10"], "conditions": {"ready": True}, "hostname": "db", "nodeName": "n1"},
            {"addresses": ["192.0.2.11"], "conditions": {"ready": False}},
        ],
    }


def test_groups_by_family_and_ports_and_idempotent() -> None:
    e = eps(
        [
            {"addresses": [{"ip": "192.0.2.1"}, {"ip": "2001:db8::1"}], "ports": [{"port": 80}]},
            {"addresses": [{"ip": "192.0.2.2"}], "ports": [{"port": 81}]},
        ]
    )
    store = FakeStore()
    store.apply(mc.reconcile(e, EXT, []).actions)
    got = sorted((s["addressType"], s["ports"][0]["port"], len(s["endpoints"])) for s in store.list())
    assert got == [("IPv4", 80, 1), ("IPv4", 81, 1), ("IPv6", 80, 1)]
    assert mc.reconcile(e, EXT, store.list()).actions == ()
    # label change on the Endpoints propagates as updates only
    e["metadata"]["labels"] = {"new": "y"}
    res = mc.reconcile(e, EXT, store.list())
    assert sorted(a.verb for a in res.actions) == ["update"] * 3


def test_subset_capped_at_1000() -> None:
    addrs = [{"ip": f"192.0.{i // 250}.{i % 250 + 1}"} for i in range(1200)]
    res = mc.reconcile(eps([{"addresses": addrs, "ports": [{"port": 80}]}]), EXT, [])
    assert sum(len(a.body["endpoints"]) for a in res.actions) == 1000  # type: ignore[index]


def test_deleted_when_selector_added_or_endpoints_gone_or_skip() -> None:
    e = eps([{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}])
    store = FakeStore()
    store.apply(mc.reconcile(e, EXT, []).actions)
    existing = store.list()
    assert [a.verb for a in mc.reconcile(e, svc("ext"), existing).actions] == ["delete"]
    assert [a.verb for a in mc.reconcile(None, EXT, existing).actions] == ["delete"]
    assert [a.verb for a in mc.reconcile(e, None, existing).actions] == ["delete"]
    skip = eps(e["subsets"], labels={"endpointslice.kubernetes.io/skip-mirror": "true"})
    assert [a.verb for a in mc.reconcile(skip, EXT, existing).actions] == ["delete"]


def test_emptied_endpoints_delete_slices() -> None:
    e = eps([{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80}]}])
    store = FakeStore()
    store.apply(mc.reconcile(e, EXT, []).actions)
    assert [a.verb for a in mc.reconcile(eps([]), EXT, store.list()).actions] == ["delete"]
