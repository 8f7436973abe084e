"""Acceptance for controllers + node agent: workloads become processes with IPs, readiness and slices."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from .cluster import Cluster, ready, redis_primary_links, running_cluster, slice_endpoints, until

MANIFESTS = Path(__file__).parent.parent / "apiserver" / "manifests"


@pytest.fixture(params=["loopback", pytest.param("netns", marks=pytest.mark.root)])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running_cluster(tmp_path, request.param) as c:
        yield c


async def pods(c: Cluster, selector: str) -> list[dict]:
    return (await c.client.list("v1", "pods", "default", label_selector=selector))["items"]


async def test_hostnames_walkthrough(cluster: Cluster) -> None:
    c = cluster
    await c.kubectl("apply", "-f", str(MANIFESTS / "hostnames.yaml"))

    async def three_running() -> list[dict] | None:
        ps = await pods(c, "app=hostnames")
        ok = [p for p in ps if ready(p) and p["status"].get("podIP")]
        return ok if len(ok) == 3 else None

    running = await until(three_running, 30, what="3 ready hostnames pods")
    ips = {p["status"]["podIP"] for p in running}
    assert len(ips) == 3
    _, out, _ = await c.kubectl("get", "pods", "-o", "wide", "-l", "app=hostnames")
    rows = [line.split() for line in out.splitlines()[1:]]
    assert len(rows) == 3 and all(r[1] == "1/1" and r[2] == "Running" for r in rows)
    assert {r[5] for r in rows} == ips and {r[6] for r in rows} == {"node-1"}

    async def ep_lists_all() -> bool:
        _, out, _ = await c.kubectl("get", "ep", "hostnames", "-o", "jsonpath={.subsets[*].addresses[*].ip}")
        return set(out.split()) == ips

    await until(ep_lists_all, 15, what="endpoints")
    _, out, _ = await c.kubectl("get", "ep", "hostnames")
    # kubectl lists up to three addresses before "+ N more...": all three fit
    assert all(f"{ip}:9376" in out for ip in ips) and "more" not in out, out
    for p in running:
        rc, body = await c.exec_in_node("curl", "-s", "--max-time", "5", f"http://{p['status']['podIP']}:9376/")
        assert rc == 0 and body.strip() == p["metadata"]["name"]


async def test_statefulset_ordering_hostnames_and_scale(cluster: Cluster) -> None:
    c = cluster
    if c.network == "loopback":
        # loopback pods cannot bind port 80 without root: use an unprivileged port for nginx
        text = (MANIFESTS / "web-sts.yaml").read_text().replace("containerPort: 80", "containerPort: 8080") \
            .replace("port: 80", "port: 8080")
    else:
        text = (MANIFESTS / "web-sts.yaml").read_text()
    await c.kubectl("apply", "-f", "-", input=text.encode())
    seen_order: list[str] = []

    async def web_ready(n: int) -> bool:
        ps = await pods(c, "app=nginx")
        for p in sorted(ps, key=lambda p: p["metadata"]["creationTimestamp"]):
            if p["metadata"]["name"] not in seen_order:
                seen_order.append(p["metadata"]["name"])
        return len([p for p in ps if ready(p)]) == n and len(ps) == n

    await until(lambda: web_ready(2), 40, what="web-0, web-1 ready")
    assert seen_order == ["web-0", "web-1"]
    web0 = await c.client.get("v1", "pods", "default", "web-0")
    web1 = await c.client.get("v1", "pods", "default", "web-1")
    assert web0["metadata"]["creationTimestamp"] <= web1["metadata"]["creationTimestamp"]

    async def hostnames() -> set[str]:
        return {e.get("hostname", "") for e in await slice_endpoints(c.client, "default", "nginx")
                if e["conditions"].get("ready")}

    await until(lambda: _eq(hostnames(), {"web-0", "web-1"}), 15, what="slice hostnames")
    await c.kubectl("scale", "sts", "web", "--replicas=3")
    await until(lambda: web_ready(3), 40, what="web-2")
    await until(lambda: _eq(hostnames(), {"web-0", "web-1", "web-2"}), 15, what="web-2 in slice")
    await c.kubectl("scale", "sts", "web", "--replicas=2")
    await until(lambda: _eq(hostnames(), {"web-0", "web-1"}), 30, what="web-2 removed first")

    async def web2_gone() -> bool:  # the slice dropped it first; the pod itself finishes terminating
        return "web-2" not in {p["metadata"]["name"] for p in await pods(c, "app=nginx")}

    await until(web2_gone, 40, what="web-2 pod deleted")
    assert {p["metadata"]["name"] for p in await pods(c, "app=nginx")} == {"web-0", "web-1"}
    _, out, _ = await c.kubectl("exec", "web-0", "--", "hostname")
    if c.network == "netns":
        assert out.strip() == "web-0"
    else:  # no UTS namespace without root: the agent still exposes the pod hostname to the process
        assert out.strip()


async def _eq(coro, want):  # type: ignore[no-untyped-def]
    return (await coro) == want


async def test_readiness_probe_flip_moves_endpoint(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    flag = tmp_path / "ready-flag"
    flag.write_text("ok")
    await c.client.create("v1", "services", "default", {
        "metadata": {"name": "probe"}, "spec": {"selector": {"app": "probe"}, "ports": [{"port": 80}]}})
    await c.client.create("v1", "services", "default", {
        "metadata": {"name": "probe-pna"}, "spec": {"selector": {"app": "probe"}, "ports": [{"port": 80}],
                                                    "publishNotReadyAddresses": True}})
    period = 1
    await c.client.create("v1", "pods", "default", {
        "metadata": {"name": "probe-0", "labels": {"app": "probe"}},
        "spec": {"terminationGracePeriodSeconds": 3, "containers": [{
            "name": "c", "image": "busybox", "command": ["sh", "-c", "trap 'sleep 1; exit 0' TERM; while true; do sleep 0.2; done"],
            "securityContext": {"runAsUser": 0},  # the probe reads the test's own root-only file
            "readinessProbe": {"exec": {"command": ["test", "-f", str(flag)]}, "periodSeconds": period,
                               "failureThreshold": 1, "successThreshold": 1}}]}})

    async def ep_ready(svc: str) -> bool | None:
        eps = await slice_endpoints(c.client, "default", svc)
        return eps[0]["conditions"].get("ready") if eps else None

    await until(lambda: _eq(ep_ready("probe"), True), 20, what="probe ready")
    loop = asyncio.get_running_loop()
    flag.unlink()
    t0 = loop.time()
    await until(lambda: _eq(ep_ready("probe"), False), 5, interval=0.01, what="probe unready")
    elapsed = loop.time() - t0
    assert elapsed <= period + 0.1 + 0.2, f"left the ready set after {elapsed:.3f}s"  # 0.2 s polling/CI slack
    assert await ep_ready("probe-pna") is True  # publishNotReadyAddresses keeps it ready
    flag.write_text("ok")
    await until(lambda: _eq(ep_ready("probe"), True), period + 3, interval=0.01, what="probe back")
    # a deleted pod is terminating in the slice until its process exits
    await c.client.delete("v1", "pods", "default", "probe-0")

    async def terminating() -> bool:
        eps = await slice_endpoints(c.client, "default", "probe")
        return bool(eps) and eps[0]["conditions"].get("terminating") is True

    await until(terminating, 5, interval=0.01, what="terminating")
    await until(lambda: _eq(slice_endpoints(c.client, "default", "probe"), []), 15, what="removed after exit")


async def test_selectorless_service_gets_mirrored_slice(cluster: Cluster) -> None:
    c = cluster
    await c.kubectl("apply", "-f", str(MANIFESTS / "selectorless.yaml"))

    async def mirrored() -> list[dict] | None:
        lst = await c.client.list("discovery.k8s.io/v1", "endpointslices", "default",
                                  label_selector="kubernetes.io/service-name=my-external-db")
        return lst["items"] or None

    slices = await until(mirrored, 15, what="mirrored slice")
    s = slices[0]
    assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == \
        "endpointslicemirroring-controller.k8s.io"
    assert sorted(a for e in s["endpoints"] for a in e["addresses"]) == ["127.0.0.50", "127.0.0.51"]
    assert s["ports"][0]["port"] == 5432


async def test_service_links_for_pod_created_after_service(cluster: Cluster) -> None:
    c = cluster
    svc = await c.client.create("v1", "services", "default", {
        "metadata": {"name": "redis-primary"},
        "spec": {"selector": {"app": "redis"}, "ports": [{"name": "redis", "port": 6379},
                                                          {"name": "metrics", "port": 9121}]}})
    ip = svc["spec"]["clusterIP"]
    kube = (await c.client.get("v1", "services", "default", "kubernetes"))["spec"]["clusterIP"]
    await c.client.create("v1", "pods", "default", {
        "metadata": {"name": "envdump"},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox",
                                                           "command": ["sh", "-c", "env; sleep 600"]}]}})

    async def logs() -> str | None:
        rc, out, _ = await c.kubectl("logs", "envdump", check=False)
        return out if rc == 0 and "KUBERNETES_SERVICE_HOST" in out else None

    out = await until(logs, 20, what="env output")
    got = {k: v for k, v in (line.split("=", 1) for line in out.splitlines() if "=" in line)
           if ("_SERVICE_" in k or "_PORT" in k) and (k.startswith("REDIS_PRIMARY") or k.startswith("KUBERNETES"))}
    want = redis_primary_links(ip, kube)
    assert got == want


async def test_rolling_update_keeps_ready_endpoints(cluster: Cluster) -> None:
    c = cluster
    await c.client.create("v1", "services", "default", {
        "metadata": {"name": "roll"}, "spec": {"selector": {"app": "roll"}, "ports": [{"port": 80,
                                                                                      "targetPort": 9376}]}})
    tmpl = {"metadata": {"labels": {"app": "roll"}}, "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
        "name": "c", "image": "registry.k8s.io/serve_hostname", "env": [{"name": "V", "value": "1"}],
        "ports": [{"containerPort": 9376}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 9376}, "periodSeconds": 1,
                           "initialDelaySeconds": 1}}]}}
    await c.client.create("apps/v1", "deployments", "default", {
        "metadata": {"name": "roll"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "roll"}},
                                               "template": tmpl}})

    async def n_ready() -> int:
        return sum(1 for e in await slice_endpoints(c.client, "default", "roll") if e["conditions"].get("ready"))

    await until(lambda: _eq(n_ready(), 3), 40, what="3 ready endpoints")
    await c.kubectl("set", "env", "deployment/roll", "V=2")
    samples: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while loop.time() < deadline:
        samples.append(await n_ready())
        d = await c.client.get("apps/v1", "deployments", "default", "roll")
        st = d.get("status") or {}
        if st.get("updatedReplicas") == 3 and st.get("readyReplicas") == 3 and st.get("replicas") == 3 and \
                st.get("observedGeneration") == d["metadata"]["generation"]:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("rollout did not finish")
    assert min(samples) > 0, f"the Service had no ready endpoints during the rollout: {samples}"
    _, out, _ = await c.kubectl("rollout", "status", "deployment/roll", "--timeout=30s")
    assert "successfully rolled out" in out
