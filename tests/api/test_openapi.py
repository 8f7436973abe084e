from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from servicenet.api import openapi, resources, schema
from servicenet.api.errors import ApiStatusError

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


def test_index_and_hash_are_stable() -> None:
    idx = openapi.index()
    assert set(idx["paths"]) == {"api/v1", "apis/apps/v1", "apis/batch/v1", "apis/coordination.k8s.io/v1", "apis/discovery.k8s.io/v1",
                                 "apis/networking.k8s.io/v1",
                                 "apis/authentication.k8s.io/v1", "apis/authorization.k8s.io/v1",
                                 "apis/rbac.authorization.k8s.io/v1", "apis/admissionregistration.k8s.io/v1",
                                 "apis/apiextensions.k8s.io/v1"}
    url = idx["paths"]["api/v1"]["serverRelativeURL"]
    assert url.startswith("/openapi/v3/api/v1?hash=")
    assert url.split("hash=")[1] == openapi.document_hash("", "v1")
    assert len(openapi.document_hash("", "v1")) == 128
    assert openapi.index() == idx
    assert openapi.lookup("/openapi/v3/apis/apps/v1") == ("apps", "v1")
    assert openapi.lookup("/openapi/v3/apis/foo/v1") is None
    assert openapi.document("foo", "v1") is None


def test_document_shape() -> None:
    doc = openapi.document("", "v1")
    assert doc is not None
    assert doc["openapi"] == "3.0.0"
    item = doc["paths"]["/api/v1/namespaces/{namespace}/services/{name}"]
    for verb in ("put", "patch"):
        names = [p["name"] for p in item[verb]["parameters"]]
        assert "fieldValidation" in names
        assert item[verb]["x-kubernetes-group-version-kind"] == {"group": "", "version": "v1", "kind": "Service"}
    assert item["patch"]["operationId"] == "patchCoreV1NamespacedService"
    assert set(item["patch"]["requestBody"]["content"]) == {
        "application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"}
    coll = doc["paths"]["/api/v1/namespaces/{namespace}/services"]
    assert "fieldValidation" in [p["name"] for p in coll["post"]["parameters"]]
    assert coll["delete"]["operationId"] == "deleteCoreV1CollectionNamespacedService"
    assert "/api/v1/nodes/{name}/status" in doc["paths"]
    assert "/api/v1/namespaces/{namespace}/pods/{name}/log" in doc["paths"]
    schemas = doc["components"]["schemas"]
    assert schemas["io.k8s.api.core.v1.Service"]["x-kubernetes-group-version-kind"] == [
        {"group": "", "version": "v1", "kind": "Service"}]
    assert "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" in schemas
    assert "io.k8s.api.apps.v1.Deployment" not in schemas
    # every $ref resolves inside the document
    text = json.dumps(doc)
    for ref in set(part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]):
        assert ref in schemas, ref
    apps = openapi.document("apps", "v1")
    assert apps is not None
    scale = apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["put"]
    assert scale["x-kubernetes-group-version-kind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}
    assert "io.k8s.api.core.v1.PodTemplateSpec" in apps["components"]["schemas"]


# ---------------------------------------------------------------- real kubectl against a tiny fake server


class Fake:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], str]] = []
        self.objects: dict[str, dict[str, Any]] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, req: web.Request) -> web.StreamResponse:
        body = await req.text()
        self.requests.append((req.method, req.path, dict(req.query), req.headers.get("Content-Type", "")))
        p = req.path
        if p == "/api":
            return web.json_response(resources.api_versions())
        if p == "/apis":
            return web.json_response(resources.api_group_list())
        if p == "/openapi/v3":
            return web.json_response(openapi.index())
        if p.startswith("/openapi/v3/"):
            gv = openapi.lookup(p)
            if gv:
                return web.Response(body=openapi.document_bytes(*gv), content_type="application/json")
        parts = p.strip("/").split("/")
        if p.startswith("/api/v1") and len(parts) == 2 or p.startswith("/apis/") and len(parts) == 3:
            g, v = ("", "v1") if parts[0] == "api" else (parts[1], parts[2])
            doc = resources.api_resource_list(g, v)
            if doc:
                return web.json_response(doc)
        if p.startswith("/api/v1/namespaces/default/services"):
            name = parts[-1] if len(parts) == 6 else None
            try:
                if req.method == "POST":
                    obj = json.loads(body)
                    warns = schema.check_fields("v1", "Service", obj, req.query.get("fieldValidation"))
                    obj["metadata"].update({"namespace": "default", "uid": "u1", "resourceVersion": "1",
                                            "creationTimestamp": "2026-01-01T00:00:00Z"})
                    self.objects[obj["metadata"]["name"]] = obj
                    resp = web.json_response(obj, status=201)
                    for w in warns:
                        resp.headers.add("Warning", schema.warning_header(w))
                    return resp
                if req.method == "GET" and name:
                    if name in self.objects:
                        return web.json_response(self.objects[name])
                    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {},
                                              "status": "Failure", "reason": "NotFound", "code": 404,
                                              "message": f'services "{name}" not found',
                                              "details": {"name": name, "kind": "services"}}, status=404)
                if req.method == "PATCH" and name in self.objects:
                    return web.json_response(self.objects[name])
            except ApiStatusError as e:
                return web.json_response(e.status(), status=e.code)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "reason": "NotFound", "code": 404, "message": "the server could not find the "
                                  "requested resource"}, status=404)


async def _kubectl(tmp: Path, server: str, *args: str) -> tuple[int, str, str]:
    kubeconfig = tmp / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": server}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t", "namespace": "default"}}],
        "users": [{"name": "t", "user": {"token": "x"}}]}))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECACHEDIR": str(tmp / "cache"), "HOME": str(tmp)}
    proc = await asyncio.create_subprocess_exec(KUBECTL, *args, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


SVC = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
       "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}


@pytest.fixture
async def fake_server() -> Any:
    if not os.path.exists(KUBECTL):
        pytest.skip("kubectl not installed")
    fake = Fake()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_kubectl_create_sends_strict(fake_server: Any, tmp_path: Path) -> None:
    fake, server = fake_server
    f = tmp_path / "svc.json"
    f.write_text(json.dumps(SVC))
    rc, out, err = await _kubectl(tmp_path, server, "create", "-f", str(f))
    assert rc == 0, err
    assert out.strip() == "service/web created"
    posts = [r for r in fake.requests if r[0] == "POST"]
    assert len(posts) == 1
    assert posts[0][2] == {"fieldManager": "kubectl-create", "fieldValidation": "Strict"}
    assert not any(r[1].startswith("/openapi/v2") for r in fake.requests)


async def test_kubectl_unknown_field_rejected_by_server(fake_server: Any, tmp_path: Path) -> None:
    fake, server = fake_server
    bad = copy.deepcopy(SVC)
    bad["spec"]["bogus"] = 1
    f = tmp_path / "svc.json"
    f.write_text(json.dumps(bad))
    rc, out, err = await _kubectl(tmp_path, server, "create", "-f", str(f))
    assert rc != 0
    assert ('Error from server (BadRequest): error when creating "' + str(f) + '": Service in version "v1" '
            'cannot be handled as a Service: strict decoding error: unknown field "spec.bogus"') in err
    rc, out, err = await _kubectl(tmp_path, server, "create", "--validate=warn", "-f", str(f))
    assert rc == 0, err
    assert 'Warning: unknown field "spec.bogus"' in err
    assert [r[2].get("fieldValidation") for r in fake.requests if r[0] == "POST"] == ["Strict", "Warn"]


async def test_kubectl_apply_existing_uses_smp_without_v3_warning(fake_server: Any, tmp_path: Path) -> None:
    fake, server = fake_server
    f = tmp_path / "svc.json"
    f.write_text(json.dumps(SVC))
    rc, out, err = await _kubectl(tmp_path, server, "apply", "-f", str(f))
    assert rc == 0, err
    assert out.strip() == "service/web created"
    changed = copy.deepcopy(SVC)
    changed["spec"]["ports"][0]["targetPort"] = 9090
    f.write_text(json.dumps(changed))
    rc, out, err = await _kubectl(tmp_path, server, "apply", "-f", str(f))
    assert rc == 0, err
    assert "warning" not in err.lower(), err
    patches = [r for r in fake.requests if r[0] == "PATCH"]
    assert len(patches) == 1
    assert patches[0][3] == "application/strategic-merge-patch+json"
    assert patches[0][2]["fieldValidation"] == "Strict"


async def test_kubectl_explain(fake_server: Any, tmp_path: Path) -> None:
    _fake, server = fake_server
    rc, out, err = await _kubectl(tmp_path, server, "explain", "service.spec.ports")
    assert rc == 0, err
    assert "KIND:       Service" in out
    assert "FIELD: ports <[]ServicePort>" in out
    assert "targetPort\t<" in out
    assert "protocol\t<string>" in out
    assert "port\t<integer> -required-" in out


async def test_kubectl_api_resources(fake_server: Any, tmp_path: Path) -> None:
    """kubectl understands the legacy discovery documents (short names, categories, scopes)."""
    _fake, server = fake_server
    rc, out, err = await _kubectl(tmp_path, server, "api-resources", "-o", "wide")
    assert rc == 0, err
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert lines["services"][1:5] == ["svc", "v1", "true", "Service"]
    assert lines["deployments"][1:5] == ["deploy", "apps/v1", "true", "Deployment"]
    assert lines["endpointslices"][1:4] == ["discovery.k8s.io/v1", "true", "EndpointSlice"]
    assert lines["namespaces"][1:5] == ["ns", "v1", "false", "Namespace"]
    assert lines["pods"][-1] == "all"


def test_v3_aliases() -> None:
    assert openapi.v3_index() == openapi.index()
    assert openapi.v3_document("apis/apps/v1") == openapi.document_bytes("apps", "v1")
    assert openapi.v3_document("api/v1?hash=X") == openapi.document_bytes("", "v1")
    assert openapi.v3_document("apis/nosuch.example.com/v1") is None
