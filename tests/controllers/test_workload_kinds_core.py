"""Pure cores of the ReplicationController, DaemonSet, Job and CronJob controllers."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

from servicenet.controllers import cronjob_core, daemonset_core, job_core, rc_core

NOW = datetime(2026, 12, 3, 12, 0, 30, tzinfo=UTC)
Obj = dict[str, Any]


def _pod(name: str, phase: str = "Running", ready: bool = True, node: str = "n1", labels: Obj | None = None,
         restarts: int = 0) -> Obj:
    return {"metadata": {"name": name, "namespace": "default", "labels": labels or {},
                         "creationTimestamp": "2026-12-03T11:00:00Z"},
            "spec": {"nodeName": node},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                       "containerStatuses": [{"restartCount": restarts}]}}


def _verbs(res: Any) -> list[tuple[str, str]]:
    return [(a.verb, a.plural) for a in res.actions]


def _job(**spec: Any) -> Obj:
    return {"metadata": {"name": "j", "namespace": "default", "uid": "u"},
            "spec": {"completions": 1, "parallelism": 1, "backoffLimit": 6,
                     "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]}}, **spec}}


def test_rc_creates_owned_pods_and_deletes_extras() -> None:
    rc = {"metadata": {"name": "r", "namespace": "default", "uid": "u", "generation": 1},
          "spec": {"replicas": 3, "selector": {"app": "a"},
                   "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c"}]}}}}
    res = rc_core.reconcile(rc, [_pod("p0")], NOW)
    creates = [a for a in res.actions if a.verb == "create"]
    assert len(creates) == 2
    ref = creates[0].body["metadata"]["ownerReferences"][0]  # type: ignore[index]
    assert (ref["apiVersion"], ref["kind"], ref["controller"]) == ("v1", "ReplicationController", True)
    assert res.actions[-1].plural == "replicationcontrollers" and res.actions[-1].verb == "patch_status"
    rc["spec"]["replicas"] = 1
    res = rc_core.reconcile(rc, [_pod("p0"), _pod("p1", ready=False), _pod("p2")], NOW)
    deleted = [a.name for a in res.actions if a.verb == "delete"]
    assert len(deleted) == 2 and deleted[0] == "p1"  # the not-ready pod goes first


def test_job_keeps_parallelism_then_completes() -> None:
    job = _job(completions=3, parallelism=2)
    res = job_core.reconcile(job, [], NOW)
    assert _verbs(res).count(("create", "pods")) == 2
    status = [a for a in res.actions if a.verb == "update_status"][0].body["status"]  # type: ignore[index]
    assert status["startTime"] == "2026-12-03T12:00:30Z" and "active" not in status
    job["status"] = status
    res = job_core.reconcile(job, [_pod("a", "Succeeded", False), _pod("b", "Succeeded", False), _pod("c")], NOW)
    assert _verbs(res).count(("create", "pods")) == 0  # 2 done + 1 running = 3
    res = job_core.reconcile(job, [_pod(n, "Succeeded", False) for n in "abc"], NOW)
    st = [a for a in res.actions if a.verb == "update_status"][0].body["status"]  # type: ignore[index]
    assert [c["type"] for c in st["conditions"]] == ["SuccessCriteriaMet", "Complete"]
    assert st["succeeded"] == 3 and st["completionTime"] == "2026-12-03T12:00:30Z"
    assert [a.event.reason for a in res.actions if a.event and a.verb == "update_status"] == ["Completed"]


def test_job_backoff_counts_failures_and_on_failure_restarts() -> None:
    job = _job(backoffLimit=1)
    res = job_core.reconcile(job, [_pod("a", "Failed", False)], NOW)
    assert ("create", "pods") in _verbs(res)  # 1 failure <= backoffLimit 1: retry
    res = job_core.reconcile(job, [_pod("a", "Failed", False), _pod("b", "Failed", False)], NOW)
    st = [a for a in res.actions if a.verb == "update_status"][0].body["status"]  # type: ignore[index]
    assert st["conditions"][-1]["type"] == "Failed" and st["conditions"][-1]["reason"] == "BackoffLimitExceeded"
    onf = _job(backoffLimit=2)
    onf["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    res = job_core.reconcile(onf, [_pod("a", restarts=3)], NOW)
    assert ("delete", "pods") in _verbs(res)  # the running pod goes with the failed job


def test_job_deadline_and_ttl() -> None:
    job = _job(activeDeadlineSeconds=10)
    job["status"] = {"startTime": "2026-12-03T12:00:00Z"}
    res = job_core.reconcile(job, [_pod("a")], NOW)
    st = [a for a in res.actions if a.verb == "update_status"][0].body["status"]  # type: ignore[index]
    assert st["conditions"][-1]["reason"] == "DeadlineExceeded"
    done = _job(ttlSecondsAfterFinished=60)
    done["status"] = {"completionTime": "2026-12-03T12:00:00Z",
                      "conditions": [{"type": "Complete", "status": "True"}]}
    res = job_core.reconcile(done, [], NOW)
    assert res.actions == () and res.requeue_after == 30.0
    res = job_core.reconcile(done, [], NOW + timedelta(seconds=31))
    assert [(a.verb, a.plural, a.body) for a in res.actions] == [
        ("delete", "jobs", {"propagationPolicy": "Background"})]


def _cj(**spec: Any) -> Obj:
    return {"metadata": {"name": "hello", "namespace": "default", "uid": "cu",
                         "creationTimestamp": "2026-12-03T11:50:10Z"},
            "spec": {"schedule": "*/5 * * * *", "concurrencyPolicy": "Allow", "successfulJobsHistoryLimit": 1,
                     "failedJobsHistoryLimit": 1, "jobTemplate": {"metadata": {"labels": {"x": "y"}},
                                                                  "spec": {"template": {}}}, **spec}}


def test_cronjob_creates_the_latest_due_job_once() -> None:
    cj = _cj()
    res = cronjob_core.reconcile(cj, [], NOW)
    creates = [a for a in res.actions if a.verb == "create"]
    assert len(creates) == 1
    job = creates[0].body
    due = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert job["metadata"]["name"] == f"hello-{int(due.timestamp()) // 60}"  # type: ignore[index]
    assert job["metadata"]["labels"] == {"x": "y"}  # type: ignore[index]
    assert job["metadata"]["annotations"][cronjob_core.SCHEDULED_ANNOTATION] == "2026-12-03T12:00:00Z"  # type: ignore[index]
    assert 269 < (res.requeue_after or 0) < 271  # next at 12:05
    cj["status"] = [a for a in res.actions if a.verb == "update_status"][0].body["status"]  # type: ignore[index]
    assert cj["status"]["lastScheduleTime"] == "2026-12-03T12:00:00Z"
    res = cronjob_core.reconcile(cj, [job], NOW)  # type: ignore[list-item]
    assert not [a for a in res.actions if a.verb == "create"]


def test_cronjob_forbid_replace_suspend_deadline_and_history() -> None:
    running = {"metadata": {"name": "hello-1", "namespace": "default", "uid": "j1"}, "status": {}}
    res = cronjob_core.reconcile(_cj(concurrencyPolicy="Forbid"), [running], NOW)
    assert not [a for a in res.actions if a.verb == "create"] and res.events[0].reason == "JobAlreadyActive"
    res = cronjob_core.reconcile(_cj(concurrencyPolicy="Replace"), [running], NOW)
    assert [(a.verb, a.name) for a in res.actions if a.plural == "jobs"][0] == ("delete", "hello-1")
    assert [a for a in res.actions if a.verb == "create"]
    assert not [a for a in cronjob_core.reconcile(_cj(suspend=True), [], NOW).actions if a.verb == "create"]
    assert not [a for a in cronjob_core.reconcile(_cj(startingDeadlineSeconds=10), [], NOW).actions
                if a.verb == "create"]
    finished = [{"metadata": {"name": f"hello-{i}", "namespace": "default", "uid": f"j{i}"},
                 "status": {"startTime": f"2026-12-03T1{i}:00:00Z", "completionTime": f"2026-12-03T1{i}:00:05Z",
                            "conditions": [{"type": "Complete", "status": "True"}]}} for i in range(3)]
    res = cronjob_core.reconcile(_cj(), finished, NOW)
    assert sorted(a.name for a in res.actions if a.verb == "delete") == ["hello-0", "hello-1"]


def _ds(image: str = "i1") -> Obj:
    return {"metadata": {"name": "d", "namespace": "default", "uid": "du", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "d"}},
                     "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1,
                                                                                   "maxSurge": 0}},
                     "template": {"metadata": {"labels": {"app": "d"}},
                                  "spec": {"nodeSelector": {"role": "edge"},
                                           "containers": [{"name": "c", "image": image}]}}}}


def _node(name: str, labels: Obj, taints: list[Obj] | None = None) -> Obj:
    return {"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints or []}}


def test_daemonset_one_pod_per_eligible_node_and_revision() -> None:
    ds = _ds()
    nodes = [_node("a", {"role": "edge"}), _node("b", {"role": "core"}),
             _node("c", {"role": "edge"}, [{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]),
             _node("d", {"role": "edge"}, [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}])]
    res = daemonset_core.reconcile(ds, [], nodes, [], NOW)
    creates = [a.body for a in res.actions if a.verb == "create" and a.plural == "pods"]
    assert sorted(p["spec"]["nodeName"] for p in creates) == ["a", "c"]  # type: ignore[index]
    p = creates[0]
    assert p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][  # type: ignore[index]
        "nodeSelectorTerms"][0]["matchFields"][0]["values"] == [p["spec"]["nodeName"]]  # type: ignore[index]
    rev = [a.body for a in res.actions if a.plural == "controllerrevisions"][0]
    h = daemonset_core.current_hash(ds)
    assert rev["metadata"]["name"] == f"d-{h}" and rev["revision"] == 1  # type: ignore[index]
    assert rev["data"]["spec"]["template"]["$patch"] == "replace"  # type: ignore[index]
    assert p["metadata"]["labels"][daemonset_core.HASH_LABEL] == h  # type: ignore[index]
    status = [a.body for a in res.actions if a.verb == "patch_status"][0]["status"]  # type: ignore[index]
    assert status["desiredNumberScheduled"] == 2 and status["numberUnavailable"] == 2
    ds["status"] = status
    running = [_pod(f"p{n}", node=n, labels={"app": "d", daemonset_core.HASH_LABEL: h}) for n in "ac"]
    res = daemonset_core.reconcile(ds, running, nodes, [rev], NOW)
    status = [a.body for a in res.actions if a.verb == "patch_status"][0]["status"]  # type: ignore[index]
    assert status["numberAvailable"] == 2 and status["numberUnavailable"] is None  # omitted when zero, as upstream
    assert not [a for a in res.actions if a.plural == "pods"]


def test_daemonset_rolling_update_respects_max_unavailable() -> None:
    old = _ds("i1")
    oh = daemonset_core.current_hash(old)
    new = _ds("i2")
    nodes = [_node(n, {"role": "edge"}) for n in "abc"]
    pods = [_pod(f"p{n}", node=n, labels={"app": "d", daemonset_core.HASH_LABEL: oh}) for n in "abc"]
    for p in pods:
        p["status"]["conditions"][0]["lastTransitionTime"] = "2026-12-03T11:00:00Z"
    revs = [daemonset_core.new_revision(old, oh, 1)]
    res = daemonset_core.reconcile(new, pods, nodes, revs, NOW)
    assert [a.name for a in res.actions if a.verb == "delete" and a.plural == "pods"] == ["pa"]
    assert [a.body["revision"] for a in res.actions if a.plural == "controllerrevisions"] == [2]  # type: ignore[index]
    # a rollback to the old template bumps that revision instead of writing a new one
    res = daemonset_core.reconcile(old, pods, nodes, revs + [daemonset_core.new_revision(new, "x", 2)], NOW)
    assert [(a.verb, a.body) for a in res.actions if a.plural == "controllerrevisions"] == [
        ("patch", {"revision": 3})]
    none_left = copy.deepcopy(pods)
    none_left[0]["status"]["conditions"][0]["status"] = "False"  # node a already unavailable
    res = daemonset_core.reconcile(new, none_left, nodes, revs, NOW)
    assert [a.name for a in res.actions if a.verb == "delete" and a.plural == "pods"] == ["pa"]
