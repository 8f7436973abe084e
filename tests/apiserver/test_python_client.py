"""Acceptance: the official ``kubernetes`` Python client with its typed models."""

from __future__ import annotations

import asyncio
import threading

from servicenet.testing import RunningApi


def _exercise(kc_path: str) -> dict[str, object]:
    from kubernetes import client, config, watch

    api_client = config.new_client_from_config(kc_path)
    core = client.CoreV1Api(api_client)
    disc = client.DiscoveryV1Api(api_client)
    out: dict[str, object] = {}
    events: list[tuple[str, str, str]] = []
    ready = threading.Barrier(4)

    def watcher(kind: str, list_fn: object, final: str) -> None:
        w = watch.Watch()
        lst = list_fn("default")  # type: ignore[operator]
        ready.wait(10)
        for ev in w.stream(list_fn, "default", resource_version=lst.metadata.resource_version, timeout_seconds=15):
            events.append((kind, ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED" and ev["object"].metadata.name == final:
                w.stop()

    threads = [threading.Thread(target=watcher, args=a) for a in (
        ("svc", core.list_namespaced_service, "py-svc"), ("pod", core.list_namespaced_pod, "py-pod"),
        ("slice", disc.list_namespaced_endpoint_slice, "py-svc-1"))]
    for t in threads:
        t.start()
    ready.wait(10)
    svc = client.V1Service(metadata=client.V1ObjectMeta(name="py-svc", labels={"app": "py"}),
                           spec=client.V1ServiceSpec(selector={"app": "py"},
                                                     ports=[client.V1ServicePort(port=80, target_port=8080,
                                                                                 name="http")]))
    created = core.create_namespaced_service("default", svc)
    out["cluster_ip"] = created.spec.cluster_ip
    out["target_port"] = created.spec.ports[0].target_port
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="py-pod", labels={"app": "py"}),
                       spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")]))
    core.create_namespaced_pod("default", pod)
    es = client.V1EndpointSlice(
        address_type="IPv4", metadata=client.V1ObjectMeta(name="py-svc-1",
                                                          labels={"kubernetes.io/service-name": "py-svc"}),
        endpoints=[client.V1Endpoint(addresses=["10.244.0.9"],
                                     conditions=client.V1EndpointConditions(ready=True))],
        ports=[client.DiscoveryV1EndpointPort(name="http", port=8080, protocol="TCP")])
    disc.create_namespaced_endpoint_slice("default", es)
    out["services"] = sorted(s.metadata.name for s in core.list_namespaced_service("default").items)
    out["pods"] = [p.metadata.name for p in core.list_namespaced_pod("default", label_selector="app=py").items]
    slices = disc.list_namespaced_endpoint_slice("default", label_selector="kubernetes.io/service-name=py-svc")
    out["slice_addresses"] = [e.addresses for s in slices.items for e in s.endpoints]
    core.delete_namespaced_pod("py-pod", "default")
    disc.delete_namespaced_endpoint_slice("py-svc-1", "default")
    core.delete_namespaced_service("py-svc", "default")
    for t in threads:
        t.join(20)
    out["events"] = events
    out["pods_after"] = [p.metadata.name for p in core.list_namespaced_pod("default").items]
    return out


async def test_official_client_crud_and_watch(api: RunningApi) -> None:
    res = await asyncio.to_thread(_exercise, str(api.kubeconfig))
    assert str(res["cluster_ip"]).startswith("10.")
    assert res["target_port"] == 8080
    assert res["services"] == ["kubernetes", "py-svc"]
    assert res["pods"] == ["py-pod"]
    assert res["slice_addresses"] == [["10.244.0.9"]]
    for kind, name in (("svc", "py-svc"), ("pod", "py-pod"), ("slice", "py-svc-1")):
        seen = [t for k, t, n in res["events"] if k == kind and n == name]  # type: ignore[union-attr]
        assert seen[0] == "ADDED" and seen[-1] == "DELETED", (kind, seen)
    assert res["pods_after"] == []
