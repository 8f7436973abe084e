from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from servicenet.api import schema
from servicenet.api.errors import ApiStatusError
from servicenet.api.resources import all_resources

ROOT = Path(__file__).resolve().parents[2]


def test_every_served_kind_has_a_schema() -> None:
    for r in all_resources():
        assert schema.definition_name(r.api_version, r.kind) is not None, r.kind
        if "list" in r.verbs:  # the review kinds are create-only and have no list
            assert schema.definition_name(r.api_version, r.list_kind) is not None, r.list_kind
    assert schema.definition_name("autoscaling/v1", "Scale") == "io.k8s.api.autoscaling.v1.Scale"


def test_upstream_definition_names() -> None:
    d = schema.definitions()
    for name in ("io.k8s.api.core.v1.Service", "io.k8s.api.core.v1.ServiceSpec", "io.k8s.api.core.v1.PodTemplateSpec",
                 "io.k8s.api.apps.v1.DeploymentSpec", "io.k8s.api.discovery.v1.EndpointPort",
                 "io.k8s.api.core.v1.EndpointPort", "io.k8s.api.networking.v1.IngressSpec",
                 "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "io.k8s.apimachinery.pkg.util.intstr.IntOrString"):
        assert name in d, name
    assert d["io.k8s.api.core.v1.Service"]["x-kubernetes-group-version-kind"] == [
        {"group": "", "version": "v1", "kind": "Service"}]
    assert "port" in d["io.k8s.api.core.v1.ServicePort"]["required"]


def test_unknown_fields_paths() -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x", "labels": {"any": "thing"}, "bogus": 1},
           "spec": {"foo": 1, "selector": {"a": "b"}, "ports": [{"port": 80, "targetPort": "http"},
                                                            {"port": 81, "bogus": True}]}}
    assert schema.unknown_fields("v1", "Service", svc) == [".metadata.bogus", ".spec.foo", ".spec.ports[1].bogus"]


def test_nested_templates_and_free_form() -> None:
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "annotations": {"x/y": "z"}},
           "spec": {"selector": {"matchLabels": {"app": "x"}},
                    "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
                    "template": {"metadata": {"labels": {"app": "x"}, "creationTimestamp": None},
                                 "spec": {"containers": [{"name": "c", "image": "i",
                                                          "resources": {"limits": {"cpu": 1}},
                                                          "env": [{"name": "A", "value": "b", "junk": 1}]}]}}}}
    assert schema.unknown_fields("apps/v1", "Deployment", dep) == [".spec.template.spec.containers[0].env[0].junk"]
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}, "binaryData": {"b": "AA=="}, "extra": {}}
    assert schema.unknown_fields("v1", "ConfigMap", cm) == [".extra"]
    sl = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
          "endpoints": [{"addresses": ["1.2.3.4"], "conditions": {"ready": True, "x": 1}}], "ports": [{"port": 1}]}
    assert schema.unknown_fields("discovery.k8s.io/v1", "EndpointSlice", sl) == [".endpoints[0].conditions.x"]
    cr = {"apiVersion": "apps/v1", "kind": "ControllerRevision", "data": {"anything": {"goes": 1}}, "revision": 1}
    assert schema.unknown_fields("apps/v1", "ControllerRevision", cr) == []
    assert schema.unknown_fields("example.com/v1", "Widget", {"x": 1}) == []


def test_field_validation_modes() -> None:
    obj = {"apiVersion": "v1", "kind": "Service", "spec": {"foo": 1, "bar": 2}}
    assert schema.check_fields("v1", "Service", obj, "Ignore") == []
    assert schema.check_fields("v1", "Service", obj, "Warn") == ['unknown field "spec.foo"', 'unknown field "spec.bar"']
    assert schema.check_fields("v1", "Service", obj, None) == ['unknown field "spec.foo"', 'unknown field "spec.bar"']
    with pytest.raises(ApiStatusError) as ei:
        schema.check_fields("v1", "Service", obj, "Strict")
    st = ei.value.status()
    assert st["code"] == 400 and st["reason"] == "BadRequest"
    assert st["message"] == ('Service in version "v1" cannot be handled as a Service: '
                             'strict decoding error: unknown field "spec.foo", unknown field "spec.bar"')
    with pytest.raises(ApiStatusError) as ei:
        schema.check_fields("v1", "Service", obj, "Strict", body=False)
    assert ei.value.message == 'strict decoding error: unknown field "spec.foo", unknown field "spec.bar"'
    assert schema.check_fields("v1", "Service", {"spec": {}}, "Strict") == []
    with pytest.raises(ApiStatusError):
        schema.check_fields("v1", "Service", obj, "Loose")
    assert schema.warning_header('unknown field "spec.foo"') == '299 - "unknown field \\"spec.foo\\""'


def test_generated_file_is_up_to_date(tmp_path: Path) -> None:
    kubernetes = pytest.importorskip("kubernetes")
    if not schema.load()["generator"].endswith(" " + kubernetes.__version__):
        pytest.skip("schema.json was generated from another kubernetes client version")
    out = tmp_path / "schema.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_schema.py"), "-o", str(out)], check=True,
                   capture_output=True)
    assert json.loads(out.read_text()) == json.loads((ROOT / "servicenet" / "api" / "schema.json").read_text())


def test_duplicate_fields() -> None:
    raw = b'{"apiVersion":"v1","kind":"Service","spec":{"type":"A","type":"B","ports":[{"port":1,"port":2}]}}'
    assert schema.duplicate_fields(raw) == [".spec.type", ".spec.ports[0].port"]
    assert schema.duplicate_fields(b"{not json") == []
    obj = json.loads(raw)
    assert schema.check_fields("v1", "Service", obj, "Warn", raw=raw) == [
        'duplicate field "spec.type"', 'duplicate field "spec.ports[0].port"']
    with pytest.raises(ApiStatusError) as ei:
        schema.check_fields("v1", "Service", {**obj, "x": 1}, "Strict", raw=raw)
    assert ei.value.message == ('Service in version "v1" cannot be handled as a Service: strict decoding error: '
                                'duplicate field "spec.type", duplicate field "spec.ports[0].port", unknown field "x"')


def test_unknown_fields_repeatable_with_cached_schemas() -> None:
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "bogus": 1},
           "spec": {"containers": [{"name": "c", "image": "i", "nope": {"x": 1}}]}}
    first = schema.unknown_fields("v1", "Pod", obj)
    assert first == [".metadata.bogus", ".spec.containers[0].nope"]
    assert schema.unknown_fields("v1", "Pod", obj) == first
