"""Defaulting of built-in kinds, as upstream's ``SetDefaults_*`` functions (plus the few defaults
upstream's registry strategies set before validation, marked below).

``apply_defaults`` edits the object in place and is idempotent. Values allocated by the server
(clusterIP(s), ipFamilies, ipFamilyPolicy, nodePorts) are not set here.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from servicenet.api.views import Obj
from servicenet.api.wire import meta as meta_of

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
DEFAULT_SCHEDULER = "default-scheduler"
DEFAULT_FILE_MODE = 420  # 0644


def _map(parent: Obj, key: str) -> Obj:
    v = parent.get(key)
    if not isinstance(v, dict):
        v = {}
        parent[key] = v
    return v


def _dicts(v: Any) -> list[Obj]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def _setdefault(d: Obj, key: str, value: Any) -> None:
    if d.get(key) is None:
        d[key] = value


# ---------------------------------------------------------------- pods


def _image_pull_policy(image: str) -> str:
    if not image:
        return "IfNotPresent"
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _probe(p: Any) -> None:
    if not isinstance(p, dict):
        return
    _setdefault(p, "timeoutSeconds", 1)
    _setdefault(p, "periodSeconds", 10)
    _setdefault(p, "successThreshold", 1)
    _setdefault(p, "failureThreshold", 3)
    hg = p.get("httpGet")
    if isinstance(hg, dict):
        _setdefault(hg, "path", "/")
        _setdefault(hg, "scheme", "HTTP")


def _container(c: Obj, host_network: bool) -> None:
    if not c.get("imagePullPolicy"):
        c["imagePullPolicy"] = _image_pull_policy(str(c.get("image") or ""))
    _setdefault(c, "terminationMessagePath", DEFAULT_TERMINATION_MESSAGE_PATH)
    _setdefault(c, "terminationMessagePolicy", "File")
    for p in _dicts(c.get("ports")):
        _setdefault(p, "protocol", "TCP")
        if host_network and not p.get("hostPort") and p.get("containerPort") is not None:
            p["hostPort"] = p["containerPort"]
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(c.get(name))
    for env in _dicts(c.get("env")):
        vf = env.get("valueFrom")
        if isinstance(vf, dict) and isinstance(vf.get("fieldRef"), dict):
            _setdefault(vf["fieldRef"], "apiVersion", "v1")


def _resources_requests_from_limits(c: Obj) -> None:
    res = c.get("resources")
    if not isinstance(res, dict) or not isinstance(res.get("limits"), dict):
        return
    req = _map(res, "requests")
    for k, v in res["limits"].items():
        req.setdefault(k, v)


def _volume(v: Obj) -> None:
    sources = [k for k in v if k != "name"]
    if not sources:
        v["emptyDir"] = {}
    for key in ("secret", "configMap", "downwardAPI", "projected"):
        src = v.get(key)
        if isinstance(src, dict):
            _setdefault(src, "defaultMode", DEFAULT_FILE_MODE)
    dapi = v.get("downwardAPI")
    if isinstance(dapi, dict):
        for item in _dicts(dapi.get("items")):
            if isinstance(item.get("fieldRef"), dict):
                _setdefault(item["fieldRef"], "apiVersion", "v1")


def default_pod_spec(spec: Obj) -> None:
    """``SetDefaults_PodSpec`` + container/volume/probe defaults (applies to templates too)."""
    _setdefault(spec, "dnsPolicy", "ClusterFirst")
    _setdefault(spec, "restartPolicy", "Always")
    _setdefault(spec, "securityContext", {})
    _setdefault(spec, "terminationGracePeriodSeconds", 30)
    _setdefault(spec, "schedulerName", DEFAULT_SCHEDULER)
    host_network = bool(spec.get("hostNetwork"))
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _dicts(spec.get(key)):
            _container(c, host_network)
    for v in _dicts(spec.get("volumes")):
        _volume(v)


def _pod(obj: Obj) -> None:
    spec = _map(obj, "spec")
    default_pod_spec(spec)
    _setdefault(spec, "enableServiceLinks", True)
    for key in ("initContainers", "containers"):
        for c in _dicts(spec.get(key)):
            _resources_requests_from_limits(c)


def _template(spec: Obj) -> None:
    tmpl = spec.get("template")
    if isinstance(tmpl, dict):
        default_pod_spec(_map(tmpl, "spec"))


# ---------------------------------------------------------------- services


def _service(obj: Obj) -> None:
    spec = _map(obj, "spec")
    _setdefault(spec, "type", "ClusterIP")
    typ = spec["type"]
    _setdefault(spec, "sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP":
        cfg = _map(_map(spec, "sessionAffinityConfig"), "clientIP")
        _setdefault(cfg, "timeoutSeconds", 10800)
    for p in _dicts(spec.get("ports")):
        _setdefault(p, "protocol", "TCP")
        if p.get("targetPort") in (None, 0, "") and p.get("port") is not None:
            p["targetPort"] = p["port"]
    if typ in ("NodePort", "LoadBalancer") or (typ == "ClusterIP" and spec.get("externalIPs")):
        _setdefault(spec, "externalTrafficPolicy", "Cluster")
    if typ in ("ClusterIP", "NodePort", "LoadBalancer"):
        _setdefault(spec, "internalTrafficPolicy", "Cluster")
    if typ == "LoadBalancer":
        _setdefault(spec, "allocateLoadBalancerNodePorts", True)


def _endpoints(obj: Obj) -> None:
    for subset in _dicts(obj.get("subsets")):
        for p in _dicts(subset.get("ports")):
            _setdefault(p, "protocol", "TCP")


def _endpointslice(obj: Obj) -> None:
    for p in _dicts(obj.get("ports")):
        _setdefault(p, "protocol", "TCP")
        if "name" not in p:
            p["name"] = ""


# ---------------------------------------------------------------- workloads


def _deployment(obj: Obj) -> None:
    spec = _map(obj, "spec")
    _setdefault(spec, "replicas", 1)
    strategy = _map(spec, "strategy")
    _setdefault(strategy, "type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        ru = _map(strategy, "rollingUpdate")
        _setdefault(ru, "maxUnavailable", "25%")
        _setdefault(ru, "maxSurge", "25%")
    _setdefault(spec, "revisionHistoryLimit", 10)
    _setdefault(spec, "progressDeadlineSeconds", 600)
    _template(spec)


def _replicaset(obj: Obj) -> None:
    spec = _map(obj, "spec")
    _setdefault(spec, "replicas", 1)
    _template(spec)


def _statefulset(obj: Obj) -> None:
    spec = _map(obj, "spec")
    _setdefault(spec, "replicas", 1)
    _setdefault(spec, "podManagementPolicy", "OrderedReady")
    us = _map(spec, "updateStrategy")
    _setdefault(us, "type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        _setdefault(_map(us, "rollingUpdate"), "partition", 0)
    _setdefault(spec, "revisionHistoryLimit", 10)
    policy = _map(spec, "persistentVolumeClaimRetentionPolicy")
    _setdefault(policy, "whenDeleted", "Retain")
    _setdefault(policy, "whenScaled", "Retain")
    for pvc in _dicts(spec.get("volumeClaimTemplates")):
        _setdefault(_map(pvc, "spec"), "volumeMode", "Filesystem")
    _template(spec)


def _replicationcontroller(obj: Obj) -> None:
    spec = _map(obj, "spec")
    tlabels = meta_of(spec.get("template")).get("labels") if isinstance(
        spec.get("template"), dict) else None
    if tlabels and isinstance(tlabels, dict):  # SetDefaults_ReplicationController: both come from the template
        if not spec.get("selector"):
            spec["selector"] = dict(tlabels)
        meta = _map(obj, "metadata")
        if not meta.get("labels"):
            meta["labels"] = dict(tlabels)
    _setdefault(spec, "replicas", 1)
    _template(spec)


def _daemonset(obj: Obj) -> None:
    spec = _map(obj, "spec")
    us = _map(spec, "updateStrategy")
    _setdefault(us, "type", "RollingUpdate")
    if us["type"] == "RollingUpdate":
        ru = _map(us, "rollingUpdate")
        _setdefault(ru, "maxUnavailable", 1)
        _setdefault(ru, "maxSurge", 0)
    _setdefault(spec, "revisionHistoryLimit", 10)
    _template(spec)


def default_job_spec(spec: Obj) -> None:
    """``SetDefaults_Job`` on a JobSpec (the CronJob's template is not defaulted this way)."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    _setdefault(spec, "parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6
    _setdefault(spec, "completionMode", "NonIndexed")
    _setdefault(spec, "suspend", False)
    if spec.get("podFailurePolicy") is None:
        _setdefault(spec, "podReplacementPolicy", "TerminatingOrFailed")
    _template(spec)


def _job(obj: Obj) -> None:
    default_job_spec(_map(obj, "spec"))


def _cronjob(obj: Obj) -> None:
    spec = _map(obj, "spec")
    _setdefault(spec, "concurrencyPolicy", "Allow")
    _setdefault(spec, "suspend", False)
    _setdefault(spec, "successfulJobsHistoryLimit", 3)
    _setdefault(spec, "failedJobsHistoryLimit", 1)
    jt = spec.get("jobTemplate")
    if isinstance(jt, dict) and isinstance(jt.get("spec"), dict):
        _template(jt["spec"])


JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def _job_create(obj: Obj) -> None:
    """Upstream's Job strategy on create: unless ``manualSelector``, the selector is the Job's uid
    and the template carries the uid and name labels (new and legacy keys)."""
    spec = _map(obj, "spec")
    meta = meta_of(obj)
    uid, name = meta.get("uid", ""), meta.get("name", "")
    if spec.get("manualSelector") is True or not uid:
        return
    tmpl = _map(spec, "template")
    labels = _map(_map(tmpl, "metadata"), "labels")
    for k, v in ((JOB_UID_LABEL, uid), (JOB_NAME_LABEL, name), ("controller-uid", uid), ("job-name", name)):
        _setdefault(labels, k, v)
    if not spec.get("selector"):
        spec["selector"] = {"matchLabels": {JOB_UID_LABEL: uid}}


# ---------------------------------------------------------------- others


def _namespace(obj: Obj) -> None:
    meta = _map(obj, "metadata")
    name = meta.get("name")
    if name:
        _map(meta, "labels")["kubernetes.io/metadata.name"] = name
    status = obj.get("status")
    if isinstance(status, dict):
        _setdefault(status, "phase", "Active")


def _secret(obj: Obj) -> None:
    _setdefault(obj, "type", "Opaque")
    merge_string_data(obj)


def merge_string_data(obj: Obj) -> None:
    """A Secret's write-only ``stringData`` goes into ``data`` (base64, winning over the same key)
    and is never stored or returned, as upstream's v1 conversion does."""
    sd = obj.pop("stringData", None)
    if not isinstance(sd, dict) or not sd:
        return
    data = obj.get("data")
    if not isinstance(data, dict):
        data = obj["data"] = {}
    for k, v in sd.items():
        if isinstance(v, str):
            data[k] = base64.b64encode(v.encode()).decode()


def _node(obj: Obj) -> None:
    status = obj.get("status")
    if isinstance(status, dict) and isinstance(status.get("capacity"), dict) and status.get("allocatable") is None:
        status["allocatable"] = dict(status["capacity"])


def _ingress(obj: Obj) -> None:
    # networking.k8s.io/v1 has no field defaults (pathType is required); nothing to do.
    return None


_DEFAULTERS: dict[tuple[str, str], Callable[[Obj], None]] = {
    ("v1", "Pod"): _pod,
    ("v1", "Service"): _service,
    ("v1", "Endpoints"): _endpoints,
    ("v1", "Namespace"): _namespace,
    ("v1", "Secret"): _secret,
    ("v1", "Node"): _node,
    ("discovery.k8s.io/v1", "EndpointSlice"): _endpointslice,
    ("apps/v1", "Deployment"): _deployment,
    ("apps/v1", "ReplicaSet"): _replicaset,
    ("apps/v1", "StatefulSet"): _statefulset,
    ("v1", "ReplicationController"): _replicationcontroller,
    ("apps/v1", "DaemonSet"): _daemonset,
    ("batch/v1", "Job"): _job,
    ("batch/v1", "CronJob"): _cronjob,
    ("networking.k8s.io/v1", "Ingress"): _ingress,
}


def apply_defaults(api_version: str, kind: str, obj: Obj) -> None:
    """Fill upstream defaults into ``obj`` in place. Unknown kinds are left untouched."""
    fn = _DEFAULTERS.get((api_version, kind))
    if fn is not None:
        fn(obj)


# ---------------------------------------------------------------- create-time strategy


def pod_qos_class(spec: Obj) -> str:
    """``Guaranteed`` / ``Burstable`` / ``BestEffort`` from the containers' requests and limits."""
    containers = _dicts(spec.get("containers")) + _dicts(spec.get("initContainers"))
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
        req = res.get("requests") if isinstance(res.get("requests"), dict) else {}
        lim = res.get("limits") if isinstance(res.get("limits"), dict) else {}
        req = {k: v for k, v in req.items() if k in ("cpu", "memory")}
        lim = {k: v for k, v in lim.items() if k in ("cpu", "memory")}
        if req or lim:
            any_set = True
        if set(lim) != {"cpu", "memory"} or any(str(req.get(k, lim[k])) != str(lim[k]) for k in lim):
            guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def prepare_for_create(api_version: str, kind: str, obj: Obj) -> None:
    """What upstream's registry strategies/admission set on create only (call after apply_defaults).

    Namespace: status Active and the ``kubernetes`` finalizer; Pod: status Pending + qosClass,
    priority 0 / PreemptLowerPriority (Priority admission, no PriorityClass named).
    Service: a lone ``clusterIP`` seeds ``clusterIPs`` (upstream normalizeClusterIPs on create).
    """
    if (api_version, kind) == ("v1", "Service"):
        _service_create(obj)
    elif (api_version, kind) == ("v1", "Namespace"):
        spec = _map(obj, "spec")
        fins = spec.get("finalizers")
        if not isinstance(fins, list):
            spec["finalizers"] = ["kubernetes"]
        elif "kubernetes" not in fins:
            fins.append("kubernetes")
        obj["status"] = {"phase": "Active"}
    elif (api_version, kind) == ("batch/v1", "Job"):
        _job_create(obj)
    elif (api_version, kind) == ("v1", "Pod"):
        spec = _map(obj, "spec")
        if not spec.get("priorityClassName"):
            _setdefault(spec, "priority", 0)
            _setdefault(spec, "preemptionPolicy", "PreemptLowerPriority")
        obj["status"] = {"phase": "Pending", "qosClass": pod_qos_class(spec)}


def _needs_cluster_ip(spec: Obj) -> bool:
    return (spec.get("type") or "ClusterIP") != "ExternalName"


def _needs_node_port(spec: Obj) -> bool:
    return spec.get("type") in ("NodePort", "LoadBalancer")


def _needs_hc_node_port(spec: Obj) -> bool:
    return spec.get("type") == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local"


def _node_ports(spec: Obj) -> list[Any]:
    return [p.get("nodePort") for p in _dicts(spec.get("ports"))]


def _service_create(obj: Obj) -> None:
    obj["status"] = {"loadBalancer": {}}  # upstream always returns it, empty until a load balancer exists
    spec = _map(obj, "spec")
    cip = spec.get("clusterIP")
    if cip and not spec.get("clusterIPs"):
        spec["clusterIPs"] = [cip]  # an old-style client set only the singular field


def service_prepare_for_update(new: Obj, old: Obj) -> None:
    """Upstream's Service update strategy, applied after ``apply_defaults`` and before validation.

    * normalizeClusterIPs: keep ``clusterIP``/``clusterIPs`` in step when a client set only one;
    * dropTypeDependentFields: when the type changes, drop the values the old type had
      (clusterIPs, ipFamilies, nodePorts, healthCheckNodePort, externalTrafficPolicy, …) unless
      the client changed them;
    * patchAllocatedValues: a PUT/apply that omits allocated values (clusterIP(s), ipFamilies,
      ipFamilyPolicy, nodePort, healthCheckNodePort) keeps the old ones.
    """
    ns, os_ = _map(new, "spec"), old.get("spec") or {}
    old_cip, new_cip = os_.get("clusterIP") or "", ns.get("clusterIP") or ""
    old_cips = list(os_.get("clusterIPs") or [])
    # normalizeClusterIPs
    if old_cips and not ns.get("clusterIPs") and old_cip == new_cip:
        ns["clusterIPs"] = list(old_cips)
    if old_cip != new_cip:
        same = list(ns.get("clusterIPs") or []) == old_cips
        if old_cip and not new_cip and same:
            ns.pop("clusterIPs", None)
        if new_cip and same:
            ns["clusterIPs"] = [new_cip]
    # dropTypeDependentFields
    if _needs_cluster_ip(os_) and not _needs_cluster_ip(ns):
        if list(ns.get("clusterIPs") or []) == old_cips and new_cip == old_cip:
            ns.pop("clusterIP", None)
            ns.pop("clusterIPs", None)
        if ns.get("ipFamilies") == os_.get("ipFamilies"):
            ns.pop("ipFamilies", None)
        if ns.get("ipFamilyPolicy") == os_.get("ipFamilyPolicy"):
            ns.pop("ipFamilyPolicy", None)
    if _needs_node_port(os_) and not _needs_node_port(ns) and _node_ports(ns) == _node_ports(os_):
        for p in _dicts(ns.get("ports")):
            p.pop("nodePort", None)
    if _needs_hc_node_port(os_) and not _needs_hc_node_port(ns):
        if ns.get("healthCheckNodePort") == os_.get("healthCheckNodePort"):
            ns.pop("healthCheckNodePort", None)
    if os_.get("type") == "LoadBalancer" and ns.get("type") != "LoadBalancer":
        if ns.get("allocateLoadBalancerNodePorts") == os_.get("allocateLoadBalancerNodePorts"):
            ns.pop("allocateLoadBalancerNodePorts", None)
        if ns.get("loadBalancerClass") == os_.get("loadBalancerClass"):
            ns.pop("loadBalancerClass", None)
    if _needs_node_port(os_) and not _needs_node_port(ns):
        if ns.get("externalTrafficPolicy") == os_.get("externalTrafficPolicy"):
            ns.pop("externalTrafficPolicy", None)
    if not isinstance(new.get("status"), dict):
        new["status"] = {}
    if ns.get("type") != "LoadBalancer" or not isinstance(new["status"].get("loadBalancer"), dict):
        new["status"]["loadBalancer"] = {}
    # patchAllocatedValues
    if _needs_cluster_ip(os_) and _needs_cluster_ip(ns):
        if not ns.get("clusterIP") and old_cip:
            ns["clusterIP"] = old_cip
        if not ns.get("clusterIPs") and old_cips:
            ns["clusterIPs"] = list(old_cips)
        if not ns.get("ipFamilies") and os_.get("ipFamilies"):
            ns["ipFamilies"] = list(os_["ipFamilies"])
        if not ns.get("ipFamilyPolicy") and os_.get("ipFamilyPolicy"):
            ns["ipFamilyPolicy"] = os_["ipFamilyPolicy"]
    if _needs_node_port(os_) and _needs_node_port(ns):
        old_ports = {(p.get("port"), p.get("protocol") or "TCP"): p.get("nodePort")
                     for p in _dicts(os_.get("ports")) if p.get("nodePort")}
        for p in _dicts(ns.get("ports")):
            np = old_ports.get((p.get("port"), p.get("protocol") or "TCP"))
            if not p.get("nodePort") and np:
                p["nodePort"] = np
    if _needs_hc_node_port(os_) and _needs_hc_node_port(ns) and not ns.get("healthCheckNodePort"):
        if os_.get("healthCheckNodePort"):
            ns["healthCheckNodePort"] = os_["healthCheckNodePort"]
