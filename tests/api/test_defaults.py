from __future__ import annotations

import copy
from typing import Any

import pytest

from servicenet.api.defaults import apply_defaults, pod_qos_class, prepare_for_create

CONTAINER_DEFAULTED = {
    "name": "web", "image": "nginx:1.27", "imagePullPolicy": "IfNotPresent",
    "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
    "ports": [{"containerPort": 80, "protocol": "TCP"}],
}
POD_SPEC_DEFAULTED = {
    "containers": [CONTAINER_DEFAULTED], "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
    "securityContext": {}, "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler",
}


def _container() -> dict[str, Any]:
    return {"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}


CASES: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = [
    ("v1", "Service",
     {"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}},
     {"spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
               "type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"}}),
    ("v1", "Service",
     {"spec": {"type": "LoadBalancer", "ports": [{"port": 53, "protocol": "UDP", "targetPort": "dns"}]}},
     {"spec": {"type": "LoadBalancer", "ports": [{"port": 53, "protocol": "UDP", "targetPort": "dns"}],
               "sessionAffinity": "None", "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster",
               "allocateLoadBalancerNodePorts": True}}),
    ("v1", "Service",
     {"spec": {"type": "NodePort", "clusterIP": "10.96.0.20", "sessionAffinity": "ClientIP",
               "ports": [{"port": 80}]}},
     {"spec": {"type": "NodePort", "clusterIP": "10.96.0.20",
               "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 10800}},
               "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
               "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster"}}),
    ("v1", "Service",
     {"spec": {"type": "ExternalName", "externalName": "example.com"}},
     {"spec": {"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"}}),
    ("v1", "Pod",
     {"spec": {"containers": [_container()]}},
     {"spec": {**copy.deepcopy(POD_SPEC_DEFAULTED), "enableServiceLinks": True}}),
    ("v1", "Pod",
     {"spec": {"containers": [{"name": "a", "image": "busybox",
                               "resources": {"limits": {"cpu": "1"}},
                               "readinessProbe": {"httpGet": {"port": 8080}},
                               "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}],
               "volumes": [{"name": "v"}, {"name": "s", "secret": {"secretName": "x"}}],
               "restartPolicy": "Never"}},
     {"spec": {"containers": [{"name": "a", "image": "busybox", "imagePullPolicy": "Always",
                               "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                               "resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1"}},
                               "readinessProbe": {"httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"},
                                                  "timeoutSeconds": 1, "periodSeconds": 10,
                                                  "successThreshold": 1, "failureThreshold": 3},
                               "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name",
                                                                                "apiVersion": "v1"}}}]}],
               "volumes": [{"name": "v", "emptyDir": {}}, {"name": "s", "secret": {"secretName": "x", "defaultMode": 420}}],
               "restartPolicy": "Never", "dnsPolicy": "ClusterFirst", "securityContext": {},
               "terminationGracePeriodSeconds": 30, "schedulerName": "default-scheduler",
               "enableServiceLinks": True}}),
    ("apps/v1", "Deployment",
     {"spec": {"selector": {"matchLabels": {"app": "web"}},
               "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [_container()]}}}},
     {"spec": {"selector": {"matchLabels": {"app": "web"}}, "replicas": 1,
               "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
               "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600,
               "template": {"metadata": {"labels": {"app": "web"}}, "spec": copy.deepcopy(POD_SPEC_DEFAULTED)}}}),
    ("apps/v1", "Deployment",
     {"spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "template": {"spec": {"containers": []}}}},
     {"spec": {"replicas": 0, "strategy": {"type": "Recreate"}, "revisionHistoryLimit": 10,
               "progressDeadlineSeconds": 600,
               "template": {"spec": {"containers": [], "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                                     "securityContext": {}, "terminationGracePeriodSeconds": 30,
                                     "schedulerName": "default-scheduler"}}}}),
    ("apps/v1", "ReplicaSet",
     {"spec": {"template": {"spec": {"containers": [_container()]}}}},
     {"spec": {"replicas": 1, "template": {"spec": copy.deepcopy(POD_SPEC_DEFAULTED)}}}),
    ("apps/v1", "StatefulSet",
     {"spec": {"serviceName": "db", "template": {"spec": {"containers": [_container()]}}}},
     {"spec": {"serviceName": "db", "replicas": 1, "podManagementPolicy": "OrderedReady",
               "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
               "revisionHistoryLimit": 10,
               "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
               "template": {"spec": copy.deepcopy(POD_SPEC_DEFAULTED)}}}),
    ("discovery.k8s.io/v1", "EndpointSlice",
     {"addressType": "IPv4", "ports": [{"name": "http", "port": 80}, {"port": 81}], "endpoints": []},
     {"addressType": "IPv4", "ports": [{"name": "http", "port": 80, "protocol": "TCP"},
                                       {"port": 81, "protocol": "TCP", "name": ""}], "endpoints": []}),
    ("v1", "Endpoints",
     {"subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 80}]}]},
     {"subsets": [{"addresses": [{"ip": "10.244.0.5"}], "ports": [{"port": 80, "protocol": "TCP"}]}]}),
    ("v1", "Namespace",
     {"metadata": {"name": "team-a"}},
     {"metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "team-a"}}}),
    ("v1", "Secret", {"data": {"a": "Yg=="}}, {"data": {"a": "Yg=="}, "type": "Opaque"}),
    ("v1", "Secret", {"type": "kubernetes.io/tls"}, {"type": "kubernetes.io/tls"}),
    ("v1", "ConfigMap", {"data": {"a": "b"}}, {"data": {"a": "b"}}),
]


@pytest.mark.parametrize("api_version,kind,before,after", CASES)
def test_defaults(api_version: str, kind: str, before: dict[str, Any], after: dict[str, Any]) -> None:
    obj = copy.deepcopy(before)
    apply_defaults(api_version, kind, obj)
    assert obj == after
    apply_defaults(api_version, kind, obj)  # idempotent
    assert obj == after


@pytest.mark.parametrize("image,policy", [
    ("nginx", "Always"), ("nginx:latest", "Always"), ("nginx:1.27", "IfNotPresent"),
    ("localhost:5000/app", "Always"), ("localhost:5000/app:v2", "IfNotPresent"),
    ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
])
def test_image_pull_policy(image: str, policy: str) -> None:
    pod = {"spec": {"containers": [{"name": "c", "image": image}]}}
    apply_defaults("v1", "Pod", pod)
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_explicit_values_are_kept() -> None:
    svc = {"spec": {"type": "NodePort", "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local",
                    "ports": [{"port": 80, "targetPort": 8080, "protocol": "SCTP"}]}}
    apply_defaults("v1", "Service", svc)
    assert svc["spec"]["externalTrafficPolicy"] == "Local"
    assert svc["spec"]["internalTrafficPolicy"] == "Local"
    assert svc["spec"]["ports"] == [{"port": 80, "targetPort": 8080, "protocol": "SCTP"}]


def test_host_network_sets_host_port() -> None:
    pod = {"spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "x:1", "ports": [{"containerPort": 53}]}]}}
    apply_defaults("v1", "Pod", pod)
    assert pod["spec"]["containers"][0]["ports"] == [{"containerPort": 53, "protocol": "TCP", "hostPort": 53}]


def test_prepare_for_create_namespace() -> None:
    ns = {"metadata": {"name": "x"}, "spec": {"finalizers": ["example.com/f"]}, "status": {"phase": "Terminating"}}
    apply_defaults("v1", "Namespace", ns)
    prepare_for_create("v1", "Namespace", ns)
    assert ns == {"metadata": {"name": "x", "labels": {"kubernetes.io/metadata.name": "x"}},
                  "spec": {"finalizers": ["example.com/f", "kubernetes"]}, "status": {"phase": "Active"}}


def test_prepare_for_create_pod() -> None:
    pod = {"spec": {"containers": [{"name": "c", "image": "x:1"}]}, "status": {"phase": "Running"}}
    prepare_for_create("v1", "Pod", pod)
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}
    assert pod["spec"]["priority"] == 0
    assert pod["spec"]["preemptionPolicy"] == "PreemptLowerPriority"


@pytest.mark.parametrize("resources,qos", [
    ([{}], "BestEffort"),
    ([{"requests": {"cpu": "100m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}], "Burstable"),
    ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
])
def test_qos(resources: list[dict[str, Any]], qos: str) -> None:
    spec = {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}
    assert pod_qos_class(spec) == qos


def test_prepare_for_create_service_seeds_cluster_ips() -> None:
    svc = {"spec": {"clusterIP": "10.96.0.20"}}
    prepare_for_create("v1", "Service", svc)
    assert svc == {"spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"]}, "status": {"loadBalancer": {}}}
    svc = {"spec": {"clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20", "fd00::20"]}}
    prepare_for_create("v1", "Service", svc)
    assert svc["spec"]["clusterIPs"] == ["10.96.0.20", "fd00::20"]
