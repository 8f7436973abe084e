"""Acceptance: one Service with 1,001 virtual pods → ≥10 slices of ≤100 and a truncated Endpoints object."""

from __future__ import annotations

from pathlib import Path

from .cluster import running_cluster, until


async def test_thousand_virtual_pods(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, "virtual") as c:
        await c.client.create("v1", "services", "default", {
            "metadata": {"name": "big"}, "spec": {"selector": {"app": "big"}, "ports": [{"port": 80}]}})
        await c.client.create("apps/v1", "deployments", "default", {
            "metadata": {"name": "big"},
            "spec": {"replicas": 1001, "selector": {"matchLabels": {"app": "big"}},
                     "template": {"metadata": {"labels": {"app": "big"}},
                                  "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}}})

        async def slices_done() -> list[dict] | None:
            lst = await c.client.list_all("discovery.k8s.io/v1", "endpointslices", "default",
                                          label_selector="kubernetes.io/service-name=big")
            items = lst["items"]
            ready = sum(1 for s in items for e in s.get("endpoints") or [] if e["conditions"].get("ready"))
            return items if ready == 1001 else None

        items = await until(slices_done, 120, interval=0.5, what="1001 ready endpoints in slices")
        assert len(items) >= 10
        assert all(len(s["endpoints"]) <= 100 for s in items)
        ips = [a for s in items for e in s["endpoints"] for a in e["addresses"]]
        assert len(ips) == len(set(ips)) == 1001

        async def truncated() -> dict | None:
            ep = await c.client.get("v1", "endpoints", "default", "big")
            n = sum(len(s.get("addresses") or []) + len(s.get("notReadyAddresses") or [])
                    for s in ep.get("subsets") or [])
            ann = (ep["metadata"].get("annotations") or {}).get("endpoints.kubernetes.io/over-capacity")
            return ep if n == 1000 and ann == "truncated" else None

        await until(truncated, 60, interval=0.5, what="truncated Endpoints")
