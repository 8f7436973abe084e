"""Response details clients rely on, as kube-apiserver writes them (each failed before its fix)."""

from __future__ import annotations

import base64

import orjson
import pytest

from servicenet.client import ApiError
from servicenet.testing import RunningApi


async def _raw(api: RunningApi, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    async with api.client.session.request(method, api.url + path, data=body, headers=headers) as resp:
        return resp.status, await resp.read()


async def test_json_bodies_end_with_a_newline(api: RunningApi) -> None:
    cm = orjson.dumps({"metadata": {"name": "nl"}, "data": {"a": "b"}})
    for method, path, body, code in (
            ("POST", "/api/v1/namespaces/default/configmaps", cm, 201),
            ("GET", "/api/v1/namespaces/default/configmaps/nl", None, 200),
            ("GET", "/api/v1/namespaces/default/configmaps", None, 200),
            ("GET", "/api/v1/namespaces/default/configmaps/missing", None, 404),
            ("POST", "/api/v1/namespaces/default/configmaps", cm, 409),
            ("GET", "/api/v1", None, 200),
            ("GET", "/apis", None, 200),
            ("DELETE", "/api/v1/namespaces/default/configmaps/nl", None, 200)):
        status, raw = await _raw(api, method, path, body)
        assert status == code, (method, path, raw)
        assert raw.endswith(b"}\n") and not raw.endswith(b"\n\n"), (method, path, raw[-40:])
        orjson.loads(raw)


@pytest.mark.parametrize("path", [
    "/api/v1/namespaces/default/replicationcontrollerz",
    "/api/v1/namespaces/default/nosuchkind/x",
    "/api/v1/nosuchkind",
    "/apis/nosuch.group/v1/things",
    "/api/v1/namespaces/default/pods/p/nosuchsub",
])
async def test_unserved_kind_is_upstreams_generic_404(api: RunningApi, path: str) -> None:
    await api.client.create("v1", "pods", "default", {
        "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}})
    status, raw = await _raw(api, "GET", path)
    assert status == 404
    assert orjson.loads(raw) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                 "message": "the server could not find the requested resource",
                                 "reason": "NotFound", "details": {}, "code": 404}


async def test_namespace_status_and_finalize_still_routed(api: RunningApi) -> None:
    got = await api.client.get("v1", "namespaces", None, "default", subresource="status")
    assert got["metadata"]["name"] == "default"


async def test_services_always_carry_a_load_balancer_status(api: RunningApi) -> None:
    c = api.client
    made = await c.create("v1", "services", "default", {
        "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}},
        "status": {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}})
    assert made["status"] == {"loadBalancer": {}}
    assert (await c.get("v1", "services", "default", "s"))["status"] == {"loadBalancer": {}}
    patched = await c.patch("v1", "services", "default", "s", {"metadata": {"labels": {"x": "y"}}})
    assert patched["status"] == {"loadBalancer": {}}
    listed = await c.list("v1", "services", "default")
    assert all(s["status"] == {"loadBalancer": {}} for s in listed["items"])
    ext = await c.create("v1", "services", "default", {
        "metadata": {"name": "ext"}, "spec": {"type": "ExternalName", "externalName": "example.com"}})
    assert ext["status"] == {"loadBalancer": {}}


async def test_secret_string_data_is_merged_into_data_and_never_returned(api: RunningApi) -> None:
    c = api.client
    made = await c.create("v1", "secrets", "default", {
        "metadata": {"name": "sec"}, "data": {"keep": base64.b64encode(b"old").decode(),
                                               "v": base64.b64encode(b"replaced").decode()},
        "stringData": {"v": "s3cr3t", "u": "ünï"}})
    assert "stringData" not in made
    assert made["data"]["v"] == base64.b64encode(b"s3cr3t").decode()
    assert base64.b64decode(made["data"]["u"]).decode() == "ünï"
    assert base64.b64decode(made["data"]["keep"]) == b"old"
    got = await c.get("v1", "secrets", "default", "sec")
    assert "stringData" not in got and got["data"] == made["data"]
    patched = await c.patch("v1", "secrets", "default", "sec", {"stringData": {"w": "new"}})
    assert "stringData" not in patched and base64.b64decode(patched["data"]["w"]) == b"new"
    _, out, _ = await api.kubectl("get", "secret", "sec", "-o", "jsonpath={.data.v}")
    assert base64.b64decode(out) == b"s3cr3t"
    with pytest.raises(ApiError):  # still validated: data keys must be valid
        await c.create("v1", "secrets", "default", {"metadata": {"name": "bad"}, "stringData": {"a b": "x"}})
