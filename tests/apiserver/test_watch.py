"""Watch semantics: ordering with many watchers, 410 Expired, informer convergence."""

from __future__ import annotations

import asyncio

import pytest

from servicenet.client import ApiError, Informer, wait_for
from servicenet.testing import RunningApi


def cm(name: str, v: str = "0") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"v": v}}


async def test_hundred_watchers_get_every_event_in_order(api: RunningApi) -> None:
    lst = await api.client.list("v1", "configmaps", "default")
    rv = lst["metadata"]["resourceVersion"]
    n_events = 60
    received: list[list[tuple[str, str, int]]] = [[] for _ in range(100)]

    async def watch(i: int) -> None:
        async for ev in api.client.watch("v1", "configmaps", "default", resource_version=rv, timeout_seconds=30,
                                         allow_bookmarks=False):
            md = ev["object"]["metadata"]
            received[i].append((ev["type"], md["name"], int(md["resourceVersion"])))
            if len(received[i]) == n_events:
                return

    tasks = [asyncio.create_task(watch(i)) for i in range(100)]
    await asyncio.sleep(0.5)
    expected = []
    for j in range(20):
        o = await api.client.create("v1", "configmaps", "default", cm(f"c{j}"))
        expected.append(("ADDED", f"c{j}", int(o["metadata"]["resourceVersion"])))
        o = await api.client.patch("v1", "configmaps", "default", f"c{j}", {"data": {"v": "1"}})
        expected.append(("MODIFIED", f"c{j}", int(o["metadata"]["resourceVersion"])))
        await api.client.delete("v1", "configmaps", "default", f"c{j}")
        expected.append(("DELETED", f"c{j}", -1))
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    for got in received:
        assert [(t, n) for t, n, _ in got] == [(t, n) for t, n, _ in expected]
        revs = [r for _, _, r in got]
        assert revs == sorted(revs) and len(set(revs)) == len(revs)


async def test_watch_from_compacted_revision_gets_410(api: RunningApi) -> None:
    o = await api.client.create("v1", "configmaps", "default", cm("old"))
    old_rv = int(o["metadata"]["resourceVersion"])
    for i in range(5):
        await api.client.patch("v1", "configmaps", "default", "old", {"data": {"v": str(i)}})
    await api.server.store.compact(api.server.store.revision)
    events = [ev async for ev in api.client.watch("v1", "configmaps", "default", resource_version=str(old_rv),
                                                  timeout_seconds=5)]
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"


async def test_label_selector_watch_turns_leaving_into_deleted(api: RunningApi) -> None:
    lst = await api.client.list("v1", "configmaps", "default")
    got: list[tuple[str, str]] = []

    async def run() -> None:
        async for ev in api.client.watch("v1", "configmaps", "default", label_selector="team=a",
                                         resource_version=lst["metadata"]["resourceVersion"], timeout_seconds=20,
                                         allow_bookmarks=False):
            got.append((ev["type"], ev["object"]["metadata"]["labels"].get("team", "")))
            if len(got) == 3:
                return

    t = asyncio.create_task(run())
    await asyncio.sleep(0.2)
    c = cm("sel")
    c["metadata"]["labels"] = {"team": "b"}
    await api.client.create("v1", "configmaps", "default", c)
    await api.client.patch("v1", "configmaps", "default", "sel", {"metadata": {"labels": {"team": "a"}}})
    await api.client.patch("v1", "configmaps", "default", "sel", {"data": {"v": "2"}})
    await api.client.patch("v1", "configmaps", "default", "sel", {"metadata": {"labels": {"team": "c"}}})
    await asyncio.wait_for(t, 20)
    assert got == [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "c")]


async def test_informer_converges_after_watch_cut_and_compaction(api: RunningApi) -> None:
    other = api.new_client()
    inf = Informer(other, "v1", "configmaps", "default")
    await inf.start()
    await inf.wait_synced(10)
    for i in range(10):
        await api.client.create("v1", "configmaps", "default", cm(f"i{i}"))
    await wait_for(lambda: len(inf.list()) >= 10, 10)
    # cut every connection of the informer's client, change state while it is away, compact history
    await other.close()
    for i in range(5):
        await api.client.delete("v1", "configmaps", "default", f"i{i}")
    for i in range(10, 15):
        await api.client.create("v1", "configmaps", "default", cm(f"i{i}"))
    await api.client.patch("v1", "configmaps", "default", "i7", {"data": {"v": "final"}})
    await api.server.store.compact(api.server.store.revision)
    final = await api.client.list("v1", "configmaps", "default")
    want = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in final["items"]}

    def converged() -> bool:
        have = {o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in inf.list()}
        return have == want

    await wait_for(converged, 30)
    assert inf.get("default", "i7")["data"]["v"] == "final"
    await inf.stop()
    await other.close()


async def test_pagination_is_a_consistent_snapshot(api: RunningApi) -> None:
    for i in range(25):
        await api.client.create("v1", "configmaps", "default", cm(f"p{i:02d}"))
    page1 = await api.client.list("v1", "configmaps", "default", limit=10)
    assert len(page1["items"]) == 10 and page1["metadata"]["continue"]
    await api.client.create("v1", "configmaps", "default", cm("p99"))  # after the snapshot
    names = [o["metadata"]["name"] for o in page1["items"]]
    cont = page1["metadata"]["continue"]
    while cont:
        page = await api.client.list("v1", "configmaps", "default", limit=10, continue_=cont)
        assert page["metadata"]["resourceVersion"] == page1["metadata"]["resourceVersion"]
        names += [o["metadata"]["name"] for o in page["items"]]
        cont = page["metadata"].get("continue")
    # the namespace's root CA bundle (kube-root-ca.crt, as upstream) sorts first
    assert names == ["kube-root-ca.crt"] + [f"p{i:02d}" for i in range(25)]


async def test_bad_field_selector_is_400(api: RunningApi) -> None:
    with pytest.raises(ApiError) as ei:
        await api.client.list("v1", "services", "default", field_selector="spec.foo=bar")
    assert ei.value.status == 400 and ei.value.body["message"] == "field label not supported: spec.foo"
