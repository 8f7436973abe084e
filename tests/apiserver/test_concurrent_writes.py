"""Writes without a precondition never fail because another write to the same object is in flight.

The durable store checks compare-and-swap against writes still being committed; every read a
write path makes must see the same state, or it answers 409 "the object has been modified".
Runs against the SQLite store (the memory store commits synchronously and cannot show the skew).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from servicenet.client import ApiError
from servicenet.testing import RunningApi, running_apiserver

POD = {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


@pytest.fixture
async def sqlapi(tmp_path: Path) -> AsyncIterator[RunningApi]:
    async with running_apiserver(tmp_path, storage="sqlite") as running:
        yield running


def _pod(name: str) -> dict:  # type: ignore[type-arg]
    return {**POD, "metadata": {"name": name}}


async def test_delete_right_after_create_while_the_pod_is_being_bound(sqlapi: RunningApi) -> None:
    """What a user sees with `servicenet up`: the scheduler binds the new pod while it is deleted."""
    sqlapi.server.store.set_fault(lambda events: time.sleep(0.005))  # slow disk: commits stay in flight
    binder, deleter = sqlapi.new_client(), sqlapi.new_client()
    failures: list[str] = []
    try:
        for i in range(15):
            name = f"c{i}"
            await sqlapi.client.create("v1", "pods", "default", _pod(name))
            bind = binder.request("POST", f"/api/v1/namespaces/default/pods/{name}/binding", body={
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}})
            label = binder.patch("v1", "pods", "default", name, {"metadata": {"labels": {"x": "y"}}})
            delete = deleter.delete("v1", "pods", "default", name, grace_period_seconds=0)
            res = await asyncio.gather(bind, label, delete, return_exceptions=True)
            if isinstance(res[2], BaseException):
                failures.append(f"{name}: delete {res[2]}")
            for r in res[:2]:
                if isinstance(r, ApiError) and r.status != 404:
                    failures.append(f"{name}: {r.status} {r.message}")
                elif isinstance(r, BaseException) and not isinstance(r, ApiError):
                    raise r
    finally:
        await binder.close()
        await deleter.close()
    assert failures == []


async def test_many_concurrent_merge_patches_all_land(sqlapi: RunningApi) -> None:
    c = sqlapi.client
    await c.create("v1", "configmaps", "default", {"metadata": {"name": "cm"}, "data": {}})
    n = 40
    clients = [sqlapi.new_client() for _ in range(4)]
    try:
        results = await asyncio.gather(*[
            clients[i % 4].patch("v1", "configmaps", "default", "cm", {"data": {f"k{i}": str(i)}})
            for i in range(n)], return_exceptions=True)
    finally:
        for cl in clients:
            await cl.close()
    errs = [f"{r.status} {r.message}" for r in results if isinstance(r, ApiError)]
    assert errs == []
    got = await c.get("v1", "configmaps", "default", "cm")
    assert got["data"] == {f"k{i}": str(i) for i in range(n)}


async def test_concurrent_strategic_and_json_patches_and_puts(sqlapi: RunningApi) -> None:
    c = sqlapi.client
    await c.create("apps/v1", "deployments", "default", {
        "metadata": {"name": "d", "labels": {"app": "d"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    ops = []
    for i in range(20):
        ops.append(c.patch("apps/v1", "deployments", "default", "d",
                           {"metadata": {"annotations": {f"s{i}": "x"}}}, patch_type="strategic"))
        ops.append(c.patch("apps/v1", "deployments", "default", "d",
                           [{"op": "add", "path": f"/metadata/labels/j{i}", "value": "y"}], patch_type="json"))
        ops.append(c.patch("apps/v1", "deployments", "default", "d", {"spec": {"replicas": i}},
                           subresource="scale"))
    results = await asyncio.gather(*ops, return_exceptions=True)
    errs = [f"{r.status} {r.message}" for r in results if isinstance(r, BaseException)]
    assert errs == []
    got = await c.get("apps/v1", "deployments", "default", "d")
    assert all(got["metadata"]["annotations"].get(f"s{i}") == "x" for i in range(20))
    assert all(got["metadata"]["labels"].get(f"j{i}") == "y" for i in range(20))


async def test_put_without_resource_version_and_status_writes_race(sqlapi: RunningApi) -> None:
    c = sqlapi.client
    await c.create("v1", "pods", "default", _pod("p"))
    ops = []
    for i in range(20):
        ops.append(c.patch("v1", "pods", "default", "p", {"status": {"message": f"m{i}"}}, subresource="status"))
        ops.append(c.patch("v1", "pods", "default", "p", {"metadata": {"labels": {f"l{i}": "v"}}}))
    results = await asyncio.gather(*ops, return_exceptions=True)
    assert [f"{r.status} {r.message}" for r in results if isinstance(r, BaseException)] == []
    cur = await c.get("v1", "pods", "default", "p")
    cur["metadata"].pop("resourceVersion")
    cur["metadata"]["labels"]["put"] = "yes"
    results = await asyncio.gather(
        c.update("v1", "pods", "default", "p", cur),
        *[c.patch("v1", "pods", "default", "p", {"metadata": {"annotations": {f"a{i}": "v"}}}) for i in range(10)],
        return_exceptions=True)
    assert [f"{r.status} {r.message}" for r in results if isinstance(r, BaseException)] == []


async def test_binding_while_delete_pending_is_not_a_500(sqlapi: RunningApi) -> None:
    c = sqlapi.client
    for i in range(10):
        name = f"b{i}"
        await c.create("v1", "pods", "default", _pod(name))
        results = await asyncio.gather(
            c.delete("v1", "pods", "default", name),
            c.request("POST", f"/api/v1/namespaces/default/pods/{name}/binding",
                      body={"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                            "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}),
            return_exceptions=True)
        for r in results:
            if isinstance(r, ApiError):
                assert r.status in (404, 409), f"{r.status} {r.message}"
            elif isinstance(r, BaseException):
                raise r


async def test_precondition_still_conflicts(sqlapi: RunningApi) -> None:
    c = sqlapi.client
    made = await c.create("v1", "configmaps", "default", {"metadata": {"name": "pc"}, "data": {"a": "1"}})
    await c.patch("v1", "configmaps", "default", "pc", {"data": {"a": "2"}})
    with pytest.raises(ApiError) as ei:
        await c.delete("v1", "configmaps", "default", "pc",
                       preconditions={"resourceVersion": made["metadata"]["resourceVersion"]})
    assert ei.value.status == 409
    with pytest.raises(ApiError) as ei:
        await c.patch("v1", "configmaps", "default", "pc",
                      {"metadata": {"resourceVersion": made["metadata"]["resourceVersion"]}, "data": {"a": "3"}})
    assert ei.value.status == 409
