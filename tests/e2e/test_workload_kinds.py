"""ReplicationController, DaemonSet, Job and CronJob end to end: controllers + node agent + real kubectl."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from .cluster import Cluster, ready, running_cluster, until

RC = """
apiVersion: v1
kind: ReplicationController
metadata:
  name: sleeper
spec:
  replicas: 2
  template:
    metadata:
      labels: {app: sleeper}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: s, image: busybox, command: [sleep, "3600"]}
"""
DS = """
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {app: agent}
  template:
    metadata:
      labels: {app: agent}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: a, image: busybox, command: [sleep, "3600"]}
"""
JOBS = """
apiVersion: batch/v1
kind: Job
metadata:
  name: pi
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: pi, image: busybox, command: [sh, -c, "echo 3.14159"]}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: boom
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: b, image: busybox, command: [sh, -c, "exit 3"]}
---
apiVersion: batch/v1
kind: Job
metadata:
  name: short
spec:
  ttlSecondsAfterFinished: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - {name: b, image: busybox, command: ["true"]}
"""
CRONJOB = """
apiVersion: batch/v1
kind: CronJob
metadata:
  name: hello
spec:
  schedule: "*/1 * * * *"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - {name: hello, image: busybox, command: [echo, hi]}
"""


@pytest.fixture
async def cluster(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running_cluster(tmp_path, "loopback") as c:
        yield c


def _write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


async def _pods(c: Cluster, selector: str) -> list[dict[str, Any]]:
    return (await c.client.list("v1", "pods", "default", label_selector=selector))["items"]


async def test_replicationcontroller_apply_scale_describe(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    _, out, _ = await c.kubectl("apply", "-f", _write(tmp_path, "rc.yaml", RC))
    assert out.strip() == "replicationcontroller/sleeper created"

    async def n_ready(n: int) -> bool:
        return len([p for p in await _pods(c, "app=sleeper") if ready(p) and not p["metadata"].get(
            "deletionTimestamp")]) == n

    await until(lambda: n_ready(2), 30, what="2 rc pods ready")
    pod = (await _pods(c, "app=sleeper"))[0]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicationController"
    _, out, _ = await c.kubectl("scale", "rc", "sleeper", "--replicas=3")
    assert out.strip() == "replicationcontroller/sleeper scaled"
    await until(lambda: n_ready(3), 30, what="3 rc pods ready")
    scale = await c.client.get("v1", "replicationcontrollers", "default", "sleeper", subresource="scale")
    assert scale["status"]["selector"] == "app=sleeper" and scale["spec"]["replicas"] == 3

    async def status_three() -> bool:
        _, out, _ = await c.kubectl("get", "rc", "sleeper")
        return out.splitlines()[1].split()[:4] == ["sleeper", "3", "3", "3"]

    await until(status_three, 15, what="rc status 3/3/3")
    _, out, _ = await c.kubectl("describe", "rc", "sleeper")
    assert "Replicas:     3 current / 3 desired" in out and "Created pod: sleeper-" in out
    await c.kubectl("scale", "rc", "sleeper", "--replicas=1")
    await until(lambda: n_ready(1), 30, what="scaled down to 1")


async def test_daemonset_apply_rollout_history_undo(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    _, out, _ = await c.kubectl("apply", "-f", _write(tmp_path, "ds.yaml", DS))
    assert out.strip() == "daemonset.apps/agent created"
    _, out, _ = await c.kubectl("rollout", "status", "ds/agent", "--timeout=30s")
    assert 'daemon set "agent" successfully rolled out' in out
    pods = [p for p in await _pods(c, "app=agent") if ready(p)]
    assert len(pods) == 1 and pods[0]["spec"]["nodeName"] == c.node
    first_hash = pods[0]["metadata"]["labels"]["controller-revision-hash"]

    await c.kubectl("set", "image", "ds/agent", "a=busybox:1.36")
    _, out, _ = await c.kubectl("rollout", "status", "ds/agent", "--timeout=30s")
    assert "successfully rolled out" in out

    async def one_new_pod() -> list[dict[str, Any]] | None:
        ps = [p for p in await _pods(c, "app=agent") if not p["metadata"].get("deletionTimestamp")]
        ok = len(ps) == 1 and ready(ps[0]) and ps[0]["spec"]["containers"][0]["image"] == "busybox:1.36"
        return ps if ok else None

    await until(one_new_pod, 30, what="the daemon pod replaced")
    _, out, _ = await c.kubectl("rollout", "history", "ds/agent")
    assert [line.split()[0] for line in out.splitlines()[2:] if line.strip()] == ["1", "2"]
    _, out, _ = await c.kubectl("rollout", "undo", "ds/agent")
    assert out.strip() == "daemonset.apps/agent rolled back"
    await c.kubectl("rollout", "status", "ds/agent", "--timeout=30s")

    async def back_to_first() -> bool:
        ps = [p for p in await _pods(c, "app=agent") if not p["metadata"].get("deletionTimestamp")]
        return len(ps) == 1 and ps[0]["metadata"]["labels"]["controller-revision-hash"] == first_hash

    await until(back_to_first, 30, what="the first template back")
    _, out, _ = await c.kubectl("rollout", "history", "ds/agent")
    assert [line.split()[0] for line in out.splitlines()[2:] if line.strip()] == ["2", "3"]
    _, out, _ = await c.kubectl("get", "ds", "agent")
    assert out.splitlines()[1].split()[:6] == ["agent", "1", "1", "1", "1", "1"]


async def test_jobs_complete_fail_and_expire(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    await c.kubectl("apply", "-f", _write(tmp_path, "jobs.yaml", JOBS))
    _, out, _ = await c.kubectl("wait", "--for=condition=complete", "job/pi", "--timeout=60s")
    assert out.strip() == "job.batch/pi condition met"
    job = await c.client.get("batch/v1", "jobs", "default", "pi")
    assert job["status"]["succeeded"] == 3 and job["status"]["completionTime"]
    assert len([p for p in await _pods(c, "job-name=pi") if p["status"]["phase"] == "Succeeded"]) == 3
    _, out, _ = await c.kubectl("logs", "job/pi")
    assert out.strip() == "3.14159"
    _, out, _ = await c.kubectl("get", "job", "pi")
    assert out.splitlines()[1].split()[:3] == ["pi", "Complete", "3/3"]

    _, out, _ = await c.kubectl("wait", "--for=condition=failed", "job/boom", "--timeout=60s")
    assert "condition met" in out
    boom = await c.client.get("batch/v1", "jobs", "default", "boom")
    failed = [x for x in boom["status"]["conditions"] if x["type"] == "Failed"][0]
    assert failed["reason"] == "BackoffLimitExceeded" and boom["status"]["failed"] == 2

    async def short_gone() -> bool:
        names = {j["metadata"]["name"] for j in (await c.client.list("batch/v1", "jobs", "default"))["items"]}
        return "short" not in names

    await until(short_gone, 30, what="the ttlSecondsAfterFinished job deleted")


async def test_cronjob_runs_due_schedule_and_keeps_history(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster
    await c.kubectl("apply", "-f", _write(tmp_path, "cj.yaml", CRONJOB))
    # pretend the last run was three minutes ago so the current minute is due now
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:00Z")
    await c.client.patch("batch/v1", "cronjobs", "default", "hello", {"status": {"lastScheduleTime": past}},
                         subresource="status")

    async def a_job() -> dict[str, Any] | None:
        jobs = (await c.client.list("batch/v1", "jobs", "default"))["items"]
        return jobs[0] if jobs else None

    job = await until(a_job, 30, what="a job from the cronjob")
    minute = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    assert job["metadata"]["name"] in (f"hello-{int(minute.timestamp()) // 60}",
                                       f"hello-{int(minute.timestamp()) // 60 - 1}")
    assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    await c.kubectl("wait", "--for=condition=complete", f"job/{job['metadata']['name']}", "--timeout=60s")

    async def cj_status() -> bool:
        cj = await c.client.get("batch/v1", "cronjobs", "default", "hello")
        return bool(cj["status"].get("lastSuccessfulTime")) and not cj["status"].get("active")

    await until(cj_status, 30, what="cronjob status with lastSuccessfulTime")
    _, out, _ = await c.kubectl("get", "cronjob", "hello")
    assert out.splitlines()[1].split()[:5] == ["hello", "*/1", "*", "*", "*"]
