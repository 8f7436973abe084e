"""Protobuf on the wire: the real kubectl's generator commands, protobuf answers (objects, lists, Status,
watch frames) and bad protobuf input against a running API server."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from servicenet.api.pb import decode as pb_decode
from servicenet.api.pb import types, wire
from servicenet.testing import RunningApi, kubectl, tls_files
from tests.api.test_pb_codec import REALISTIC

PB = wire.PROTOBUF
PB_ACCEPT = "application/vnd.kubernetes.protobuf,application/json"  # what client-go's typed clients send


def _generators(d: Path) -> list[list[str]]:
    crt, key = tls_files(d)
    return [
        ["create", "namespace", "team-a"],
        ["create", "configmap", "cm1", "--from-literal=a=b", "--from-literal=c=d"],
        ["create", "secret", "generic", "s1", "--from-literal=user=admin", "--from-literal=pw=s3cr3t"],
        ["create", "secret", "tls", "tls1", f"--cert={crt}", f"--key={key}"],
        ["create", "secret", "docker-registry", "reg1", "--docker-server=registry.example",
         "--docker-username=u", "--docker-password=p", "--docker-email=u@example.com"],
        ["create", "deployment", "web", "--image=nginx:1.25", "--replicas=2", "--port=80"],
        ["create", "service", "clusterip", "c1", "--tcp=80:8080"],
        ["create", "service", "nodeport", "n1", "--tcp=80:8080", "--node-port=30123"],
        ["create", "service", "externalname", "e1", "--external-name=db.example.com"],
        ["create", "ingress", "ing1", "--class=nginx", "--rule=foo.com/bar*=svc1:8080,tls=tls1"],
    ]


async def test_kubectl_generator_commands_work(api: RunningApi, tmp_path: Path) -> None:
    for cmd in _generators(tmp_path):
        rc, out, err = await api.kubectl(*cmd)
        assert "created" in out, (cmd, out, err)
    c = api.client
    assert (await c.get("v1", "namespaces", None, "team-a"))["status"]["phase"] == "Active"
    assert (await c.get("v1", "configmaps", "default", "cm1"))["data"] == {"a": "b", "c": "d"}
    s1 = await c.get("v1", "secrets", "default", "s1")
    assert base64.b64decode(s1["data"]["pw"]) == b"s3cr3t" and s1["type"] == "Opaque"
    tls = await c.get("v1", "secrets", "default", "tls1")
    assert tls["type"] == "kubernetes.io/tls"
    assert base64.b64decode(tls["data"]["tls.crt"]) == (tmp_path / "tls.crt").read_bytes()
    reg = await c.get("v1", "secrets", "default", "reg1")
    auths = json.loads(base64.b64decode(reg["data"][".dockerconfigjson"]))["auths"]
    assert auths["registry.example"]["username"] == "u"
    dep = await c.get("apps/v1", "deployments", "default", "web")
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["template"]["spec"]["containers"][0]["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert dep["metadata"]["managedFields"][0]["manager"] == "kubectl-create"
    c1 = await c.get("v1", "services", "default", "c1")
    assert c1["spec"]["type"] == "ClusterIP" and c1["spec"]["clusterIP"].startswith("10.")
    assert c1["spec"]["ports"][0]["targetPort"] == 8080
    n1 = await c.get("v1", "services", "default", "n1")
    assert n1["spec"]["type"] == "NodePort" and n1["spec"]["ports"][0]["nodePort"] == 30123
    e1 = await c.get("v1", "services", "default", "e1")
    assert e1["spec"]["type"] == "ExternalName" and e1["spec"]["externalName"] == "db.example.com"
    ing = await c.get("networking.k8s.io/v1", "ingresses", "default", "ing1")
    assert ing["spec"]["ingressClassName"] == "nginx"
    path = ing["spec"]["rules"][0]["http"]["paths"][0]
    assert path["path"] == "/bar" and path["pathType"] == "Prefix"
    assert path["backend"]["service"] == {"name": "svc1", "port": {"number": 8080}}
    assert ing["spec"]["tls"] == [{"hosts": ["foo.com"], "secretName": "tls1"}]
    # describe reads the object back in protobuf (Accept: protobuf,json)
    _, out, _ = await api.kubectl("describe", "deployment", "web")
    assert "nginx:1.25" in out


class _Capture:
    """A plain-HTTP stand-in for an API server that records what kubectl sends and refuses it."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, str, bytes]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.method == "POST":
            self.bodies.append((request.headers.get("Content-Type", ""), request.headers.get("Accept", ""), body))
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                                  "reason": "NotFound", "message": "captured"}, status=404)


async def test_decoding_kubectls_bytes_gives_kubectls_json(tmp_path: Path) -> None:
    """What kubectl puts on the wire in protobuf decodes to what kubectl itself prints as JSON."""
    cap = _Capture()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", cap.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    kc = tmp_path / "kubeconfig"
    kc.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u, namespace: default}}}}]
current-context: c
users: [{{name: u, user: {{token: t}}}}]
""")
    os.chmod(kc, 0o600)
    try:
        for cmd in _generators(tmp_path):
            before = len(cap.bodies)
            await kubectl(kc, *cmd, check=False)
            assert len(cap.bodies) == before + 1, cmd
            ctype, accept, body = cap.bodies[-1]
            assert ctype == PB and accept == PB_ACCEPT, (cmd, ctype, accept)
            decoded = wire.decode(body)
            assert decoded.unknown == []
            av, kind, raw = wire.split_envelope(body)  # kubectl's bytes are canonical: the fast decoder reads them
            fast = pb_decode.decode_message(raw, types.message_for(av, kind) or "")
            assert {"apiVersion": av, "kind": kind, **fast} == decoded.obj, cmd
            _, out, _ = await kubectl(kc, *cmd, "--dry-run=client", "-o", "json")
            expected = json.loads(out)
            # kubectl v1.32's JSON still writes a zero creationTimestamp as null; since v1.33 the Go
            # field is omitzero, and the protobuf decoder follows the v1.36 types
            assert expected["metadata"].pop("creationTimestamp") is None
            for tmpl in [((expected.get("spec") or {}).get("template") or {}).get("metadata")]:
                if tmpl is not None:
                    assert tmpl.pop("creationTimestamp") is None
            assert decoded.obj == expected, cmd
    finally:
        await runner.cleanup()


async def _req(api: RunningApi, method: str, path: str, *, body: bytes | None = None,
               ctype: str | None = None, accept: str | None = None) -> tuple[int, str, bytes, Any]:
    headers = {}
    if ctype:
        headers["Content-Type"] = ctype
    if accept:
        headers["Accept"] = accept
    async with api.client.session.request(method, api.client.server + path, data=body, headers=headers) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.read(), r.headers


def _pb(obj: dict[str, Any]) -> bytes:
    return wire.encode(obj)


async def test_realistic_objects_read_back_identically_in_protobuf(api: RunningApi) -> None:
    """Every kind created through the server (defaults applied) reads back the same in both encodings."""
    from servicenet.api import resources

    for o in REALISTIC:
        info = resources.by_kind(o["apiVersion"], o["kind"])
        assert info is not None
        obj = json.loads(json.dumps(o))
        md = obj["metadata"]
        for k in ("uid", "resourceVersion", "creationTimestamp", "generation", "ownerReferences", "finalizers",
                  "managedFields"):
            md.pop(k, None)
        if o["kind"] == "Pod":
            obj["spec"].pop("nodeName")
        if o["kind"] == "Service":  # let the server allocate
            obj["spec"].pop("clusterIP")
            obj["spec"].pop("clusterIPs")
            for p in obj["spec"]["ports"]:
                p.pop("nodePort")
        ns = "default" if info.namespaced else None
        base = "/api/v1" if not info.group else f"/apis/{info.group}/{info.version}"
        coll = f"{base}/namespaces/{ns}/{info.plural}" if ns else f"{base}/{info.plural}"
        if o["kind"] != "CustomResourceDefinition":  # a CRD's name is <plural>.<group>
            md["name"] = "rt-" + info.plural
        if not info.namespaced:
            md.pop("namespace", None)
        status, ctype, body, _ = await _req(api, "POST", coll + "?fieldValidation=Strict", body=_pb(obj),
                                            ctype=PB, accept=PB_ACCEPT)
        assert status == 201 and ctype == PB, (o["kind"], status, body[:300])
        created = wire.decode(body).obj
        if "get" not in info.verbs:  # reviews are answered, not stored: the answer itself must decode
            assert created["kind"] == o["kind"]
            continue
        if o["kind"] == "CustomResourceDefinition":  # its controller writes status: read once it has
            for _ in range(200):
                status, ctype, js, _ = await _req(api, "GET", f"{coll}/{md['name']}", accept="application/json")
                if b'"Established"' in js:
                    break
                await asyncio.sleep(0.05)
            created = orjson.loads(js)
        status, ctype, js, _ = await _req(api, "GET", f"{coll}/{md['name']}", accept="application/json")
        assert status == 200 and ctype == "application/json"
        status, ctype, pbody, _ = await _req(api, "GET", f"{coll}/{md['name']}", accept=PB_ACCEPT)
        assert status == 200 and ctype == PB
        as_json = orjson.loads(js)
        assert wire.decode(pbody).obj == as_json == created, o["kind"]


async def test_lists_status_and_watch_in_protobuf(api: RunningApi) -> None:
    # a namespace of its own: "default" also holds the published kube-root-ca.crt ConfigMap
    await api.client.create("v1", "namespaces", None, {"metadata": {"name": "pbl"}})
    path = "/api/v1/namespaces/pbl/configmaps"
    for i in range(3):
        await api.client.create("v1", "configmaps", "pbl", {"metadata": {"name": f"c{i}"}, "data": {"i": str(i)}})
    status, ctype, body, _ = await _req(api, "GET", path + "?limit=2", accept=PB_ACCEPT)
    lst = wire.decode(body).obj
    assert status == 200 and ctype == PB and lst["kind"] == "ConfigMapList"
    assert [i["metadata"]["name"] for i in lst["items"]] == ["c0", "c1"] and lst["metadata"]["continue"]
    assert lst["metadata"]["remainingItemCount"] == 2  # c2 and the kube-root-ca.crt ConfigMap
    # errors are protobuf Status objects
    status, ctype, body, _ = await _req(api, "GET", path + "/nope", accept=PB_ACCEPT)
    st = wire.decode(body).obj
    assert (status, ctype) == (404, PB)
    assert st["kind"] == "Status" and st["code"] == 404 and st["reason"] == "NotFound"
    assert st["message"] == 'configmaps "nope" not found'
    # a Table request still gets JSON
    status, ctype, _, _ = await _req(api, "GET", path, accept="application/json;as=Table;v=v1;g=meta.k8s.io,"
                                                              "application/json")
    assert ctype == "application/json"

    rv = lst["metadata"]["resourceVersion"]
    url = api.client.server + path + f"?watch=true&resourceVersion={rv}&allowWatchBookmarks=true"
    async with api.client.session.get(url, headers={"Accept": PB_ACCEPT}) as resp:
        assert resp.headers["Content-Type"] == "application/vnd.kubernetes.protobuf;stream=watch"
        await api.client.create("v1", "configmaps", "pbl", {"metadata": {"name": "w1"}, "data": {"x": "y"}})
        await api.client.delete("v1", "configmaps", "pbl", "c0")
        buf = b""
        events: list[tuple[str, dict[str, Any]]] = []
        deadline = asyncio.get_running_loop().time() + 10
        while len(events) < 2 and asyncio.get_running_loop().time() < deadline:
            buf += await asyncio.wait_for(resp.content.readany(), 10)  # noqa: TID251
            got, buf = wire.read_watch_frames(buf)
            events += got
        assert [(t, o["metadata"]["name"]) for t, o in events[:2]] == [("ADDED", "w1"), ("DELETED", "c0")]
        assert events[0][1]["data"] == {"x": "y"} and events[0][1]["kind"] == "ConfigMap"


async def test_bad_protobuf_bodies_get_4xx_and_write_nothing(api: RunningApi) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    good = _pb({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ok"}, "data": {"a": "b"}})
    cases: list[tuple[bytes, str, int, str]] = [
        (good[:-12], PB, 400, "could not be decoded"),
        (b"k8s\x00" + os.urandom(64), PB, 400, ""),
        (b"\x00\x01garbage", PB, 400, "does not appear to be a protobuf message"),
        (good, "text/plain", 415, "the body of the request was in an unknown format - accepted media types "
                                  "include: application/json, application/yaml, application/vnd.kubernetes.protobuf"),
        (good, "application/cbor", 415, "unknown format"),
        (_pb({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ok"}}), PB, 400,
         "the kind in the data (Secret) does not match the expected kind (ConfigMap)"),
        (_pb({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ok"}}), PB, 400,
         "does not match the expected API version"),
        (wire.envelope("v1", "Frobnicator", b"\x0a\x04\x0a\x02ok"), PB, 400, 'no kind "Frobnicator"'),
        (wire.MAGIC + b"\x00" * (wire.MAX_BODY + 1), PB, 413, "Request entity too large: limit is 3145728"),
    ]
    for body, ctype, code, fragment in cases:
        for accept in (PB_ACCEPT, "application/json"):
            status, rtype, out, _ = await _req(api, "POST", path, body=body, ctype=ctype, accept=accept)
            st = wire.decode(out).obj if rtype == PB else orjson.loads(out)
            assert status == code and st["kind"] == "Status" and st["code"] == code, (ctype, status, st)
            assert fragment in st["message"], st["message"]
    # upstream's ServiceSpec has no field 99: an unknown field, named by its path
    cm = types.message_class("k8s.io.api.core.v1.ConfigMap")()
    cm.metadata.name = "unk"
    raw = cm.SerializeToString()
    meta_with_unknown = raw[2:] + b"\x98\x06\x07"  # metadata (field 1) plus field 99 inside it
    body = wire.envelope("v1", "ConfigMap", b"\x0a" + bytes([len(meta_with_unknown)]) + meta_with_unknown)
    status, _, out, _ = await _req(api, "POST", path + "?fieldValidation=Strict", body=body, ctype=PB,
                                   accept="application/json")
    assert status == 400 and orjson.loads(out)["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
        'unknown field "metadata.#99"')
    listed = await api.client.list("v1", "configmaps", "default")
    # nothing of the refused bodies was written (only the published kube-root-ca.crt is there)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["kube-root-ca.crt"]
    status, _, out, headers = await _req(api, "POST", path + "?fieldValidation=Warn", body=body, ctype=PB,
                                         accept="application/json")
    assert status == 201 and 'unknown field \\"metadata.#99\\"' in headers["Warning"]
    await api.client.delete("v1", "configmaps", "default", "unk")
    status, _, out, headers = await _req(api, "POST", path + "?fieldValidation=Ignore", body=body, ctype=PB,
                                         accept="application/json")
    assert status == 201 and "Warning" not in headers
    # and the server still serves
    status, _, _, _ = await _req(api, "POST", path, body=good, ctype=PB, accept=PB_ACCEPT)
    assert status == 201


@pytest.mark.parametrize("seed", range(3))
async def test_fuzzed_protobuf_bodies_never_500(api: RunningApi, seed: int) -> None:
    import random

    rnd = random.Random(seed)
    bodies = [wire.encode(o) for o in REALISTIC]
    path = "/api/v1/namespaces/default/configmaps"
    for _ in range(60):
        b = bytearray(rnd.choice(bodies))
        for _ in range(rnd.randint(1, 6)):
            b[rnd.randrange(4, len(b))] = rnd.randrange(256)
        if rnd.random() < 0.3:
            del b[rnd.randrange(4, len(b)):]
        status, _, out, _ = await _req(api, "POST", path, body=bytes(b), ctype=PB, accept=PB_ACCEPT)
        assert status < 500, out[:300]
    status, _, _, _ = await _req(api, "GET", path, accept=PB_ACCEPT)
    assert status == 200


async def test_update_and_delete_with_protobuf_bodies(api: RunningApi) -> None:
    """PUT (and status PUT) with a protobuf object, DELETE with protobuf DeleteOptions, as typed clients do."""
    path = "/apis/apps/v1/namespaces/default/deployments"
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                    "template": {"metadata": {"labels": {"a": "b"}},
                                 "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
    status, _, body, _ = await _req(api, "POST", path, body=_pb(dep), ctype=PB, accept=PB_ACCEPT)
    assert status == 201
    live = wire.decode(body).obj
    live["spec"]["replicas"] = 3
    status, ctype, body, _ = await _req(api, "PUT", f"{path}/d", body=_pb(live), ctype=PB, accept=PB_ACCEPT)
    assert (status, ctype) == (200, PB)
    updated = wire.decode(body).obj
    assert updated["spec"]["replicas"] == 3
    assert int(updated["metadata"]["resourceVersion"]) > int(live["metadata"]["resourceVersion"])
    # a stale resourceVersion in a protobuf body is a 409 Conflict, answered as a protobuf Status
    status, ctype, body, _ = await _req(api, "PUT", f"{path}/d", body=_pb(live), ctype=PB, accept=PB_ACCEPT)
    assert (status, ctype) == (409, PB) and wire.decode(body).obj["reason"] == "Conflict"
    updated["status"] = {"replicas": 3, "readyReplicas": 2, "observedGeneration": 2}
    status, _, body, _ = await _req(api, "PUT", f"{path}/d/status", body=_pb(updated), ctype=PB, accept=PB_ACCEPT)
    assert status == 200 and wire.decode(body).obj["status"]["readyReplicas"] == 2
    opts = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background",
            "preconditions": {"uid": "not-the-uid"}}
    status, _, body, _ = await _req(api, "DELETE", f"{path}/d", body=_pb(opts), ctype=PB, accept=PB_ACCEPT)
    assert status == 409 and "Precondition failed: UID in precondition: not-the-uid" in wire.decode(body).obj["message"]
    opts["preconditions"] = {"uid": updated["metadata"]["uid"]}
    status, _, body, _ = await _req(api, "DELETE", f"{path}/d", body=_pb(opts), ctype=PB, accept=PB_ACCEPT)
    assert status == 200 and wire.decode(body).obj["status"] == "Success", wire.decode(body).obj
    status, _, _, _ = await _req(api, "GET", f"{path}/d", accept=PB_ACCEPT)
    assert status == 404


async def test_protobuf_watch_with_a_selector_and_many_watchers(api: RunningApi) -> None:
    """Selecting watchers decode a view of each object; the protobuf frame still carries the whole
    stored object (managedFields included), and every watcher gets the same bytes."""
    path = "/api/v1/namespaces/default/configmaps"
    status, _, body, _ = await _req(api, "GET", path, accept=PB_ACCEPT)
    rv = wire.decode(body).obj["metadata"]["resourceVersion"]
    urls = [api.client.server + path + f"?watch=true&resourceVersion={rv}&labelSelector=app%3Dweb",
            api.client.server + path + f"?watch=true&resourceVersion={rv}"] * 3
    streams = [await api.client.session.get(u, headers={"Accept": PB_ACCEPT}) for u in urls]
    try:
        for cm in ({"metadata": {"name": "other", "labels": {"app": "db"}}},
                   {"metadata": {"name": "mine", "labels": {"app": "web"}}, "data": {"k": "v"}}):
            status, _, _, _ = await _req(api, "POST", path + "?fieldManager=tester", body=_pb(
                {"apiVersion": "v1", "kind": "ConfigMap", **cm}), ctype=PB, accept=PB_ACCEPT)
            assert status == 201
        raw_frames: list[bytes] = []
        for i, resp in enumerate(streams):
            want = 1 if i % 2 == 0 else 2
            buf, events = b"", []
            deadline = asyncio.get_running_loop().time() + 10
            while len(events) < want and asyncio.get_running_loop().time() < deadline:
                buf += await asyncio.wait_for(resp.content.readany(), 10)  # noqa: TID251
                got, buf = wire.read_watch_frames(buf)
                events += got
            names = [o["metadata"]["name"] for _, o in events]
            assert names == (["mine"] if want == 1 else ["other", "mine"]), names
            mine = events[-1][1]
            assert mine["data"] == {"k": "v"}
            assert mine["metadata"]["managedFields"][0]["manager"] == "tester"
            raw_frames.append(wire.encode(mine))
        assert len(set(raw_frames)) == 1
    finally:
        for s in streams:
            s.close()
