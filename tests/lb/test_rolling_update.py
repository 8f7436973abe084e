"""Acceptance: a rolling update of the backend Deployment under load through servicenet.lb
(API source, P2C peak EWMA, retry budget on) fails no request."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from e2e.cluster import Cluster, running_cluster, until

from servicenet.lb import ApiSource, Balancer, RequestPolicy, RetryBudget
from servicenet.lb.adapters.aiohttp import LBSession

MAX_REQUESTS = 30_000  # the load is bounded in count and in time
MAX_SECONDS = 90.0


async def _deploy(c: Cluster) -> None:
    await c.client.create("v1", "services", "default", {
        "metadata": {"name": "roll"}, "spec": {"clusterIP": "None", "selector": {"app": "roll"},
                                               "ports": [{"name": "http", "port": 9376}]}})
    tmpl = {"metadata": {"labels": {"app": "roll"}}, "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
        "name": "c", "image": "registry.k8s.io/serve_hostname", "env": [{"name": "V", "value": "1"}],
        "ports": [{"containerPort": 9376}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 9376}, "periodSeconds": 1}}]}}
    await c.client.create("apps/v1", "deployments", "default", {
        "metadata": {"name": "roll"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "roll"}},
                                               "template": tmpl}})


async def _rolled(c: Cluster) -> bool:
    d = await c.client.get("apps/v1", "deployments", "default", "roll")
    st = d.get("status") or {}
    return (st.get("updatedReplicas") == 3 and st.get("readyReplicas") == 3 and st.get("replicas") == 3
            and st.get("observedGeneration") == d["metadata"]["generation"])


async def test_rolling_update_under_load_fails_no_request(tmp_path: Path) -> None:
    async with running_cluster(tmp_path, "loopback") as c:
        await _deploy(c)
        lb = Balancer("peak_ewma", name="roll")
        async with ApiSource("roll", "default", kubeconfig=str(c.api.kubeconfig)) as src:
            src.subscribe(lb)
            await until(lambda: len(lb.eligible) == 3, 60, what="3 ready endpoints")
            await until(lambda: _rolled(c), 30, what="the first rollout")
            before = {p["metadata"]["name"] for p in (await c.client.list("v1", "pods", "default"))["items"]}
            answers: Counter[str] = Counter()
            failures: list[str] = []
            sent = 0
            stop = asyncio.Event()
            t_end = time.monotonic() + MAX_SECONDS

            budget = RetryBudget()
            async with LBSession(lb, "roll", policy=RequestPolicy(timeout=5.0, budget=budget)) as s:
                async def worker() -> None:
                    nonlocal sent
                    while not stop.is_set() and sent < MAX_REQUESTS and time.monotonic() < t_end:
                        sent += 1
                        try:
                            r = await s.get("/")
                            if r.status != 200:
                                failures.append(f"status {r.status}")
                            else:
                                answers[r.text()] += 1
                        except Exception as exc:
                            failures.append(repr(exc))
                        await asyncio.sleep(0.002)

                workers = [asyncio.create_task(worker()) for _ in range(8)]
                await asyncio.sleep(1.0)
                await c.kubectl("set", "env", "deployment/roll", "V=2")
                try:
                    await until(lambda: _rolled(c), MAX_SECONDS - 5, interval=0.1, what="the rolling update")
                    await asyncio.sleep(1.0)  # keep the load on the new pods for a moment
                finally:
                    stop.set()
                    await asyncio.gather(*workers)
        new = set(answers) - before
        assert sent > 500 and len(new) == 3, (sent, answers)
        assert set(answers) & before, "no request reached the old pods during the test"
        assert failures == [], f"{len(failures)} of {sent} requests failed: {failures[:5]}"
        print(f"rolling update: {sent} requests, 0 failed, {budget.retries} retried on another pod")
