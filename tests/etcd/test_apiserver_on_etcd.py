"""A representative part of the API server suite, run on etcd (see conftest.py), plus what only etcd
has: the ClusterIP/NodePort bitmaps in etcd and secrets encrypted in etcd's values."""

from __future__ import annotations

from test_concurrent_writes import (  # noqa: F401 - re-collected against the etcd-backed API server
    test_many_concurrent_merge_patches_all_land,
    test_precondition_still_conflicts,
    test_put_without_resource_version_and_status_writes_race,
)
from test_cyclic_garbage import test_repeated_writes_leave_no_cyclic_garbage  # noqa: F401
from test_kubectl import (  # noqa: F401
    test_apply_walkthrough_manifests_and_get_wide,
    test_get_watch_sees_later_changes_and_delete_waits,
)
from test_python_client import test_official_client_crud_and_watch  # noqa: F401
from test_watch import (  # noqa: F401
    test_hundred_watchers_get_every_event_in_order,
    test_informer_converges_after_watch_cut_and_compaction,
    test_pagination_is_a_consistent_snapshot,
    test_watch_from_compacted_revision_gets_410,
)

from servicenet.apiserver.shared_alloc import RANGES_KEY, SharedServiceRegistry, decode_bitmap, encode_bitmap
from servicenet.client import ApiError
from servicenet.testing import RunningApi


def svc(name: str, **spec: object) -> dict:  # type: ignore[type-arg]
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"ports": [{"port": 80, "targetPort": 8080}], **spec}}


async def test_list_resource_version_is_the_etcd_revision_read(api: RunningApi) -> None:
    store = api.server.store
    o = await api.client.create("v1", "configmaps", "default", {"metadata": {"name": "a"}, "data": {"k": "v"}})
    rv = int(o["metadata"]["resourceVersion"])
    status = await store.etcd_status()
    assert rv == store.revision <= status.header.revision  # RV = mod_revision = the etcd revision
    lst = await api.client.list("v1", "configmaps", "default")
    assert int(lst["metadata"]["resourceVersion"]) == store.revision


async def test_allocations_live_in_etcd_and_are_released(api: RunningApi) -> None:
    reg = api.server.services
    assert isinstance(reg, SharedServiceRegistry)
    a = await api.client.create("v1", "services", "default", svc("a", type="NodePort"))
    ip, port = a["spec"]["clusterIP"], a["spec"]["ports"][0]["nodePort"]
    rec = api.server.store.get(RANGES_KEY)
    ranges = rec.obj()["ranges"]
    ips = next(v for k, v in ranges.items() if k.startswith("serviceips/"))
    ports = next(v for k, v in ranges.items() if k.startswith("servicenodeports/"))
    ip_alloc = next(iter(reg.ip_allocs.values()))
    assert ip_alloc._offset(ip) in decode_bitmap(ips["data"])
    assert port - reg.ports.base in decode_bitmap(ports["data"])
    try:
        await api.client.create("v1", "services", "default", svc("b", clusterIP=ip))
        raise AssertionError("a taken ClusterIP was handed out twice")
    except ApiError as e:
        assert e.status == 422 and "already allocated" in str(e)
    await api.client.delete("v1", "services", "default", "a")
    await reg.drain()  # the release is a background CAS
    ranges = api.server.store.get(RANGES_KEY).obj()["ranges"]
    assert ip_alloc._offset(ip) not in decode_bitmap(ranges[f"serviceips/{ip_alloc.cidr}"]["data"])
    b = await api.client.create("v1", "services", "default", svc("b", clusterIP=ip))
    assert b["spec"]["clusterIP"] == ip


async def test_list_at_a_revision_this_server_has_not_reached_is_504_retry(api: RunningApi) -> None:
    ahead = api.server.store.revision + 1000  # e.g. a continue token minted by a server further ahead
    try:
        await api.client.request("GET", "/api/v1/namespaces/default/configmaps",
                                 params={"resourceVersion": str(ahead), "resourceVersionMatch": "Exact"})
        raise AssertionError("a list at a future revision was answered")
    except ApiError as e:
        assert e.status == 504 and e.reason == "Timeout"
        assert e.message.startswith(f"Too large resource version: {ahead}, current: ")
        assert e.body["details"]["retryAfterSeconds"] == 1


async def test_repair_marks_missing_and_frees_leaked_after_three_rounds(api: RunningApi) -> None:
    reg = api.server.services
    assert isinstance(reg, SharedServiceRegistry)
    a = await api.client.create("v1", "services", "default", svc("a", type="NodePort"))
    ip_alloc = next(iter(reg.ip_allocs.values()))
    held_ip = ip_alloc._offset(a["spec"]["clusterIP"])
    held_port = a["spec"]["ports"][0]["nodePort"] - reg.ports.base
    # simulate a crash between a Service delete and its release (a leaked bit), and a bitmap that
    # lost a bit a Service holds
    rec = api.server.store.get(RANGES_KEY)
    obj = rec.obj()
    ips_name = f"serviceips/{ip_alloc.cidr}"
    ports_name = next(k for k in obj["ranges"] if k.startswith("servicenodeports/"))
    ips = decode_bitmap(obj["ranges"][ips_name]["data"])
    leaked = max(ips) + 1
    obj["ranges"][ips_name]["data"] = encode_bitmap((ips - {held_ip}) | {leaked}, ip_alloc.size)
    await api.server.store.update(RANGES_KEY, obj, rec.mod_revision)

    def bits(name: str) -> set[int]:
        return decode_bitmap(api.server.store.get(RANGES_KEY).obj()["ranges"][name]["data"])

    assert await reg.repair_once() == (1, 0)  # the Service's IP is marked again at once
    assert held_ip in bits(ips_name) and leaked in bits(ips_name) and held_port in bits(ports_name)
    assert await reg.repair_once() == (0, 0)
    assert await reg.repair_once() == (0, 1)  # leaked on three consecutive rounds: freed
    assert leaked not in bits(ips_name) and held_ip in bits(ips_name)
