from __future__ import annotations

import pytest

from servicenet.api.apply import (
    fields_to_set,
    path_string,
    server_side_apply,
    set_to_fields,
    update_managed_fields,
)
from servicenet.api.errors import ApiStatusError

T0 = "2025-01-01T00:00:00Z"
T1 = "2025-01-01T00:01:00Z"
T2 = "2025-01-01T00:02:00Z"


def svc_cfg(target_port: int = 8080, labels: dict | None = None, ports: list | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "labels": labels if labels is not None else {"app": "web"}},
            "spec": {"selector": {"app": "web"},
                     "ports": ports if ports is not None else [{"port": 80, "targetPort": target_port}]}}


def entry(obj: dict, manager: str) -> dict:
    [e] = [e for e in obj["metadata"]["managedFields"] if e["manager"] == manager]
    return e


def test_apply_create_managed_fields_literal() -> None:
    out = server_side_apply("Service", None, svc_cfg(), "kubectl", False, T0)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080}]
    assert out["metadata"]["managedFields"] == [{
        "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T0, "fieldsType": "FieldsV1",
        "fieldsV1": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {
                "f:ports": {'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}, "f:targetPort": {}}},
                "f:selector": {},
            },
        },
    }]


def test_reapply_removes_fields_no_longer_applied() -> None:
    live = server_side_apply("Service", None, svc_cfg(labels={"app": "web", "tier": "f"}), "kubectl", False, T0)
    live["metadata"]["labels"]["other"] = "kept"  # someone else's label, not owned by kubectl
    out = server_side_apply("Service", live, svc_cfg(labels={"app": "web"}), "kubectl", False, T1)
    assert out["metadata"]["labels"] == {"app": "web", "other": "kept"}
    assert entry(out, "kubectl")["time"] == T1
    # dropping a port element removes it
    two = svc_cfg(ports=[{"port": 80, "targetPort": 8080}, {"port": 443, "targetPort": 8443}])
    live = server_side_apply("Service", None, two, "kubectl", False, T0)
    out = server_side_apply("Service", live, svc_cfg(), "kubectl", False, T1)
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 8080}]


def test_conflict_with_client_side_apply_manager() -> None:
    created = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
               "spec": {"selector": {"app": "web"},
                        "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]}}
    live = update_managed_fields(None, created, "kubectl-client-side-apply", now=T0)
    e = entry(live, "kubectl-client-side-apply")
    assert e["operation"] == "Update" and e["apiVersion"] == "v1"
    assert e["fieldsV1"] == {"f:spec": {
        "f:ports": {".": {}, 'k:{"port":80,"protocol":"TCP"}': {".": {}, "f:port": {}, "f:protocol": {},
                                                                 "f:targetPort": {}}},
        "f:selector": {}}}
    with pytest.raises(ApiStatusError) as ei:
        server_side_apply("Service", live, svc_cfg(target_port=9090), "kubectl", False, T1)
    err = ei.value
    assert (err.code, err.reason) == (409, "Conflict")
    assert err.message == ('Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using v1: '
                           '.spec.ports[port=80,protocol="TCP"].targetPort')
    assert err.details == {"causes": [{"reason": "FieldManagerConflict",
                                       "message": 'conflict with "kubectl-client-side-apply" using v1',
                                       "field": '.spec.ports[port=80,protocol="TCP"].targetPort'}]}
    # same value → shared ownership, no conflict
    same = server_side_apply("Service", live, svc_cfg(target_port=8080), "kubectl", False, T1)
    assert same["spec"]["ports"][0]["targetPort"] == 8080
    # force moves ownership
    forced = server_side_apply("Service", live, svc_cfg(target_port=9090), "kubectl", True, T1)
    assert forced["spec"]["ports"][0]["targetPort"] == 9090
    csa = fields_to_set(entry(forced, "kubectl-client-side-apply")["fieldsV1"])
    assert ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:targetPort") not in csa
    assert ("f:spec", "f:ports", 'k:{"port":80,"protocol":"TCP"}', "f:protocol") in csa
    assert [m["operation"] for m in forced["metadata"]["managedFields"]] == ["Apply", "Update"]


def test_multiple_conflicts_message() -> None:
    created = svc_cfg()
    created["metadata"]["labels"] = {"app": "x"}
    live = update_managed_fields(None, created, "kubectl-create", now=T0)
    with pytest.raises(ApiStatusError) as ei:
        server_side_apply("Service", live, svc_cfg(target_port=1), "kubectl", False, T1)
    assert ei.value.message == (
        'Apply failed with 2 conflicts: conflicts with "kubectl-create" using v1:\n'
        "- .metadata.labels.app\n"
        '- .spec.ports[port=80,protocol="TCP"].targetPort')


def test_update_managed_fields_moves_ownership_and_keeps_time() -> None:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"app": "d"}},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                    "template": {"metadata": {"labels": {"app": "d"}},
                                 "spec": {"containers": [{"name": "app", "image": "nginx:1",
                                                          "env": [{"name": "A", "value": "1"}]}]}}}}
    live = update_managed_fields(None, dep, "kubectl-create", now=T0)
    f = entry(live, "kubectl-create")["fieldsV1"]
    assert f["f:metadata"] == {"f:labels": {".": {}, "f:app": {}}}
    assert f["f:spec"]["f:selector"] == {}
    c = f["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"app"}']
    assert c == {".": {}, "f:env": {".": {}, 'k:{"name":"A"}': {".": {}, "f:name": {}, "f:value": {}}},
                 "f:image": {}, "f:name": {}}
    after = {**live, "spec": {**live["spec"], "replicas": 3}}
    out = update_managed_fields(live, after, "kubectl-scale", now=T1)
    assert entry(out, "kubectl-scale")["fieldsV1"] == {"f:spec": {"f:replicas": {}}}
    assert "f:replicas" not in entry(out, "kubectl-create")["fieldsV1"]["f:spec"]
    assert entry(out, "kubectl-create")["time"] == T0
    # a no-op write by an existing manager keeps its timestamp
    again = update_managed_fields(out, out, "kubectl-scale", now=T2)
    assert entry(again, "kubectl-scale")["time"] == T1
    # removing a field drops it from every manager
    gone = {**out, "metadata": {k: v for k, v in out["metadata"].items() if k != "labels"}}
    res = update_managed_fields(out, gone, "kubectl-edit", now=T2)
    assert "f:metadata" not in entry(res, "kubectl-create")["fieldsV1"]
    assert all(m["manager"] != "kubectl-edit" for m in res["metadata"]["managedFields"])  # nothing added


def test_set_lists_and_fieldsv1_roundtrip() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["a/b", "c/d"]},
           "data": {"k": "v"}}
    out = server_side_apply("ConfigMap", None, obj, "m", False, T0)
    f = out["metadata"]["managedFields"][0]["fieldsV1"]
    assert f == {"f:data": {"f:k": {}}, "f:metadata": {"f:finalizers": {'v:"a/b"': {}, 'v:"c/d"': {}}}}
    assert set_to_fields(fields_to_set(f)) == f
    assert path_string(("f:metadata", "f:finalizers", 'v:"a/b"')) == '.metadata.finalizers[="a/b"]'


def test_apply_merges_with_live_fields_of_others() -> None:
    live = server_side_apply("Service", None, svc_cfg(), "kubectl", False, T0)
    live = update_managed_fields(live, {**live, "spec": {**live["spec"], "clusterIP": "10.96.0.9"}},
                                 "servicenet-apiserver", now=T0)
    out = server_side_apply("Service", live, svc_cfg(target_port=9000), "kubectl", False, T1)
    assert out["spec"]["clusterIP"] == "10.96.0.9"
    assert out["spec"]["ports"] == [{"port": 80, "targetPort": 9000}]
    assert {m["manager"] for m in out["metadata"]["managedFields"]} == {"kubectl", "servicenet-apiserver"}


def test_apply_requires_manager() -> None:
    with pytest.raises(ApiStatusError) as ei:
        server_side_apply("Service", None, svc_cfg(), "", False, T0)
    assert ei.value.code == 400


def test_update_managed_fields_copy_is_independent_and_keeps_non_json_values() -> None:
    # the fast JSON copy must fall back to a real deep copy for values JSON cannot reproduce
    after = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "b"}},
             "data": {"t": ("x", "y"), "n": float("nan"), "big": 2**70}}
    out = update_managed_fields(None, after, "m", now="t0")
    assert out["data"]["t"] == ("x", "y")
    assert out["data"]["big"] == 2**70
    assert out["data"]["n"] != out["data"]["n"]  # still NaN, not None
    out["metadata"]["labels"]["a"] = "changed"
    assert after["metadata"]["labels"] == {"a": "b"}
    assert "managedFields" not in after["metadata"]
    plain = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    out2 = update_managed_fields(None, plain, "m", now="t0")
    out2["data"]["k"] = "w"
    assert plain["data"] == {"k": "v"}
    assert out2["metadata"]["managedFields"][0]["fieldsV1"] == {"f:data": {".": {}, "f:k": {}}}


def test_managed_fields_never_include_stripped_metadata_or_below() -> None:
    after = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "c", "uid": "u", "generation": 1, "labels": {"x": "y"},
                          "managedFields": [{"manager": "bogus", "fieldsV1": {"f:data": {}}}]},
             "data": {"k": "v"}}
    out = update_managed_fields(None, after, "m", now="t0")
    assert [e["fieldsV1"] for e in out["metadata"]["managedFields"]] == [
        {"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:x": {}}}}]
