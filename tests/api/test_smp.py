from __future__ import annotations

import copy
import json

import pytest

from servicenet.api.errors import ApiStatusError
from servicenet.api.smp import list_spec, strategic_merge_patch

SVC = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "tier": "front"},
                 "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
                 "finalizers": ["a", "b"]},
    "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
             "selector": {"app": "web"},
             "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080},
                       {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}]},
}

DEPLOY = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [
                              {"name": "app", "image": "nginx:1.25",
                               "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                               "ports": [{"containerPort": 80, "protocol": "TCP"}]},
                              {"name": "side", "image": "envoy:1"}],
                              "tolerations": [{"key": "k1", "operator": "Exists"}],
                              "volumes": [{"name": "data", "emptyDir": {}}]}}},
}


def smp(kind: str, orig: dict, patch: dict) -> dict:
    before = copy.deepcopy(orig)
    out = strategic_merge_patch(kind, orig, patch)
    assert orig == before  # never mutates its input
    return out


def test_kubectl_apply_changed_service_target_port() -> None:
    # what kubectl client-side apply sends when targetPort of port 80 changes
    patch = {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"x\":1}"}},
             "spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}],
                      "ports": [{"port": 80, "targetPort": 9090}]}}
    out = smp("Service", SVC, patch)
    assert out["spec"]["ports"] == [
        {"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9090},
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}]
    assert out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] == "{\"x\":1}"
    assert out["metadata"]["labels"] == {"app": "web", "tier": "front"}


def test_kubectl_apply_changed_service_port_number() -> None:
    # port 80 → 8080 (the merge key changes): kubectl sends a delete for the old element
    patch = {"spec": {"$setElementOrder/ports": [{"port": 8080}, {"port": 443}],
                      "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 8080},
                                {"$patch": "delete", "port": 80}]}}
    out = smp("Service", SVC, patch)
    assert out["spec"]["ports"] == [
        {"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 8080},
        {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 8443}]


def test_kubectl_apply_reordered_ports() -> None:
    patch = {"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}]}}
    assert [p["port"] for p in smp("Service", SVC, patch)["spec"]["ports"]] == [443, 80]


def test_kubectl_apply_changed_container_image() -> None:
    patch = {"spec": {"template": {"spec": {"$setElementOrder/containers": [{"name": "app"}, {"name": "side"}],
                                            "containers": [{"image": "nginx:1.27", "name": "app"}]}}}}
    out = smp("Deployment", DEPLOY, patch)
    cs = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in cs] == ["app", "side"]
    assert cs[0]["image"] == "nginx:1.27"
    assert cs[0]["env"] == DEPLOY["spec"]["template"]["spec"]["containers"][0]["env"]
    assert cs[1] == {"name": "side", "image": "envoy:1"}


@pytest.mark.parametrize(
    ("name", "patch", "check"),
    [
        ("null deletes a label", {"metadata": {"labels": {"tier": None}}},
         lambda o: o["metadata"]["labels"] == {"app": "web"}),
        ("map merge adds", {"metadata": {"labels": {"env": "prod"}}},
         lambda o: o["metadata"]["labels"] == {"app": "web", "tier": "front", "env": "prod"}),
        ("null for missing key is dropped", {"metadata": {"annotations": {"nope": None}}},
         lambda o: "nope" not in o["metadata"]["annotations"]),
        ("new nested map drops nulls", {"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 5},
                                                                             "x": None}}},
         lambda o: o["spec"]["sessionAffinityConfig"] == {"clientIP": {"timeoutSeconds": 5}}),
        ("finalizers merge as a set", {"metadata": {"finalizers": ["b", "c"]}},
         lambda o: o["metadata"]["finalizers"] == ["a", "b", "c"]),
        ("deleteFromPrimitiveList", {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}},
         lambda o: o["metadata"]["finalizers"] == ["b"]),
        ("atomic list replaced", {"spec": {"clusterIPs": ["10.96.0.21"]}},
         lambda o: o["spec"]["clusterIPs"] == ["10.96.0.21"]),
        # without $setElementOrder upstream puts patch items before server-only ones
        ("new port without order", {"spec": {"ports": [{"port": 8080, "name": "alt"}]}},
         lambda o: [p["port"] for p in o["spec"]["ports"]] == [8080, 80, 443]),
        ("new port with order", {"spec": {"$setElementOrder/ports": [{"port": 80}, {"port": 443}, {"port": 8080}],
                                          "ports": [{"port": 8080, "name": "alt"}]}},
         lambda o: [p["port"] for p in o["spec"]["ports"]] == [80, 443, 8080]),
        ("element delete", {"spec": {"ports": [{"$patch": "delete", "port": 443}]}},
         lambda o: [p["port"] for p in o["spec"]["ports"]] == [80]),
        ("list replace directive", {"spec": {"ports": [{"$patch": "replace"}, {"port": 1, "name": "one"}]}},
         lambda o: o["spec"]["ports"] == [{"port": 1, "name": "one"}]),
        ("map replace directive", {"spec": {"selector": {"$patch": "replace", "run": "x"}}},
         lambda o: o["spec"]["selector"] == {"run": "x"}),
        ("map delete directive", {"spec": {"selector": {"$patch": "delete"}}},
         lambda o: o["spec"]["selector"] == {}),
        ("element field null", {"spec": {"ports": [{"port": 80, "name": None}]}},
         lambda o: o["spec"]["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 8080}),
        ("type change replaces", {"spec": {"ports": {"weird": True}}},
         lambda o: o["spec"]["ports"] == {"weird": True}),
        ("retainKeys", {"spec": {"$retainKeys": ["type", "ports"], "type": "NodePort"}},
         lambda o: set(o["spec"]) == {"type", "ports"} and o["spec"]["type"] == "NodePort"),
    ],
)
def test_service_patch_table(name: str, patch: dict, check) -> None:  # type: ignore[no-untyped-def]
    out = smp("Service", SVC, patch)
    assert check(out), (name, json.dumps(out))
    assert "$patch" not in json.dumps(out) and "$setElementOrder" not in json.dumps(out)


def _tmpl(o: dict) -> dict:
    return o["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("patch", "check"),
    [
        ({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "x"},
                                                                                {"name": "C", "value": "3"}]}]}}}},
         lambda o: _tmpl(o)["containers"][0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "x"},
                                                        {"name": "C", "value": "3"}]),
        ({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"$patch": "delete", "name": "A"}]}]}}}},
         lambda o: _tmpl(o)["containers"][0]["env"] == [{"name": "B", "value": "2"}]),
        ({"spec": {"template": {"spec": {"containers": [{"name": "app", "ports": [{"containerPort": 443}]}]}}}},
         lambda o: [p["containerPort"] for p in _tmpl(o)["containers"][0]["ports"]] == [443, 80]),
        ({"spec": {"template": {"spec": {"containers": [{"name": "new", "image": "busybox"}]}}}},
         lambda o: [c["name"] for c in _tmpl(o)["containers"]] == ["new", "app", "side"]),
        ({"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}},
         lambda o: [c["name"] for c in _tmpl(o)["containers"]] == ["app"]),
        ({"spec": {"template": {"spec": {"tolerations": [{"key": "k2", "operator": "Exists"}]}}}},
         lambda o: _tmpl(o)["tolerations"] == [{"key": "k2", "operator": "Exists"}]),
        ({"spec": {"template": {"spec": {"volumes": [{"name": "cfg", "configMap": {"name": "c"}}]}}}},
         lambda o: [v["name"] for v in _tmpl(o)["volumes"]] == ["cfg", "data"]),
        ({"spec": {"template": {"spec": {"volumes": [{"name": "data", "$retainKeys": ["name", "hostPath"],
                                                       "hostPath": {"path": "/x"}}]}}}},
         lambda o: _tmpl(o)["volumes"] == [{"name": "data", "hostPath": {"path": "/x"}}]),
        ({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}},
         lambda o: o["spec"]["strategy"] == {"type": "Recreate"}),
        ({"spec": {"replicas": 5}}, lambda o: o["spec"]["replicas"] == 5),
    ],
)
def test_deployment_patch_table(patch: dict, check) -> None:  # type: ignore[no-untyped-def]
    out = smp("Deployment", DEPLOY, patch)
    assert check(out), json.dumps(out)


def test_status_conditions_merge_by_type() -> None:
    pod = {"kind": "Pod", "metadata": {"name": "p"},
           "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}
    out = smp("Pod", pod, {"status": {"conditions": [{"type": "Ready", "status": "True"},
                                                     {"type": "ContainersReady", "status": "True"}]}})
    assert out["status"]["conditions"] == [{"type": "Ready", "status": "True"},
                                           {"type": "ContainersReady", "status": "True"},
                                           {"type": "PodScheduled", "status": "True"}]


def test_owner_references_merge_by_uid() -> None:
    obj = {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}]}}
    out = smp("ConfigMap", obj, {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}]}})
    assert [r["uid"] for r in out["metadata"]["ownerReferences"]] == ["2", "1"]


def test_unknown_kind_lists_are_atomic() -> None:
    out = smp("EndpointSlice", {"endpoints": [{"addresses": ["1.1.1.1"]}]}, {"endpoints": [{"addresses": ["2.2.2.2"]}]})
    assert out["endpoints"] == [{"addresses": ["2.2.2.2"]}]


def test_errors() -> None:
    with pytest.raises(ApiStatusError) as ei:
        smp("Service", SVC, {"spec": {"ports": [{"targetPort": 1}]}})
    assert ei.value.code == 400
    assert "does not contain declared merge key: port" in ei.value.message
    with pytest.raises(ApiStatusError):
        smp("Service", SVC, {"spec": {"ports": [{"$patch": "merge", "port": 80}]}})
    with pytest.raises(ApiStatusError):
        smp("Service", SVC, {"spec": {"selector": {"$patch": "bogus"}}})
    with pytest.raises(ApiStatusError):
        smp("Service", SVC, {"spec": {"$setElementOrder/ports": [{"port": 443}], "ports": [{"port": 80, "x": 1}]}})
    with pytest.raises(ApiStatusError):
        strategic_merge_patch("Service", SVC, ["not", "a", "map"])


def test_schema_lookup() -> None:
    spec = list_spec("Service", ("spec", "ports"))
    assert spec is not None and (spec.merge_key, spec.ssa, spec.keys) == ("port", "map", ("port", "protocol"))
    c = list_spec("Deployment", ("spec", "template", "spec", "containers", "ports"))
    assert c is not None and c.keys == ("containerPort", "protocol")
    assert list_spec("Deployment", ("spec", "template", "spec", "tolerations")) is None
    assert list_spec("Widget", ("metadata", "finalizers")) is not None
