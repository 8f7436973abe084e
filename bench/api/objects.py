"""Benchmark objects: a realistic ~2 KB pod (as stored, after defaulting), a Service and a small ConfigMap."""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]


def pod(name: str, i: int = 0, app: str = "web") -> Obj:
    """A Deployment-style pod as a client sends it (the server adds defaults, uid, managedFields...)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {"app": app, "pod-template-hash": "5d8f9c7b6d", "tier": "frontend",
                       "app.kubernetes.io/version": "1.4.2"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9102",
                            "kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"},
        },
        "spec": {
            "containers": [{
                "name": "app",
                "image": "registry.example.com/team/web-frontend:1.4.2",
                "args": ["--listen=:8080", "--metrics=:9102", "--log-level=info"],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                          {"name": "metrics", "containerPort": 9102, "protocol": "TCP"}],
                "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                        {"name": "UPSTREAM_URL", "value": "http://backend.default.svc.cluster.local:8080"},
                        {"name": "CACHE_TTL", "value": "30s"}],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8080},
                                   "periodSeconds": 5, "failureThreshold": 3},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080},
                                  "initialDelaySeconds": 10, "periodSeconds": 10},
                "volumeMounts": [{"name": "config", "mountPath": "/etc/app"},
                                 {"name": "tmp", "mountPath": "/tmp"}],
            }],
            "volumes": [{"name": "config", "configMap": {"name": "web-config"}},
                        {"name": "tmp", "emptyDir": {}}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                             "effect": "NoExecute", "tolerationSeconds": 300}],
            "terminationGracePeriodSeconds": 30,
        },
    }


def service(name: str, app: str = "web") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"selector": {"app": app},
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]},
    }


def configmap(name: str, payload: int = 200) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
            "data": {"value": "x" * payload}}


def namespace(name: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
