"""Endpoints core: subsets, repacking, truncation and skip-unchanged."""

from __future__ import annotations

import json

from ctrl_fixtures import FakeStore, pod, svc
from hypothesis import given, settings
from hypothesis import strategies as st

from servicenet.controllers import endpoints_core as ec


def ref(name: str) -> dict[str, str]:
    return {"kind": "Pod", "namespace": "default", "name": name, "uid": f"uid-pod-{name}"}


def test_ready_and_not_ready_literal() -> None:
    pods = [pod("web-0", ip="10.244.0.1"), pod("web-1", ip="10.244.0.2", ready=False), pod("web-2", ip=None)]
    res = ec.reconcile(svc(labels={"a": "b"}), pods, None, trigger_time="2026-01-01T00:00:00Z")
    (a,) = res.actions
    assert (a.verb, a.plural, a.name) == ("create", "endpoints", "web")
    assert a.body == {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": "web",
            "namespace": "default",
            "labels": {"a": "b"},
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01T00:00:00Z"},
        },
        "subsets": [
            {
                "addresses": [{"ip": "10.244.0.1", "nodeName": "node-1", "targetRef": ref("web-0")}],
                "notReadyAddresses": [{"ip": "10.244.0.2", "nodeName": "node-1", "targetRef": ref("web-1")}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            }
        ],
    }


def test_terminating_pods_only_with_publish_not_ready() -> None:
    pods = [pod("web-0", terminating=True)]
    assert ec.reconcile(svc(), pods, None).actions[0].body["subsets"] == []  # type: ignore[index]
    body = ec.reconcile(svc(publishNotReadyAddresses=True), pods, None).actions[0].body
    assert body is not None and body["subsets"][0]["addresses"][0]["ip"] == "10.244.0.1"


def test_repack_by_port_set() -> None:
    s = svc(
        ports=[
            {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
            {"name": "metrics", "port": 9100, "targetPort": 9100, "protocol": "TCP"},
        ]
    )
    a = pod("web-a", ip="10.244.0.1", ports=[{"name": "web", "containerPort": 8080}])
    b = pod("web-b", ip="10.244.0.2", ports=[{"name": "web", "containerPort": 8080}])
    c = pod("web-c", ip="10.244.0.3")  # no named port: serves only metrics
    body = ec.reconcile(s, [a, b, c], None).actions[0].body
    assert body is not None
    got = sorted(([x["ip"] for x in sub["addresses"]], [p["port"] for p in sub["ports"]]) for sub in body["subsets"])
    # port 8080 is served by a and b, port 9100 by all three: two distinct address sets
    assert got == [(["10.244.0.1", "10.244.0.2"], [8080]), (["10.244.0.1", "10.244.0.2", "10.244.0.3"], [9100])]
    same = svc(ports=[{"name": "a", "port": 1, "targetPort": 1}, {"name": "b", "port": 2, "targetPort": 2}])
    body = ec.reconcile(same, [a, b], None).actions[0].body
    assert body is not None and [[p["port"] for p in sub["ports"]] for sub in body["subsets"]] == [[1, 2]]


def test_headless_without_ports_and_hostname() -> None:
    s = svc(cluster_ip="None", ports=[])
    body = ec.reconcile(s, [pod("web-0", hostname="web-0", subdomain="web")], None).actions[0].body
    assert body is not None
    assert body["metadata"]["labels"] == {"service.kubernetes.io/headless": ""}
    assert body["subsets"] == [{"addresses": [{"ip": "10.244.0.1", "hostname": "web-0", "nodeName": "node-1", "targetRef": ref("web-0")}]}]


def test_skip_unchanged_and_update_on_change() -> None:
    store = FakeStore()
    pods = [pod(f"web-{i}", ip=f"10.244.0.{i + 1}") for i in range(3)]
    store.apply(ec.reconcile(svc(), pods, None).actions)
    (cur,) = store.list()
    assert ec.reconcile(svc(), pods, cur, trigger_time="2026-01-01T00:00:00Z").actions == ()
    pods[1] = pod("web-1", ip="10.244.0.2", ready=False)
    (a,) = ec.reconcile(svc(), pods, cur).actions
    assert a.verb == "update" and a.body is not None
    assert a.body["metadata"]["resourceVersion"] == cur["metadata"]["resourceVersion"]
    assert [x["ip"] for x in a.body["subsets"][0]["notReadyAddresses"]] == ["10.244.0.2"]


def test_truncation_at_1000_ready_first() -> None:
    pods = [pod(f"web-{i}", ip=f"10.244.{i // 250}.{i % 250 + 1}", ready=i % 3 != 0) for i in range(1500)]
    store = FakeStore()
    (a,) = ec.reconcile(svc(), pods, None).actions
    assert a.body is not None
    ann = a.body["metadata"]["annotations"]
    assert ann["endpoints.kubernetes.io/over-capacity"] == "truncated"
    sub = a.body["subsets"]
    ready = sum(len(s.get("addresses", [])) for s in sub)
    not_ready = sum(len(s.get("notReadyAddresses", [])) for s in sub)
    assert (ready, not_ready) == (1000, 0)  # 1000 ready of 1500 pods; not-ready ones go first
    store.apply([a])
    (cur,) = store.list()
    assert ec.reconcile(svc(), pods, cur).actions == ()
    # back under capacity: annotation removed
    (b,) = ec.reconcile(svc(), pods[:10], cur).actions
    assert b.body is not None and "endpoints.kubernetes.io/over-capacity" not in b.body["metadata"]["annotations"]


def test_truncate_not_ready_proportionally() -> None:
    subsets = [
        {"addresses": [{"ip": f"1.0.0.{i}"} for i in range(400)], "notReadyAddresses": [{"ip": f"1.1.0.{i}"} for i in range(300)]},
        {"addresses": [{"ip": f"2.0.0.{i}"} for i in range(200)], "notReadyAddresses": [{"ip": f"2.1.0.{i}"} for i in range(100)]},
    ]
    out, truncated = ec.truncate(subsets)
    assert not truncated and out == subsets  # exactly 1000 is not over capacity
    subsets[0]["notReadyAddresses"] = [{"ip": f"1.1.{i // 250}.{i % 250}"} for i in range(600)]
    out, truncated = ec.truncate(subsets)
    # 400 not-ready slots, split 600:100 -> ceil(342.9)=343 then the remaining 57
    assert truncated and [len(s["notReadyAddresses"]) for s in out] == [343, 57]


def test_selectorless_service_is_left_alone() -> None:
    assert ec.reconcile(svc(selector={}), [pod("web-0")], None).actions == ()


# the canonical encoding that groups, sorts and compares subsets orders them exactly as the
# json.dumps(sort_keys=True) it replaced (compact vs spaced separators), for the ASCII content
# Endpoints hold (IPs, DNS names, port names, numbers, booleans)
_ascii = st.text(alphabet=st.sampled_from("0123456789abcdefghijklmnopqrstuvwxyz.-:/ _AZ"), max_size=6)
_leaf = st.one_of(_ascii, st.integers(-5, 70000), st.booleans(), st.none())
_json = st.recursive(_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                    st.dictionaries(_ascii, inner, max_size=3)), max_leaves=8)


@given(st.lists(_json, max_size=6))
@settings(max_examples=200, deadline=None)
def test_canonical_order_is_json_dumps_order(items: list[object]) -> None:
    by_json = [json.dumps(x, sort_keys=True) for x in sorted(items, key=lambda x: json.dumps(x, sort_keys=True))]
    by_canon = [json.dumps(x, sort_keys=True) for x in sorted(items, key=ec._canon)]
    assert by_canon == by_json
    for a in items:
        for b in items:
            assert (ec._canon(a) == ec._canon(b)) == (json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True))
