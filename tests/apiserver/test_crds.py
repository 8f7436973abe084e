"""CustomResourceDefinitions served by the API server: lifecycle, discovery, schema handling,
subresources, versions, apply merging and deletion (issue 10)."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import ssl
import urllib.error
import urllib.request
from typing import Any

import aiohttp
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from servicenet.client.rest import ApiError
from servicenet.testing import RunningApi

CRD_AV = "apiextensions.k8s.io/v1"
CT_AV = "stable.example.com/v1"

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "self.minReplicas <= self.replicas",
                 "messageExpression": "'replicas ' + string(self.replicas) + ' is below minReplicas ' + "
                                      "string(self.minReplicas)"},
                {"rule": "!has(oldSelf.mode) || self.mode == oldSelf.mode", "message": "mode is immutable",
                 "fieldPath": ".mode", "reason": "FieldValueForbidden"},
            ],
            "properties": {
                "cronSpec": {"type": "string", "pattern": r"^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$"},
                "image": {"type": "string", "maxLength": 20},
                "replicas": {"type": "integer", "minimum": 0, "default": 1},
                "minReplicas": {"type": "integer", "default": 0},
                "mode": {"type": "string", "enum": ["Fast", "Slow"], "default": "Slow"},
                "port": {"x-kubernetes-int-or-string": True},
                "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                             "additionalProperties": {"type": "string"}},
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["name"], "maxItems": 8,
                          "items": {"type": "object", "required": ["name"],
                                    "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            },
        },
        "status": {"type": "object", "properties": {"replicas": {"type": "integer"},
                                                    "labelSelector": {"type": "string"},
                                                    "phase": {"type": "string"}}},
    },
}


def crontab_crd(schema: dict[str, Any] | None = None) -> dict[str, Any]:
    s = schema or SCHEMA
    cols = [{"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
            {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
            {"name": "Image", "type": "string", "jsonPath": ".spec.image", "priority": 1},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    subs = {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                    "statusReplicasPath": ".status.replicas",
                                    "labelSelectorPath": ".status.labelSelector"}}
    return {
        "apiVersion": CRD_AV, "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {"group": "stable.example.com", "scope": "Namespaced",
                 "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"],
                           "categories": ["all"]},
                 "versions": [
                     {"name": "v1beta1", "served": True, "storage": False, "schema": {"openAPIV3Schema": s},
                      "subresources": subs, "additionalPrinterColumns": cols},
                     {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": s},
                      "subresources": subs, "additionalPrinterColumns": cols,
                      "selectableFields": [{"jsonPath": ".spec.mode"}]},
                 ]},
    }


async def established(api: RunningApi, name: str = "crontabs.stable.example.com") -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        crd = await api.client.get(CRD_AV, "customresourcedefinitions", None, name)
        conds = {c["type"]: c["status"] for c in (crd.get("status") or {}).get("conditions") or []}
        if conds.get("Established") == "True":
            return crd
        assert asyncio.get_running_loop().time() < deadline, crd.get("status")
        await asyncio.sleep(0.05)


async def install(api: RunningApi) -> dict[str, Any]:
    await api.client.create(CRD_AV, "customresourcedefinitions", None, crontab_crd())
    return await established(api)


def ct(name: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": CT_AV, "kind": "CronTab", "metadata": {"name": name},
            "spec": {"cronSpec": "* * * * */5", "image": "img", **spec}}


async def test_crd_lifecycle_discovery_and_printer_columns(api: RunningApi) -> None:
    crd = await install(api)
    conds = {c["type"]: (c["status"], c["reason"]) for c in crd["status"]["conditions"]}
    assert conds == {"NamesAccepted": ("True", "NoConflicts"), "Established": ("True", "InitialNamesAccepted")}
    assert crd["status"]["acceptedNames"]["shortNames"] == ["ct"]
    assert crd["status"]["storedVersions"] == ["v1"]
    assert crd["metadata"]["finalizers"] == ["customresourcecleanup.apiextensions.k8s.io"]

    group = await api.client.request("GET", "/apis/stable.example.com")
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    assert group["preferredVersion"]["version"] == "v1"
    rl = await api.client.request("GET", "/apis/stable.example.com/v1")
    by_name = {r["name"]: r for r in rl["resources"]}
    assert by_name["crontabs"]["shortNames"] == ["ct"] and by_name["crontabs"]["categories"] == ["all"]
    assert by_name["crontabs/scale"]["group"] == "autoscaling" and by_name["crontabs/status"]["kind"] == "CronTab"
    _, out, _ = await api.kubectl("get", "--raw", "/apis")
    assert "stable.example.com" in out
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    async with api.client.session.get(api.url + "/apis", headers={"Accept": accept}) as resp:
        assert resp.headers["Content-Type"] == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        agg = json.loads(await resp.read())
    grp = next(g for g in agg["items"] if g["metadata"].get("name") == "stable.example.com")
    assert [v["version"] for v in grp["versions"]] == ["v1", "v1beta1"]
    res = grp["versions"][0]["resources"][0]
    assert (res["resource"], res["scope"], res["shortNames"], res["categories"]) == \
        ("crontabs", "Namespaced", ["ct"], ["all"])
    assert {s["subresource"] for s in res["subresources"]} == {"status", "scale"}
    _, out, _ = await api.kubectl("api-resources", "--api-group=stable.example.com")
    assert re.search(r"^crontabs\s+ct\s+stable\.example\.com/v1\s+true\s+CronTab$", out, re.M), out

    await api.client.create(CT_AV, "crontabs", "default", ct("a", replicas=3))
    _, out, _ = await api.kubectl("get", "ct")
    assert re.split(r"\s{2,}", out.splitlines()[0].strip()) == ["NAME", "SPEC", "REPLICAS", "AGE"]
    assert re.match(r"^a\s+\* \* \* \* \*/5\s+3\s+\d+s$", out.splitlines()[1]), out
    _, out, _ = await api.kubectl("get", "crontabs.stable.example.com", "-o", "wide")
    assert re.split(r"\s{2,}", out.splitlines()[0].strip()) == ["NAME", "SPEC", "REPLICAS", "IMAGE", "AGE"]
    _, out, _ = await api.kubectl("get", "all")
    assert "crontab.stable.example.com/a" in out, out
    await api.client.create(CT_AV, "crontabs", "default", ct("b", mode="Fast"))
    fast = await api.client.list(CT_AV, "crontabs", "default", field_selector="spec.mode=Fast")
    assert [o["metadata"]["name"] for o in fast["items"]] == ["b"]
    with pytest.raises(ApiError) as ei:
        await api.client.list(CT_AV, "crontabs", "default", field_selector="spec.image=img")
    assert ei.value.status == 400 and "field label not supported: spec.image" in ei.value.message
    _, out, _ = await api.kubectl("explain", "crontab.spec.ports")
    assert "FIELD: ports <[]Object>" in out, out


async def test_schema_pruning_defaulting_and_validation(api: RunningApi) -> None:
    await install(api)
    created = await api.client.create(CT_AV, "crontabs", "default", ct(
        "d", port="http", extra={"anything": {"goes": [1, 2]}}, unknown=1, status={"phase": "x"}))
    spec = created["spec"]
    assert "unknown" not in spec  # pruned
    assert spec["extra"] == {"anything": {"goes": [1, 2]}}  # preserved
    assert (spec["replicas"], spec["minReplicas"], spec["mode"]) == (1, 0, "Slow")  # defaulted
    assert "status" not in created  # create ignores status when the status subresource is on
    with pytest.raises(ApiError) as ei:
        await api.client.request("POST", "/apis/stable.example.com/v1/namespaces/default/crontabs",
                                 params={"fieldValidation": "Strict"}, body=ct("s", bogus=True))
    assert ei.value.status == 400
    assert ei.value.message == ('CronTab in version "v1" cannot be handled as a CronTab: strict decoding error: '
                                'unknown field "spec.bogus"')

    bad = ct("bad", replicas="three", image="x" * 21, mode="Medium", cronSpec="nope", port=[1],
             ports=[{"name": "a"}, {"name": "a"}, {"port": 1}], tags=["x", "x"])
    with pytest.raises(ApiError) as ei:
        await api.client.create(CT_AV, "crontabs", "default", bad)
    err = ei.value
    assert err.status == 422 and err.reason == "Invalid"
    causes = {(c["field"], c["reason"]) for c in err.body["details"]["causes"]}
    assert causes == {
        ("spec.replicas", "FieldValueTypeInvalid"), ("spec.image", "FieldValueTooLong"),
        ("spec.mode", "FieldValueNotSupported"), ("spec.cronSpec", "FieldValueInvalid"),
        ("spec.port", "FieldValueTypeInvalid"), ("spec.ports[1]", "FieldValueDuplicate"),
        ("spec.ports[2].name", "FieldValueRequired"), ("spec.tags[1]", "FieldValueDuplicate"),
        ("<nil>", "FieldValueInvalid"),  # CEL rules were skipped: the object's shape is wrong
    }, causes
    assert err.message.startswith('CronTab.stable.example.com "bad" is invalid: [')
    assert 'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "three"' \
        in err.message
    assert 'spec.mode: Unsupported value: "Medium": supported values: "Fast", "Slow"' in err.message

    # CEL: messageExpression, and a transition rule (oldSelf) with fieldPath and reason
    with pytest.raises(ApiError) as ei:
        await api.client.create(CT_AV, "crontabs", "default", ct("cel", replicas=1, minReplicas=2))
    assert ei.value.status == 422
    assert ei.value.message == ('CronTab.stable.example.com "cel" is invalid: spec: Invalid value: "object": '
                                "replicas 1 is below minReplicas 2")
    with pytest.raises(ApiError) as ei:
        await api.client.patch(CT_AV, "crontabs", "default", "d", {"spec": {"mode": "Fast"}})
    assert ei.value.body["details"]["causes"] == [
        {"reason": "FieldValueForbidden", "message": "Forbidden: mode is immutable", "field": "spec.mode"}]
    # a write that keeps the mode passes the transition rule
    out = await api.client.patch(CT_AV, "crontabs", "default", "d", {"spec": {"replicas": 4}})
    assert out["spec"]["replicas"] == 4 and out["metadata"]["generation"] == 2


async def test_status_and_scale_subresources(api: RunningApi) -> None:
    await install(api)
    await api.client.create(CT_AV, "crontabs", "default", ct("s", replicas=2))
    cur = await api.client.get(CT_AV, "crontabs", "default", "s")
    cur["status"] = {"replicas": 2, "labelSelector": "app=s"}
    cur["spec"]["replicas"] = 9  # ignored by a status write
    out = await api.client.update_status(CT_AV, "crontabs", "default", "s", cur)
    assert out["status"]["replicas"] == 2 and out["spec"]["replicas"] == 2
    assert out["metadata"]["generation"] == 1
    # a main write ignores status
    out["status"] = {"replicas": 7}
    out2 = await api.client.update(CT_AV, "crontabs", "default", "s", out)
    assert out2["status"]["replicas"] == 2
    # a status write is validated against the schema
    with pytest.raises(ApiError) as ei:
        await api.client.patch(CT_AV, "crontabs", "default", "s", {"status": {"replicas": "x"}},
                               subresource="status")
    assert ei.value.status == 422
    scale = await api.client.get(CT_AV, "crontabs", "default", "s", subresource="scale")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2} and scale["status"] == {"replicas": 2, "selector": "app=s"}
    _, out_s, _ = await api.kubectl("scale", "crontab/s", "--replicas=5")
    assert "scaled" in out_s
    got = await api.client.get(CT_AV, "crontabs", "default", "s")
    assert got["spec"]["replicas"] == 5 and got["metadata"]["generation"] == 2


async def test_versions_with_none_conversion(api: RunningApi) -> None:
    await install(api)
    beta = ct("v")
    beta["apiVersion"] = "stable.example.com/v1beta1"
    created = await api.client.create("stable.example.com/v1beta1", "crontabs", "default", beta)
    assert created["apiVersion"] == "stable.example.com/v1beta1"
    got = await api.client.get(CT_AV, "crontabs", "default", "v")
    assert got["apiVersion"] == CT_AV
    lst = await api.client.list("stable.example.com/v1beta1", "crontabs", "default")
    assert [i["apiVersion"] for i in lst["items"]] == ["stable.example.com/v1beta1"]
    raw = api.server.store.get("/registry/stable.example.com/crontabs/default/v")
    assert json.loads(raw.value)["apiVersion"] == CT_AV  # stored at the storage version
    _, out, _ = await api.kubectl("get", "crontabs.v1beta1.stable.example.com", "v", "-o", "yaml")
    assert yaml.safe_load(out)["apiVersion"] == "stable.example.com/v1beta1"


async def test_server_side_apply_merges_by_list_map_keys(api: RunningApi) -> None:
    await install(api)
    a = ct("m", ports=[{"name": "http", "port": 80}], tags=["a"], selector={"app": "x"})
    await api.client.patch(CT_AV, "crontabs", "default", "m", a, patch_type="apply", field_manager="one")
    b = {"apiVersion": CT_AV, "kind": "CronTab", "metadata": {"name": "m"},
         "spec": {"ports": [{"name": "https", "port": 443}], "tags": ["b"]}}
    out = await api.client.patch(CT_AV, "crontabs", "default", "m", b, patch_type="apply", field_manager="two")
    assert out["spec"]["ports"] == [{"name": "http", "port": 80}, {"name": "https", "port": 443}]
    assert out["spec"]["tags"] == ["a", "b"]
    # an atomic map is owned whole: another manager changing it conflicts
    c = {"apiVersion": CT_AV, "kind": "CronTab", "metadata": {"name": "m"}, "spec": {"selector": {"app": "y"}}}
    with pytest.raises(ApiError) as ei:
        await api.client.patch(CT_AV, "crontabs", "default", "m", c, patch_type="apply", field_manager="two")
    assert ei.value.status == 409 and ".spec.selector" in ei.value.message
    # manager one drops its port: only its own entry goes
    a2 = copy.deepcopy(a)
    a2["spec"]["ports"] = []
    out = await api.client.patch(CT_AV, "crontabs", "default", "m", a2, patch_type="apply", field_manager="one")
    assert out["spec"]["ports"] == [{"name": "https", "port": 443}]


async def test_deleting_a_crd_deletes_its_objects(api: RunningApi) -> None:
    await install(api)
    for n in ("x1", "x2"):
        await api.client.create(CT_AV, "crontabs", "default", ct(n))
    held = ct("held")  # its own finalizer keeps the CRD terminating until it is released
    held["metadata"]["finalizers"] = ["example.com/hold"]
    await api.client.create(CT_AV, "crontabs", "default", held)
    lst = await api.client.list(CT_AV, "crontabs", "default")
    events: list[tuple[str, str]] = []

    async def watch() -> None:
        async for ev in api.client.watch(CT_AV, "crontabs", "default", resource_version=lst["metadata"][
                "resourceVersion"], timeout_seconds=20, allow_bookmarks=False):
            events.append((ev["type"], ev["object"]["metadata"]["name"]))
            if ("DELETED", "held") in events:
                return

    task = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    await api.client.delete(CRD_AV, "customresourcedefinitions", None, "crontabs.stable.example.com")
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # terminating: creates are refused
        try:
            await api.client.create(CT_AV, "crontabs", "default", ct("late"))
        except ApiError as exc:
            assert (exc.status, exc.message) == (
                405, "create not allowed while custom resource definition is terminating")
            break
        await api.client.delete(CT_AV, "crontabs", "default", "late")
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    crd = await api.client.get(CRD_AV, "customresourcedefinitions", None, "crontabs.stable.example.com")
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}.get("Terminating") == "True"
    await api.client.patch(CT_AV, "crontabs", "default", "held", {"metadata": {"finalizers": None}})
    await asyncio.wait_for(task, 15)
    deleted = sorted(n for t, n in events if t == "DELETED")
    assert deleted == ["held", "x1", "x2"], events
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            await api.client.get(CRD_AV, "customresourcedefinitions", None, "crontabs.stable.example.com")
        except ApiError as exc:
            assert exc.status == 404
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    with pytest.raises(ApiError) as ei:
        await api.client.list(CT_AV, "crontabs", "default")
    assert ei.value.status == 404
    assert api.server.store.list("/registry/stable.example.com/")[0] == []
    # the same CRD again starts empty
    await install(api)
    assert (await api.client.list(CT_AV, "crontabs", "default"))["items"] == []


async def test_invalid_crds_and_name_conflicts(api: RunningApi) -> None:
    bad = crontab_crd()
    bad["metadata"]["name"] = "wrong.stable.example.com"
    bad["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = {"properties": {"spec": {"properties": {}}}}
    bad["spec"]["versions"][1]["schema"]["openAPIV3Schema"] = {
        "type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": [
            {"rule": "self.replicas >"}]}}}
    with pytest.raises(ApiError) as ei:
        await api.client.create(CRD_AV, "customresourcedefinitions", None, bad)
    fields = {c["field"] for c in ei.value.body["details"]["causes"]}
    assert {"metadata.name", "spec.versions[0].schema.openAPIV3Schema.type",
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].type",
            "spec.versions[1].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"} <= fields
    assert ei.value.status == 422
    await install(api)
    # same kind in the same group under another plural: not accepted, not served
    other = crontab_crd()
    other["metadata"]["name"] = "crontabz.stable.example.com"
    other["spec"]["names"] = {"plural": "crontabz", "singular": "crontabz", "kind": "CronTab"}
    await api.client.create(CRD_AV, "customresourcedefinitions", None, other)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        got = await api.client.get(CRD_AV, "customresourcedefinitions", None, "crontabz.stable.example.com")
        conds = {c["type"]: c for c in (got.get("status") or {}).get("conditions") or []}
        if "NamesAccepted" in conds:
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert (conds["NamesAccepted"]["status"], conds["NamesAccepted"]["reason"]) == ("False", "KindConflict")
    assert conds["Established"]["status"] == "False"
    with pytest.raises(ApiError) as ei:
        await api.client.list("stable.example.com/v1", "crontabz", "default")
    assert ei.value.status == 404


def _fuzz_posts(url: str, token: str, ca_pem: bytes) -> int:
    """Random specs (and random bytes) POSTed as CronTabs: every answer is a 2xx or a 4xx Status."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    leaves = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=12)
    values = st.recursive(leaves, lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["cronSpec", "image", "replicas", "minReplicas", "mode", "port", "ports", "tags",
                         "selector", "extra", "name", "x"]), c, max_size=4), max_leaves=12)
    seen = [0]

    @settings(max_examples=150, deadline=None)
    @given(st.one_of(values.map(lambda v: json.dumps({"apiVersion": CT_AV, "kind": "CronTab",
                                                       "metadata": {"generateName": "f-"}, "spec": v}).encode()),
                     st.binary(max_size=64)))
    def post(body: bytes) -> None:
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                code, payload = resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            code, payload = exc.code, json.loads(exc.read())
            assert payload["kind"] == "Status" and payload["code"] == code, payload
        assert code < 500, payload
        seen[0] += 1

    post()
    return seen[0]


async def test_fuzzed_custom_objects_get_4xx_never_500(api: RunningApi) -> None:
    await install(api)
    creds = api.server.creds
    assert creds is not None
    n = await asyncio.to_thread(_fuzz_posts, f"{api.url}/apis/{CT_AV}/namespaces/default/crontabs",
                                creds.admin_token(), creds.ca_pem)
    assert n >= 100
    # the server still serves, and nothing invalid was stored
    for o in (await api.client.list(CT_AV, "crontabs", "default"))["items"]:
        if "spec" in o:  # a null spec is pruned; any spec present was defaulted and is valid
            assert isinstance(o["spec"]["replicas"], int) and o["spec"]["mode"] in ("Fast", "Slow"), o


async def test_namespace_deletion_and_owner_gc_reach_custom_objects(api: RunningApi) -> None:
    await install(api)
    await api.client.create("v1", "namespaces", None, {"metadata": {"name": "tmp"}})
    await api.client.create(CT_AV, "crontabs", "tmp", ct("in-ns"))
    owner = await api.client.create("v1", "configmaps", "default", {"metadata": {"name": "owner"}})
    owned = ct("owned")
    owned["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                                             "uid": owner["metadata"]["uid"]}]
    await api.client.create(CT_AV, "crontabs", "default", owned)
    await api.client.delete("v1", "namespaces", None, "tmp")
    await api.client.delete("v1", "configmaps", "default", "owner")
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        left = [k.key for k in api.server.store.list("/registry/stable.example.com/crontabs/")[0]]
        if not left:
            break
        assert asyncio.get_running_loop().time() < deadline, left
        await asyncio.sleep(0.05)
    deadline = asyncio.get_running_loop().time() + 15
    while api.server.store.get("/registry/core/namespaces/tmp") is not None:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)


async def test_too_deeply_nested_preserved_data_is_a_400_not_a_500(api: RunningApi) -> None:
    await install(api)
    for depth in (300, 1000):
        raw = ('{"apiVersion":"stable.example.com/v1","kind":"CronTab","metadata":{"name":"deep"},"spec":{"extra":'
               + '{"a":' * depth + "1" + "}" * depth + "}}").encode()
        with pytest.raises(ApiError) as ei:
            await api.client.request("POST", f"/apis/{CT_AV}/namespaces/default/crontabs", body=raw)
        assert ei.value.status == 400, ei.value
    assert api.server.store.get("/registry/stable.example.com/crontabs/default/deep") is None
    await api.client.create(CT_AV, "crontabs", "default", ct("after"))  # still serving


async def test_rbac_applies_to_custom_resources(api: RunningApi) -> None:
    """A ServiceAccount granted read on crontabs (and write on crontabs/status) gets exactly that."""
    await install(api)
    c = api.client
    rbac = "rbac.authorization.k8s.io/v1"
    await c.create("v1", "serviceaccounts", "default", {"metadata": {"name": "ctl"}})
    await c.create(rbac, "clusterroles", None, {"metadata": {"name": "crontab-reader"}, "rules": [
        {"apiGroups": ["stable.example.com"], "resources": ["crontabs"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["stable.example.com"], "resources": ["crontabs/status"], "verbs": ["update", "patch"]}]})
    await c.create(rbac, "clusterrolebindings", None, {
        "metadata": {"name": "ctl"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                                 "name": "crontab-reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "ctl", "namespace": "default"}]})
    await c.create(CT_AV, "crontabs", "default", ct("r"))
    tok = (await c.request("POST", "/api/v1/namespaces/default/serviceaccounts/ctl/token",
                           body={"spec": {"expirationSeconds": 3600}}))["status"]["token"]
    creds = api.server.creds
    assert creds is not None
    ctx = ssl.create_default_context(cadata=creds.ca_pem.decode())
    base = f"{api.url}/apis/{CT_AV}/namespaces/default/crontabs"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx),
                                     headers={"Authorization": f"Bearer {tok}"}) as s:
        async def code(method: str, url: str, body: Any = None, ctype: str = "application/json") -> int:
            data = json.dumps(body).encode() if body is not None else None
            async with s.request(method, url, data=data, headers={"Content-Type": ctype}) as r:
                return r.status

        deadline = asyncio.get_running_loop().time() + 10
        while await code("GET", base) != 200:  # the authorizer follows the RBAC objects through a watch
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        assert await code("GET", base + "/r") == 200
        assert await code("POST", base, ct("x")) == 403
        assert await code("DELETE", base + "/r") == 403
        assert await code("PATCH", base + "/r/status", {"status": {"phase": "ok"}},
                          "application/merge-patch+json") == 200
        assert await code("PATCH", base + "/r", {"spec": {"replicas": 2}}, "application/merge-patch+json") == 403


async def test_defaults_added_to_a_crd_apply_on_read(api: RunningApi) -> None:
    await install(api)
    await api.client.create(CT_AV, "crontabs", "default", ct("old"))
    stored = json.loads(api.server.store.get("/registry/stable.example.com/crontabs/default/old").value)
    assert "color" not in stored["spec"]
    crd = await api.client.get(CRD_AV, "customresourcedefinitions", None, "crontabs.stable.example.com")
    for v in crd["spec"]["versions"]:
        v["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["color"] = {"type": "string",
                                                                                       "default": "blue"}
    await api.client.update(CRD_AV, "customresourcedefinitions", None, "crontabs.stable.example.com", crd)
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        got = await api.client.get(CT_AV, "crontabs", "default", "old")
        if got["spec"].get("color") == "blue":
            break
        assert asyncio.get_running_loop().time() < deadline, got
        await asyncio.sleep(0.05)
    lst = await api.client.list(CT_AV, "crontabs", "default")
    assert [o["spec"]["color"] for o in lst["items"]] == ["blue"]
    async for ev in api.client.watch(CT_AV, "crontabs", "default", resource_version="0", timeout_seconds=1):
        assert ev["object"]["spec"]["color"] == "blue"
        break
    # storage is untouched until the next write
    stored = json.loads(api.server.store.get("/registry/stable.example.com/crontabs/default/old").value)
    assert "color" not in stored["spec"]
