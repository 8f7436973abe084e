"""Table rows kept between requests render exactly what a fresh rendering does."""

from __future__ import annotations

import datetime as dt
import random

import orjson

from servicenet.api import tables
from servicenet.apiserver.responses import view_obj
from servicenet.apiserver.table_rows import TableRows
from servicenet.store import Record
from servicenet.testing import RunningApi
from tests.api.test_pb_codec import REALISTIC

NOW = dt.datetime(2024, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def _rec(o: dict, rev: int) -> Record:
    return Record(f"/registry/x/{o['kind']}/{o['metadata']['name']}", orjson.dumps(o), rev, rev)


def _fresh(kind: str, recs: list[Record], now: dt.datetime) -> bytes:
    return orjson.dumps(tables.to_table(kind, [view_obj(r) for r in recs], now=now, resource_version="5",
                                        continue_token="c"))


def test_rows_equal_fresh_rendering_across_time_and_changes() -> None:
    cache = TableRows()
    rnd = random.Random(1)
    for o in REALISTIC:
        if not o["metadata"].get("name"):  # review kinds: never stored, never listed
            continue
        kind = o["kind"]
        variants = [o, {**o, "metadata": {**o["metadata"], "name": "other"}}]
        if kind == "Pod":  # a restart: the RESTARTS cell is clock-dependent, never kept
            p = orjson.loads(orjson.dumps(o))
            p["metadata"]["name"] = "restarted"
            p["status"]["containerStatuses"][0].update(restartCount=2, lastState={"terminated": {
                "exitCode": 1, "finishedAt": "2024-06-01T11:00:00Z"}})
            variants.append(p)
        recs = [_rec(v, 10 + i) for i, v in enumerate(variants)]
        for step in range(4):
            now = NOW + dt.timedelta(seconds=rnd.choice([0, 7, 3700, 90_000 * step]))
            got = orjson.dumps(cache.table(kind, recs, now=now, resource_version="5", continue_token="c"))
            assert got == _fresh(kind, recs, now), kind
            got = cache.table_json(kind, recs, now=now, resource_version="5", continue_token="c")
            assert got == _fresh(kind, recs, now), kind
        # a new revision of an object replaces its kept row
        changed = orjson.loads(orjson.dumps(variants[0]))
        changed["metadata"]["labels"] = {"new": "label"}
        changed.setdefault("status", {})
        recs[0] = _rec(changed, 99)
        got = orjson.dumps(cache.table(kind, recs, now=NOW, resource_version="5", continue_token="c"))
        assert got == _fresh(kind, recs, NOW), kind
        recs[1] = _rec({**variants[1], "metadata": {**variants[1]["metadata"], "labels": {"b": "2"}}}, 100)
        # JSON rendering straight from kept rows, with a changed row rendered on the way
        got = cache.table_json(kind, recs, now=NOW, resource_version="", continue_token=None)
        assert got == orjson.dumps(tables.to_table(kind, [view_obj(r) for r in recs], now=NOW)), kind
    assert len(cache) > 0


def test_cache_is_bounded() -> None:
    cache = TableRows(limit=3)
    o = REALISTIC[0]
    recs = [_rec({**o, "metadata": {**o["metadata"], "name": f"n{i}"}}, i + 1) for i in range(10)]
    cache.table(o["kind"], recs, now=NOW, resource_version="1", continue_token=None)
    assert len(cache) <= 3


async def test_kubectl_get_pods_after_changes(api: RunningApi) -> None:
    for i in range(3):
        await api.client.create("v1", "pods", "default", {"metadata": {"name": f"p{i}"}, "spec": {
            "containers": [{"name": "c", "image": "i"}]}})
    _, out1, _ = await api.kubectl("get", "pods")
    assert [line.split()[0] for line in out1.splitlines()[1:]] == ["p0", "p1", "p2"]
    pod = await api.client.get("v1", "pods", "default", "p1")
    pod["status"] = {"phase": "Running", "podIP": "10.244.0.9"}
    await api.client.update_status("v1", "pods", "default", "p1", pod)
    _, out2, _ = await api.kubectl("get", "pods", "-o", "wide")
    row = [line.split() for line in out2.splitlines() if line.startswith("p1")][0]
    assert row[2] == "Running" and row[5] == "10.244.0.9"
