"""Service-link variables, $(VAR) expansion and container env precedence (pure)."""

from __future__ import annotations

import base64

import pytest

from servicenet.node.envvars import (
    EnvError,
    EnvSources,
    container_env,
    expand,
    service_link_env,
    services_for_pod,
)

REDIS = {"metadata": {"name": "redis-primary", "namespace": "default"},
         "spec": {"clusterIP": "10.96.45.12", "ports": [{"name": "redis", "port": 6379, "protocol": "TCP"},
                                                       {"name": "metrics", "port": 9121, "protocol": "TCP"}]}}
KUBE = {"metadata": {"name": "kubernetes", "namespace": "default"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}
HEADLESS = {"metadata": {"name": "db", "namespace": "default"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}}
EXPECTED = """\
REDIS_PRIMARY_SERVICE_HOST=10.96.45.12
REDIS_PRIMARY_SERVICE_PORT=6379
REDIS_PRIMARY_SERVICE_PORT_REDIS=6379
REDIS_PRIMARY_SERVICE_PORT_METRICS=9121
REDIS_PRIMARY_PORT=tcp://10.96.45.12:6379
REDIS_PRIMARY_PORT_6379_TCP=tcp://10.96.45.12:6379
REDIS_PRIMARY_PORT_6379_TCP_PROTO=tcp
REDIS_PRIMARY_PORT_6379_TCP_PORT=6379
REDIS_PRIMARY_PORT_6379_TCP_ADDR=10.96.45.12
REDIS_PRIMARY_PORT_9121_TCP=tcp://10.96.45.12:9121
REDIS_PRIMARY_PORT_9121_TCP_PROTO=tcp
REDIS_PRIMARY_PORT_9121_TCP_PORT=9121
REDIS_PRIMARY_PORT_9121_TCP_ADDR=10.96.45.12
KUBERNETES_SERVICE_HOST=10.96.0.1
KUBERNETES_SERVICE_PORT=443
KUBERNETES_SERVICE_PORT_HTTPS=443
KUBERNETES_PORT=tcp://10.96.0.1:443
KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443
KUBERNETES_PORT_443_TCP_PROTO=tcp
KUBERNETES_PORT_443_TCP_PORT=443
KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1
"""


def pod(ns: str = "default", **spec: object) -> dict:
    return {"metadata": {"name": "p", "namespace": ns, "uid": "u1", "labels": {"app": "x"}},
            "spec": {"containers": [], "nodeName": "n1", "serviceAccountName": "sa", **spec},
            "status": {"podIP": "10.244.0.5", "hostIP": "10.244.0.1", "podIPs": [{"ip": "10.244.0.5"}]}}


def test_service_links_literal() -> None:
    svcs = services_for_pod(pod(), [KUBE, HEADLESS, REDIS])
    got = "".join(f"{k}={v}\n" for k, v in service_link_env(svcs))
    assert got == EXPECTED


def test_other_namespace_sees_only_master_service() -> None:
    names = [s["metadata"]["name"] for s in services_for_pod(pod("team"), [KUBE, REDIS])]
    assert names == ["kubernetes"]
    names = [s["metadata"]["name"] for s in services_for_pod(pod(enableServiceLinks=False), [KUBE, REDIS])]
    assert names == ["kubernetes"]


@pytest.mark.parametrize(("value", "expected"), [
    ("$(A)", "a"),
    ("x-$(A)-$(B)", "x-a-b"),
    ("$$(A)", "$(A)"),
    ("$(UNKNOWN)", "$(UNKNOWN)"),
    ("$(A", "$(A"),
    ("$A", "$A"),
    ("$", "$"),
    ("$()", "$()"),
    ("$$$(A)", "$a"),
])
def test_expand(value: str, expected: str) -> None:
    assert expand(value, {"A": "a", "B": "b"}.get) == expected


def test_container_env_precedence_and_sources() -> None:
    cm = {"metadata": {"name": "cfg", "namespace": "default"}, "data": {"MODE": "fast", "1BAD": "x", "K": "v"}}
    sec = {"metadata": {"name": "s", "namespace": "default"}, "data": {"pw": base64.b64encode(b"hunter2").decode()}}
    c = {"name": "app", "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
         "envFrom": [{"configMapRef": {"name": "cfg"}}, {"prefix": "S_", "secretRef": {"name": "s"}}],
         "env": [
             {"name": "MODE", "value": "slow-$(MODE)"},
             {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
             {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
             {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
             {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
             {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
             {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
             {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
             {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}},
             {"name": "REDIS_PRIMARY_SERVICE_HOST", "value": "override"},
             {"name": "LINK", "value": "$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
         ]}
    env = container_env(pod(), c, EnvSources(services=(KUBE, REDIS), config_maps={"cfg": cm}, secrets={"s": sec}))
    assert env["MODE"] == "slow-fast"
    assert "1BAD" not in env and env["K"] == "v"
    assert env["S_pw"] == "hunter2" and env["PW"] == "hunter2"
    assert (env["POD"], env["APP"], env["IP"], env["SA"]) == ("p", "x", "10.244.0.5", "sa")
    assert (env["MEM"], env["CPU"]) == ("64", "1")
    assert "OPT" not in env
    assert env["REDIS_PRIMARY_SERVICE_HOST"] == "override"
    assert env["REDIS_PRIMARY_SERVICE_PORT"] == "6379"
    assert env["LINK"] == "10.96.0.1:443"


def test_missing_required_key_is_an_error() -> None:
    c = {"name": "app", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]}
    with pytest.raises(EnvError, match='configmap "cfg" not found'):
        container_env(pod(), c, EnvSources())
    cm = {"metadata": {"name": "cfg", "namespace": "default"}, "data": {}}
    with pytest.raises(EnvError, match="couldn't find key k in ConfigMap default/cfg"):
        container_env(pod(), c, EnvSources(config_maps={"cfg": cm}))
