"""ReplicationController, DaemonSet, Job, CronJob, ServiceAccount: discovery, defaults, validation,
Tables and cron parsing (pure)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime

import pytest

from servicenet.api import cron, defaults, resources, schema, tables, validation

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
TEMPLATE = {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


def _errs(api_version: str, kind: str, obj: dict, old: dict | None = None) -> list[str]:  # type: ignore[type-arg]
    info = resources.by_kind(api_version, kind)
    assert info is not None
    defaults.apply_defaults(api_version, kind, obj)
    if old is None:
        defaults.prepare_for_create(api_version, kind, obj)
        return [e.full() for e in validation.validate_create(info, obj)]
    defaults.apply_defaults(api_version, kind, old)
    return [e.full() for e in validation.validate_update(info, obj, old)]


def test_discovery_names_verbs_and_categories() -> None:
    want = {
        "replicationcontrollers": ("", ("rc",), ("all",), ("scale", "status")),
        "daemonsets": ("apps", ("ds",), ("all",), ("status",)),
        "jobs": ("batch", (), ("all",), ("status",)),
        "cronjobs": ("batch", ("cj",), ("all",), ("status",)),
        "serviceaccounts": ("", ("sa",), (), ("token",)),  # TokenRequest
    }
    for plural, (group, short, cats, subs) in want.items():
        r = resources.by_plural(group, "v1", plural)
        assert r is not None, plural
        assert (r.short_names, r.categories, r.subresources) == (short, cats, subs)
        assert r.verbs == resources.ALL_VERBS
    assert resources.by_name("rc").kind == "ReplicationController"  # type: ignore[union-attr]
    assert resources.by_name("cj").kind == "CronJob"  # type: ignore[union-attr]
    doc = resources.api_resource_list("batch", "v1")
    assert doc is not None
    assert [r["name"] for r in doc["resources"]] == ["cronjobs", "cronjobs/status", "jobs", "jobs/status"]
    assert {"groupVersion": "batch/v1", "version": "v1"} in [
        g["preferredVersion"] for g in resources.api_group_list()["groups"]]
    for kind in ("v1/ReplicationController", "apps/v1/DaemonSet", "batch/v1/Job", "batch/v1/CronJob",
                 "v1/ServiceAccount", "batch/v1/JobList"):
        assert schema.definition_name(*kind.rsplit("/", 1)), kind


def test_replicationcontroller_defaults_from_template() -> None:
    rc = {"metadata": {"name": "r", "namespace": "default"}, "spec": {"template": copy.deepcopy(TEMPLATE)}}
    defaults.apply_defaults("v1", "ReplicationController", rc)
    assert rc["spec"]["selector"] == {"app": "a"} and rc["spec"]["replicas"] == 1
    assert rc["metadata"]["labels"] == {"app": "a"}
    assert rc["spec"]["template"]["spec"]["restartPolicy"] == "Always"
    bad = {"metadata": {"name": "r", "namespace": "default"}, "spec": {"selector": {"app": "b"}, "template": copy.deepcopy(TEMPLATE)}}
    assert _errs("v1", "ReplicationController", bad) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"a"}: '
        "selector does not match template labels"]


def test_daemonset_defaults_and_validation() -> None:
    ds = {"metadata": {"name": "d", "namespace": "default"}, "spec": {"selector": {"matchLabels": {"app": "a"}},
                                              "template": copy.deepcopy(TEMPLATE)}}
    assert _errs("apps/v1", "DaemonSet", ds) == []
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert ds["spec"]["revisionHistoryLimit"] == 10
    bad = copy.deepcopy(ds)
    bad["spec"]["updateStrategy"] = {"type": "Sometimes"}
    assert _errs("apps/v1", "DaemonSet", bad) == [
        'spec.updateStrategy.type: Unsupported value: "Sometimes": supported values: "OnDelete", "RollingUpdate"']
    moved = copy.deepcopy(ds)
    moved["spec"]["selector"] = {"matchLabels": {"app": "a", "x": "y"}}
    moved["spec"]["template"]["metadata"]["labels"]["x"] = "y"
    assert any("field is immutable" in e for e in _errs("apps/v1", "DaemonSet", moved, ds))


def test_job_defaults_generated_selector_and_restart_policy() -> None:
    job = {"metadata": {"name": "j", "namespace": "default", "uid": "u-1"}, "spec": {"template": {
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "i"}]}}}}
    assert _errs("batch/v1", "Job", job) == []
    s = job["spec"]
    assert (s["completions"], s["parallelism"], s["backoffLimit"], s["completionMode"], s["suspend"],
            s["podReplacementPolicy"]) == (1, 1, 6, "NonIndexed", False, "TerminatingOrFailed")
    assert s["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    assert s["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "j",
        "controller-uid": "u-1", "job-name": "j"}
    only_par = {"spec": {"parallelism": 3}}
    defaults.apply_defaults("batch/v1", "Job", only_par)
    assert "completions" not in only_par["spec"] and only_par["spec"]["parallelism"] == 3
    always = {"metadata": {"name": "j2", "namespace": "default", "uid": "u-2"}, "spec": {"template": {
        "spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    assert _errs("batch/v1", "Job", always) == [
        'spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"']
    changed = copy.deepcopy(job)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "other"
    assert any(e.startswith("spec.template: Invalid value") and "field is immutable" in e
               for e in _errs("batch/v1", "Job", changed, job))


def test_cronjob_defaults_and_schedule_validation() -> None:
    cj = {"metadata": {"name": "c", "namespace": "default"}, "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {
        "template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "i"}]}}}}}}
    assert _errs("batch/v1", "CronJob", cj) == []
    s = cj["spec"]
    assert (s["concurrencyPolicy"], s["suspend"], s["successfulJobsHistoryLimit"],
            s["failedJobsHistoryLimit"]) == ("Allow", False, 3, 1)
    assert "backoffLimit" not in s["jobTemplate"]["spec"]
    bad = copy.deepcopy(cj)
    bad["spec"]["schedule"] = "every minute"
    bad["spec"]["timeZone"] = "Mars/Olympus"
    bad["metadata"]["name"] = "x" * 53
    assert _errs("batch/v1", "CronJob", bad) == [
        f'metadata.name: Invalid value: "{"x" * 53}": must be no more than 52 characters',
        'spec.schedule: Invalid value: "every minute": expected exactly 5 fields, found 2: [every minute]',
        'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus']


@pytest.mark.parametrize("spec,after,expect", [
    ("*/5 * * * *", datetime(2026, 1, 1, 0, 3, 10), datetime(2026, 1, 1, 0, 5)),
    ("0 9 * * MON-FRI", datetime(2026, 12, 5, 10, 0), datetime(2026, 12, 7, 9, 0)),  # Sat -> Mon
    ("@hourly", datetime(2026, 12, 5, 10, 0), datetime(2026, 12, 5, 11, 0)),
    ("0 0 31 * *", datetime(2026, 2, 1), datetime(2026, 3, 31)),
    ("0 0 13 * 5", datetime(2026, 1, 1), datetime(2026, 1, 2)),  # dom OR dow when both restricted
    ("30 2 * FEB ?", datetime(2026, 3, 1), datetime(2027, 2, 1, 2, 30)),
])
def test_cron_next(spec: str, after: datetime, expect: datetime) -> None:
    assert cron.parse(spec).next(after) == expect


@pytest.mark.parametrize("spec,msg", [
    ("", "empty spec string"),
    ("61 * * * *", "end of range (61) above maximum (59): 61"),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
])
def test_cron_errors(spec: str, msg: str) -> None:
    with pytest.raises(cron.CronError) as ei:
        cron.parse(spec)
    assert str(ei.value) == msg


def test_tables_follow_upstream_printers() -> None:
    job = {"metadata": {"name": "pi", "creationTimestamp": "2026-12-03T11:58:00Z"},
           "spec": {"completions": 3, "parallelism": 2, "selector": {"matchLabels": {"a": "b"}},
                    "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
           "status": {"succeeded": 3, "startTime": "2026-12-03T11:58:00Z", "completionTime": "2026-12-03T11:58:45Z",
                      "conditions": [{"type": "Complete", "status": "True"}]}}
    t = tables.to_table("Job", [job], now=NOW)
    assert [c["name"] for c in t["columnDefinitions"]] == [
        "Name", "Status", "Completions", "Duration", "Age", "Containers", "Images", "Selector"]
    assert t["rows"][0]["cells"] == ["pi", "Complete", "3/3", "45s", "2m", "c", "busybox", "a=b"]
    cj = {"metadata": {"name": "hello", "creationTimestamp": "2026-12-03T11:00:00Z"},
          "spec": {"schedule": "*/1 * * * *", "suspend": False, "jobTemplate": {"spec": {"template": {
              "spec": {"containers": [{"name": "h", "image": "busybox"}]}}}}},
          "status": {"active": [{"name": "x"}], "lastScheduleTime": "2026-12-03T11:59:30Z"}}
    assert tables.to_table("CronJob", [cj], now=NOW)["rows"][0]["cells"] == [
        "hello", "*/1 * * * *", "<none>", "False", 1, "30s", "60m", "h", "busybox", "<none>"]
    ds = {"metadata": {"name": "agent", "creationTimestamp": "2026-12-03T11:59:00Z"},
          "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"spec": {
              "nodeSelector": {"disk": "ssd"}, "containers": [{"name": "a", "image": "busybox"}]}}},
          "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                     "updatedNumberScheduled": 2, "numberAvailable": 1}}
    t = tables.to_table("DaemonSet", [ds], now=NOW)
    assert [c["name"] for c in t["columnDefinitions"]][:8] == [
        "Name", "Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector", "Age"]
    assert t["rows"][0]["cells"] == ["agent", 2, 2, 1, 2, 1, "disk=ssd", "60s", "a", "busybox", "app=agent"]
    rc = {"metadata": {"name": "nginx", "creationTimestamp": "2026-12-03T11:59:00Z"},
          "spec": {"replicas": 3, "selector": {"app": "nginx"},
                   "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}},
          "status": {"replicas": 3, "readyReplicas": 2}}
    assert tables.to_table("ReplicationController", [rc], now=NOW)["rows"][0]["cells"] == [
        "nginx", 3, 3, 2, "60s", "nginx", "nginx", "app=nginx"]
    sa = {"metadata": {"name": "robot", "creationTimestamp": "2026-12-03T11:59:00Z"}}
    assert tables.to_table("ServiceAccount", [sa], now=NOW)["rows"][0]["cells"] == ["robot", 0, "60s"]
