"""The API server's fast paths give the same answers as the straightforward ones.

Covers: partial decoding for Tables/selectors (managedFields kept as raw JSON), streamed large LIST
bodies, pooled UIDs, the per-second timestamp cache and the GC tuning.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import re
import time
import uuid
from pathlib import Path

import orjson
import pytest

from servicenet.apiserver.registry import new_uid, now_rfc3339
from servicenet.apiserver.responses import view_obj
from servicenet.apiserver.server import GC_THRESHOLD, tune_gc
from servicenet.common import gcfreeze
from servicenet.store import Record
from servicenet.testing import RunningApi, running_apiserver

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


def rec(obj: dict) -> Record:
    return Record("/registry/core/configmaps/default/x", orjson.dumps(obj), 1, 1)


MF = [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1", "time": "2024-01-01T00:00:00Z",
       "fieldsType": "FieldsV1",
       "fieldsV1": {"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}}}}}]


@pytest.mark.parametrize("obj, fast", [
    # plain object: managedFields skipped, kept verbatim
    ({"metadata": {"name": "a", "managedFields": MF}, "spec": {"ports": [{"port": 80}]}}, True),
    # ']' and escaped quotes inside strings do not end the array early
    ({"metadata": {"name": "a", "managedFields": [{"manager": "m]\"x", "f": {"k:{\"n\":\"a]b\"}": {}}}]},
      "data": {"v": "]"}}, True),
    ({"metadata": {"name": "a", "managedFields": []}}, True),
    # '[' inside, or an escaped backslash: decoded normally
    ({"metadata": {"name": "a", "managedFields": [{"manager": "[x]"}]}}, False),
    ({"metadata": {"name": "a", "managedFields": [{"manager": "back\\slash"}]}}, False),
    # the first "managedFields" key is not metadata's: decoded normally
    ({"spec": {"managedFields": [{"a": "b"}]}, "metadata": {"name": "a", "managedFields": MF}}, False),
    ({"spec": {"managedFields": [{"a": "b"}]}, "metadata": {"name": "a"}}, False),
    ({"metadata": {"name": "no-mf"}}, False),
    # as the store writes them: managedFields right before resourceVersion
    ({"metadata": {"name": "a", "managedFields": MF, "resourceVersion": "7"}, "spec": {"x": [1]}}, True),
    ({"metadata": {"name": "a", "managedFields": [{"m": "],\"resourceVersion\":\""}], "resourceVersion": "7"}},
     True),
    ({"spec": {"c": [{"managedFields": [{"a": "b"}]}], "resourceVersion": "x"}, "metadata": {"name": "a"}}, False),
    ({"spec": {"c": [{"managedFields": [{"a": "b"}]}], "resourceVersion": "x"},
      "metadata": {"name": "a", "managedFields": MF, "resourceVersion": "3"}}, False),
])
def test_view_obj_round_trips_and_skips_managed_fields(obj: dict, fast: bool) -> None:
    out = view_obj(rec(obj))
    assert orjson.dumps(out) == orjson.dumps(obj)
    mf = out["metadata"].get("managedFields")
    assert isinstance(mf, orjson.Fragment) is fast
    if not fast:
        assert out == obj
    else:
        assert {k: v for k, v in out["metadata"].items() if k != "managedFields"} == {
            k: v for k, v in obj["metadata"].items() if k != "managedFields"}


def test_new_uid_is_a_random_v4_uuid() -> None:
    uids = [new_uid() for _ in range(3000)]
    assert len(set(uids)) == len(uids)
    for u in uids[:300]:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", u), u
        parsed = uuid.UUID(u)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == u


def test_now_rfc3339_matches_the_clock() -> None:
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    got = now_rfc3339()
    after = dt.datetime.now(dt.UTC)
    parsed = dt.datetime.strptime(got, fmt).replace(tzinfo=dt.UTC)
    assert before <= parsed <= after


def test_tune_gc_raises_threshold_and_freezes_nothing() -> None:
    saved = gc.get_threshold()
    frozen = gc.get_freeze_count()
    try:
        gc.set_threshold(700, 10, 10)
        tune_gc()
        assert gc.get_threshold() == GC_THRESHOLD
        assert gc.get_freeze_count() == frozen
    finally:
        gc.set_threshold(*saved)


async def test_the_watch_cache_is_frozen_once_it_is_big_enough(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A server started empty and loaded afterwards (a cluster being created) freezes its cache
    out of the collector when it passes the threshold, not only at startup."""
    monkeypatch.setattr(gcfreeze, "CHECK_INTERVAL", 0.02)
    saved = gc.get_threshold()
    try:
        async with running_apiserver(tmp_path) as api:
            policy = api.server.gc_policy
            assert policy.freezes == 0  # the bootstrap objects: far below GC_FREEZE_OVER
            start = len(api.server.store)
            assert api.server.cache_stats() == (start, 0)
            policy.min_objects = start + 20
            for i in range(20):
                await api.client.create("v1", "configmaps", "default", {"metadata": {"name": f"cm-{i}"}})
            deadline = time.monotonic() + 10
            while policy.freezes == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            assert policy.freezes >= 1
            assert policy.frozen_at >= start + 20
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


async def test_large_list_is_streamed_with_exact_length(api: RunningApi) -> None:
    big = "x" * 30_000
    names = [f"cm-{i:03d}" for i in range(60)]  # ~1.8 MB: above the streaming threshold
    for n in names:
        await api.client.create("v1", "configmaps", "default", {"metadata": {"name": n}, "data": {"v": big}})
    url = api.url + "/api/v1/namespaces/default/configmaps"
    async with api.client.session.get(url) as resp:
        raw = await resp.read()
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "application/json"
        assert int(resp.headers["Content-Length"]) == len(raw) > 1 << 20
    doc = orjson.loads(raw)
    assert doc["kind"] == "ConfigMapList" and doc["apiVersion"] == "v1"
    # every namespace also holds the root CA bundle (kube-root-ca.crt), as upstream
    assert [i["metadata"]["name"] for i in doc["items"]] == names + ["kube-root-ca.crt"]
    assert all(i["data"]["v"] == big for i in doc["items"][:-1])
    # each item is byte-for-byte what a GET returns
    one = await api.client.get("v1", "configmaps", "default", "cm-007")
    assert doc["items"][7] == one
    # the small (joined) path gives the same structure
    small = await api.client.list("v1", "configmaps", "default", limit=2)
    assert [i["metadata"]["name"] for i in small["items"]] == names[:2]
    assert small["metadata"]["continue"]


async def test_table_rows_carry_managed_fields_verbatim(api: RunningApi) -> None:
    pod = {"metadata": {"name": "p1", "labels": {"app": "a"}},
           "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [{"containerPort": 80}]}]}}
    await api.client.create("v1", "pods", "default", pod, field_manager="tester")
    plain = await api.client.get("v1", "pods", "default", "p1")
    assert plain["metadata"]["managedFields"][0]["manager"] == "tester"
    for include, key in (("Metadata", "metadata"), ("Object", None)):
        url = api.url + f"/api/v1/namespaces/default/pods?labelSelector=app%3Da&includeObject={include}"
        async with api.client.session.get(url, headers={"Accept": TABLE}) as resp:
            assert resp.status == 200
            table = orjson.loads(await resp.read())
        assert table["kind"] == "Table"
        (row,) = table["rows"]
        assert row["cells"][0] == "p1"
        obj = row["object"]
        if key is None:
            assert obj == plain
        else:
            assert obj["kind"] == "PartialObjectMetadata"
            assert obj["metadata"] == plain["metadata"]
