"""Validation of ReplicationController, DaemonSet, Job, CronJob and ServiceAccount (private; use
``servicenet.api.validation``). Rules and messages follow upstream's ``pkg/apis/*/validation``."""

from __future__ import annotations

import zoneinfo
from typing import Any

from servicenet.api import cron
from servicenet.api._validation_base import (
    Errs,
    Obj,
    _non_negative,
    go_label_selector,
    go_string_map,
    immutable,
    is_dns1123_subdomain,
    validate_label_selector,
    validate_labels,
    validate_object_meta,
)
from servicenet.api._validation_kinds import _pct_or_int, _validate_workload, validate_pod_spec
from servicenet.api.errors import forbidden, invalid, not_supported, required
from servicenet.api.resources import ResourceInfo
from servicenet.api.selectors import selector_matches
from servicenet.api.wire import meta as meta_of


def _spec(obj: Obj) -> Obj:
    s = obj.get("spec")
    return s if isinstance(s, dict) else {}


# ---------------------------------------------------------------- ReplicationController


def validate_replicationcontroller(obj: Obj) -> Errs:
    errs = validate_object_meta(obj, True, is_dns1123_subdomain)
    spec = _spec(obj)
    errs += _non_negative(spec.get("replicas"), "spec.replicas")
    errs += _non_negative(spec.get("minReadySeconds"), "spec.minReadySeconds")
    sel = spec.get("selector")
    if not sel or not isinstance(sel, dict):
        errs.append(required("spec.selector", ""))
    else:
        errs += validate_labels(sel, "spec.selector")
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        return errs + [required("spec.template", "")]
    labels = meta_of(tmpl).get("labels") or {}
    if sel and isinstance(sel, dict) and not all(labels.get(k) == v for k, v in sel.items()):
        errs.append(invalid("spec.template.metadata.labels", go_string_map(labels),
                            "selector does not match template labels"))
    errs += validate_labels(labels, "spec.template.metadata.labels")
    errs += validate_pod_spec(tmpl.get("spec"), "spec.template.spec")
    tspec = tmpl.get("spec") or {}
    rp = tspec.get("restartPolicy")
    if rp and rp != "Always":
        errs.append(not_supported("spec.template.spec.restartPolicy", rp, ["Always"]))
    if tspec.get("activeDeadlineSeconds") is not None:
        errs.append(forbidden("spec.template.spec.activeDeadlineSeconds",
                              "activeDeadlineSeconds in ReplicationController is not Supported"))
    return errs


# ---------------------------------------------------------------- DaemonSet


def validate_daemonset(obj: Obj, old: Obj | None) -> Errs:
    errs, spec = _validate_workload(obj, "daemonset", is_dns1123_subdomain)
    us = spec.get("updateStrategy") if isinstance(spec.get("updateStrategy"), dict) else {}
    typ = us.get("type") or ""
    if typ == "RollingUpdate":
        ru = us.get("rollingUpdate") or {}
        mu, ms = ru.get("maxUnavailable"), ru.get("maxSurge")
        errs += _pct_or_int(mu, "spec.updateStrategy.rollingUpdate.maxUnavailable")
        errs += _pct_or_int(ms, "spec.updateStrategy.rollingUpdate.maxSurge")
        if mu in (0, "0%", None) and ms in (0, "0%", None):
            errs.append(invalid("spec.updateStrategy.rollingUpdate.maxUnavailable", mu,
                                "may not be 0 when `maxSurge` is 0"))
        elif mu not in (0, "0%", None) and ms not in (0, "0%", None):
            errs.append(invalid("spec.updateStrategy.rollingUpdate.maxSurge", ms,
                                "may not be set when maxUnavailable is non-zero"))
    elif typ == "OnDelete":
        pass
    elif not typ:
        errs.append(required("spec.updateStrategy.type", ""))
    else:
        errs.append(not_supported("spec.updateStrategy.type", typ, ["OnDelete", "RollingUpdate"]))
    if old is not None:
        n, o = spec.get("selector"), _spec(old).get("selector")
        if n != o:
            errs.append(invalid("spec.selector", go_label_selector(n), "field is immutable"))
    return errs


# ---------------------------------------------------------------- Job


def _job_template(spec: Obj, path: str, selector: Any, need_selector: bool) -> Errs:
    errs: Errs = []
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        return [required(path + ".template", "")]
    labels = meta_of(tmpl).get("labels") or {}
    if need_selector and selector is None:
        errs.append(required(path + ".selector", ""))
    if isinstance(selector, dict):
        errs += validate_label_selector(selector, path + ".selector")
        if (selector.get("matchLabels") or selector.get("matchExpressions")) and not selector_matches(
                selector, labels):
            errs.append(invalid(path + ".template.metadata.labels", go_string_map(labels),
                                "`selector` does not match template `labels`"))
    errs += validate_labels(labels, path + ".template.metadata.labels")
    errs += validate_pod_spec(tmpl.get("spec"), path + ".template.spec")
    rp = (tmpl.get("spec") or {}).get("restartPolicy") or ""
    if rp not in ("OnFailure", "Never"):
        if rp:
            errs.append(not_supported(path + ".template.spec.restartPolicy", rp, ["OnFailure", "Never"]))
        else:
            errs.append(required(path + ".template.spec.restartPolicy", 'valid values: "OnFailure", "Never"'))
    return errs


def validate_job_spec(spec: Obj, path: str, need_selector: bool = True) -> Errs:
    errs: Errs = []
    for f in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        errs += _non_negative(spec.get(f), f"{path}.{f}")
    ads = spec.get("activeDeadlineSeconds")
    if ads is not None and (not isinstance(ads, int) or ads <= 0):
        errs.append(invalid(path + ".activeDeadlineSeconds", ads, "must be greater than 0"))
    mode = spec.get("completionMode")
    if mode not in (None, "NonIndexed", "Indexed"):
        errs.append(not_supported(path + ".completionMode", mode, ["NonIndexed", "Indexed"]))
    if mode == "Indexed" and spec.get("completions") is None:
        errs.append(required(path + ".completions", "when completion mode is Indexed"))
    prp = spec.get("podReplacementPolicy")
    if prp not in (None, "TerminatingOrFailed", "Failed"):
        errs.append(not_supported(path + ".podReplacementPolicy", prp, ["Failed", "TerminatingOrFailed"]))
    return errs + _job_template(spec, path, spec.get("selector"), need_selector)


def validate_job(obj: Obj, old: Obj | None) -> Errs:
    errs = validate_object_meta(obj, True, is_dns1123_subdomain)
    spec = _spec(obj)
    errs += validate_job_spec(spec, "spec")
    if old is not None:
        ospec = _spec(old)
        errs += immutable(spec.get("selector"), ospec.get("selector"), "spec.selector")
        errs += immutable(spec.get("completionMode"), ospec.get("completionMode"), "spec.completionMode")
        if spec.get("completionMode") != "Indexed":
            errs += immutable(spec.get("completions"), ospec.get("completions"), "spec.completions")
        if not (spec.get("suspend") and ospec.get("suspend")):
            errs += immutable(spec.get("template"), ospec.get("template"), "spec.template")
    return errs


# ---------------------------------------------------------------- CronJob


def validate_cronjob(obj: Obj, old: Obj | None) -> Errs:
    errs = validate_object_meta(obj, True, is_dns1123_subdomain)
    name = meta_of(obj).get("name") or ""
    if len(name) > 52:
        errs.append(invalid("metadata.name", name, "must be no more than 52 characters"))
    spec = _spec(obj)
    sched = spec.get("schedule") or ""
    if not sched:
        errs.append(required("spec.schedule", ""))
    else:
        if "TZ" in sched:
            errs.append(invalid("spec.schedule", sched,
                                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
        else:
            try:
                cron.parse(sched)
            except cron.CronError as exc:
                errs.append(invalid("spec.schedule", sched, str(exc)))
    tz = spec.get("timeZone")
    if tz is not None:
        try:
            if not isinstance(tz, str) or not tz or tz.lower() == "local":
                raise ValueError
            zoneinfo.ZoneInfo(tz)
        except (ValueError, zoneinfo.ZoneInfoNotFoundError):
            errs.append(invalid("spec.timeZone", tz, f"unknown time zone {tz}"))
    cp = spec.get("concurrencyPolicy") or ""
    if not cp:
        errs.append(required("spec.concurrencyPolicy", ""))
    elif cp not in ("Allow", "Forbid", "Replace"):
        errs.append(not_supported("spec.concurrencyPolicy", cp, ["Allow", "Forbid", "Replace"]))
    for f in ("startingDeadlineSeconds", "successfulJobsHistoryLimit", "failedJobsHistoryLimit"):
        errs += _non_negative(spec.get(f), f"spec.{f}")
    jt = spec.get("jobTemplate")
    if not isinstance(jt, dict):
        errs.append(required("spec.jobTemplate", ""))
    else:
        errs += validate_job_spec(jt.get("spec") if isinstance(jt.get("spec"), dict) else {},
                                  "spec.jobTemplate.spec", need_selector=False)
    return errs


# ---------------------------------------------------------------- dispatch


def validate(info: ResourceInfo, obj: Obj, old: Obj | None) -> Errs | None:
    """Errors for the kinds of this module; ``None`` for any other kind."""
    kind = (info.api_version, info.kind)
    if kind == ("v1", "ReplicationController"):
        return validate_replicationcontroller(obj)
    if kind == ("apps/v1", "DaemonSet"):
        return validate_daemonset(obj, old)
    if kind == ("batch/v1", "Job"):
        return validate_job(obj, old)
    if kind == ("batch/v1", "CronJob"):
        return validate_cronjob(obj, old)
    if kind == ("v1", "ServiceAccount"):
        return validate_object_meta(obj, True, is_dns1123_subdomain)
    return None
