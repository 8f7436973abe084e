"""Garbage collection and namespace deletion."""

from __future__ import annotations

from servicenet.client import ApiError, wait_for
from servicenet.testing import RunningApi

DEPLOY = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
          "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                   "template": {"metadata": {"labels": {"app": "d"}},
                                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def owner(o: dict) -> dict:
    return {"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
            "uid": o["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


async def make_chain(api: RunningApi, ns: str = "default") -> tuple[dict, dict, dict]:
    c = api.client
    d = await c.create("apps/v1", "deployments", ns, DEPLOY)
    rs = await c.create("apps/v1", "replicasets", ns, {
        "metadata": {"name": "d-abc", "ownerReferences": [owner(d)], "labels": {"app": "d"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                 "template": DEPLOY["spec"]["template"]}})
    pod = await c.create("v1", "pods", ns, {
        "metadata": {"name": "d-abc-x", "ownerReferences": [owner(rs)], "labels": {"app": "d"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    return d, rs, pod


async def gone(api: RunningApi, av: str, plural: str, ns: str | None, name: str) -> bool:
    try:
        await api.client.get(av, plural, ns, name)
        return False
    except ApiError as exc:
        return exc.status == 404


async def test_background_deletion_removes_replicasets_and_pods(api: RunningApi) -> None:
    await make_chain(api)
    _, out, _ = await api.kubectl("delete", "deployment", "d")
    assert out.strip() == 'deployment.apps "d" deleted'
    await wait_for(lambda: gone(api, "apps/v1", "replicasets", "default", "d-abc"), 10)
    await wait_for(lambda: gone(api, "v1", "pods", "default", "d-abc-x"), 10)


async def test_foreground_deletion_waits_for_dependents(api: RunningApi) -> None:
    await make_chain(api)
    await api.client.delete("apps/v1", "deployments", "default", "d", propagation_policy="Foreground")
    await wait_for(lambda: gone(api, "apps/v1", "deployments", "default", "d"), 10)
    assert await gone(api, "apps/v1", "replicasets", "default", "d-abc")
    assert await gone(api, "v1", "pods", "default", "d-abc-x")


async def test_orphan_deletion_keeps_dependents(api: RunningApi) -> None:
    await make_chain(api)
    await api.client.delete("apps/v1", "deployments", "default", "d", propagation_policy="Orphan")
    await wait_for(lambda: gone(api, "apps/v1", "deployments", "default", "d"), 10)
    rs = await api.client.get("apps/v1", "replicasets", "default", "d-abc")
    assert "ownerReferences" not in rs["metadata"]
    await api.client.get("v1", "pods", "default", "d-abc-x")


async def test_namespace_deletion_cascades(api: RunningApi) -> None:
    await api.client.create("v1", "namespaces", None, {"metadata": {"name": "team"}})
    await make_chain(api, "team")
    await api.client.create("v1", "services", "team", {"metadata": {"name": "s"},
                                                       "spec": {"ports": [{"port": 80}]}})
    await api.client.create("v1", "configmaps", "team", {"metadata": {"name": "cm"}, "data": {"a": "b"}})
    ns = await api.client.delete("v1", "namespaces", None, "team")
    assert ns["status"]["phase"] == "Terminating"
    await wait_for(lambda: gone(api, "v1", "namespaces", None, "team"), 15)
    for av, plural, name in [("v1", "services", "s"), ("v1", "configmaps", "cm"),
                             ("apps/v1", "deployments", "d"), ("v1", "pods", "d-abc-x")]:
        assert await gone(api, av, plural, "team", name)
    # and creating into a terminating/missing namespace fails
    try:
        await api.client.create("v1", "configmaps", "team", {"metadata": {"name": "x"}})
        raise AssertionError("created into a deleted namespace")
    except ApiError as exc:
        assert exc.status == 404 and exc.message == 'namespaces "team" not found'


async def test_gc_and_the_keepers_take_changes_inside_the_fan_out(api: RunningApi) -> None:
    """The GC (every change) and the default-ServiceAccount / root-CA keepers (one name each) get
    the store's batches from the fan-out itself: no task wake-up per change in the cluster."""
    store = api.server.store
    with_sink = {p for p, ws in store._hub._by_prefix.items() for w in ws if w._sink is not None}
    assert {"/registry/", "/registry/core/configmaps/", "/registry/core/serviceaccounts/"} <= with_sink
    uid = "6b1c4e8e-0000-4000-8000-00000000a11c"
    key = "/registry/core/configmaps/default/inline"
    await store.create(key, {"apiVersion": "v1", "kind": "ConfigMap",
                             "metadata": {"name": "inline", "namespace": "default", "uid": uid}})
    # no await in between: the GC tracked the new object while the store published it
    assert api.server.gc is not None and api.server.gc.uid_key.get(uid) == key


async def test_a_watch_behind_a_compaction_lists_again(api: RunningApi) -> None:
    """The GC's watch reopened at a compacted revision (e.g. after the etcd watch cache was reset)
    lists everything again instead of dying: objects written meanwhile are tracked."""
    import asyncio

    gc = api.server.gc
    assert gc is not None
    await gc.stop()
    behind = api.server.store.revision
    uid = "6b1c4e8e-0000-4000-8000-00000000c0c0"
    key = "/registry/core/configmaps/default/missed"
    await api.server.store.create(key, {"apiVersion": "v1", "kind": "ConfigMap",
                                        "metadata": {"name": "missed", "namespace": "default", "uid": uid}})
    await api.server.store.compact(api.server.store.revision)
    gc.uid_key.clear()
    gc.key_uid.clear()
    task = asyncio.create_task(gc._watch(behind))
    try:
        await wait_for(lambda: gc.uid_key.get(uid) == key, timeout=10)
        assert not task.done()  # still watching, now from the list's revision
        assert gc._rev >= api.server.store.revision
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
