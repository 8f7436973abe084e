"""Pod creates hand out kept spec trees shared (servicenet.api.spec_cache): through every way a pod
is created, each pod still gets its own token volume name, every answer is the stored object, and
no kept or noted tree is ever changed after its text was written."""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson

from bench.api import objects
from servicenet.api import known, spec_cache
from servicenet.api.pb import wire
from servicenet.testing import RunningApi
from tests.api.test_pb_codec import REALISTIC

PB = "application/vnd.kubernetes.protobuf"
PB_ACCEPT = PB + ",application/json"
JSON = "application/json"
COLL = "/api/v1/namespaces/default/pods"
TOKEN = re.compile(r"^kube-api-access-[a-z0-9]{5}$")


async def _req(api: RunningApi, method: str, path: str, body: bytes | None, ctype: str,
               accept: str) -> tuple[int, bytes]:
    headers = {"Content-Type": ctype, "Accept": accept}
    async with api.client.session.request(method, api.client.server + path, data=body, headers=headers) as r:
        return r.status, await r.read()


def _shapes() -> list[dict[str, Any]]:
    plain = objects.pod("x")
    realistic = [copy.deepcopy(o) for o in REALISTIC if o["kind"] == "Pod"]
    for o in realistic:
        o["spec"].pop("nodeName", None)
        o["metadata"] = {"labels": o["metadata"].get("labels", {})}
    no_token = copy.deepcopy(plain)
    no_token["spec"]["automountServiceAccountToken"] = False
    init = copy.deepcopy(plain)
    init["spec"]["initContainers"] = [{"name": "init", "image": "busybox", "command": ["true"]}]
    lookalike = copy.deepcopy(plain)  # the template's stand-in name in the pod's own data: never kept
    lookalike["spec"]["containers"][0]["env"].append({"name": "X", "value": "kube-api-access-@@@@@"})
    mounted = copy.deepcopy(plain)  # already mounts something at the token's path: no volume added
    mounted["spec"]["containers"][0]["volumeMounts"].append(
        {"name": "tmp", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
    return [plain, *realistic, no_token, init, lookalike, mounted]


def _token_names(pod: dict[str, Any]) -> set[str]:
    spec = pod["spec"]
    vols = {v["name"] for v in spec.get("volumes", []) if v["name"].startswith("kube-api-access-")}
    for c in spec.get("initContainers", []) + spec["containers"]:
        for m in c.get("volumeMounts", []):
            if m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount" and m["name"] != "tmp":
                assert m["name"] in vols, (m, vols)
    return vols


def _kept_trees_unchanged() -> None:
    for spec_text, status_text, spec_tree, status_tree in spec_cache._created.values():
        if spec_tree is not None:
            assert orjson.dumps(spec_tree) == spec_text
            assert orjson.dumps(status_tree) == status_text
    for t in spec_cache._admitted.values():
        if t is not None:
            assert orjson.dumps(t.tree) == t.text
    for tree, text, _ in list(known._known.values()):
        assert orjson.dumps(tree) == text
    for kept in wire._kept_specs.values():  # protobuf bodies' specs, decoded once
        if kept is not None:
            assert orjson.dumps(kept[0]) == kept[1]


async def test_every_pod_gets_its_own_token_and_its_stored_object_back(api: RunningApi) -> None:
    seen: set[str] = set()
    n = 0
    for shape in _shapes():
        for encoding in ("json", "protobuf", "apply", "dry-run"):
            for _ in range(3):  # a miss, then hits
                n += 1
                pod = copy.deepcopy(shape)
                name = f"s-{n}"
                pod.setdefault("metadata", {})["name"] = name
                path, ctype, accept = COLL, JSON, JSON
                if encoding == "protobuf":
                    pod.update(apiVersion="v1", kind="Pod")
                    status, body = await _req(api, "POST", path, wire.encode(pod), PB, PB_ACCEPT)
                    answer = wire.decode(body).obj
                elif encoding == "apply":
                    pod.update(apiVersion="v1", kind="Pod")
                    status, body = await _req(api, "PATCH", f"{COLL}/{name}?fieldManager=t",
                                              orjson.dumps(pod), "application/apply-patch+yaml", JSON)
                    answer = orjson.loads(body)
                else:
                    if encoding == "dry-run":
                        path += "?dryRun=All"
                        accept = PB_ACCEPT
                    status, body = await _req(api, "POST", path, orjson.dumps(pod), ctype, accept)
                    answer = wire.decode(body).obj if body.startswith(wire.MAGIC) else orjson.loads(body)
                assert status == 201, (encoding, body[:300])
                tokens = _token_names(answer)
                assert all(TOKEN.match(t) for t in tokens), tokens
                assert not tokens & seen, "a token volume name was handed out twice"
                seen |= tokens
                if encoding != "dry-run":
                    st, stored = await _req(api, "GET", f"{COLL}/{name}", None, JSON, JSON)
                    assert st == 200 and orjson.loads(stored) == answer, encoding
                    st, stored_pb = await _req(api, "GET", f"{COLL}/{name}", None, JSON, PB_ACCEPT)
                    assert st == 200 and wire.decode(stored_pb).obj == answer, encoding
    assert len(seen) > n // 2  # most shapes mount a token
    assert any(t is not None for t in spec_cache._admitted.values())  # the kept path was taken
    assert any(t is None for t in spec_cache._admitted.values())  # and the look-alike was not kept
    assert any(k is not None for k in wire._kept_specs.values())  # protobuf bodies' specs were kept
    _kept_trees_unchanged()


async def test_the_automount_switch_and_mounted_paths_are_honoured(api: RunningApi) -> None:
    shapes = _shapes()
    plain, no_token, mounted = shapes[0], shapes[-4], shapes[-1]
    for shape, expect in ((plain, 1), (no_token, 0), (mounted, 0)):
        for i in range(2):
            pod = copy.deepcopy(shape)
            pod["metadata"]["name"] = f"a-{expect}-{i}-{len(pod['spec']['containers'][0]['volumeMounts'])}"
            status, body = await _req(api, "POST", COLL, orjson.dumps(pod), JSON, JSON)
            assert status == 201, body[:300]
            assert len(_token_names(orjson.loads(body))) == expect
    _kept_trees_unchanged()
