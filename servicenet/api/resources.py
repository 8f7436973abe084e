"""Registry of the resources servicenet serves, and the discovery documents built from it.

Legacy discovery (``/api``, ``/apis``, ``/api/v1``, ``/apis/<group>/<version>``) is what kubectl
needs; the aggregated (``apidiscovery.k8s.io/v2``) form is produced too, for clients that ask for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ALL_VERBS: tuple[str, ...] = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
NO_COLLECTION_DELETE: tuple[str, ...] = ("create", "delete", "get", "list", "patch", "update", "watch")
STATUS_VERBS: tuple[str, ...] = ("get", "patch", "update")


@dataclass(frozen=True, slots=True)
class SubresourceInfo:
    """One subresource (``pods/status``) as discovery lists it."""

    name: str  # "status", "scale", "log", ...
    kind: str
    verbs: tuple[str, ...]
    group: str = ""  # set only when the subresource's kind lives in another group/version
    version: str = ""


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    list_kind: str = ""
    subresource_info: tuple[SubresourceInfo, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def gvr(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)

    @property
    def gvk(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.kind)

    @property
    def qualified_resource(self) -> str:
        """``pods`` / ``deployments.apps``, the name upstream's error messages use."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def subresource(self, name: str) -> SubresourceInfo | None:
        for s in self.subresource_info:
            if s.name == name:
                return s
        return None


def _status(kind: str) -> SubresourceInfo:
    return SubresourceInfo("status", kind, STATUS_VERBS)


_SCALE = SubresourceInfo("scale", "Scale", STATUS_VERBS, "autoscaling", "v1")


def _res(group: str, kind: str, plural: str, *, namespaced: bool = True, short: tuple[str, ...] = (),
         categories: tuple[str, ...] = (), verbs: tuple[str, ...] = ALL_VERBS,
         subs: tuple[SubresourceInfo, ...] = ()) -> ResourceInfo:
    return ResourceInfo(group=group, version="v1", kind=kind, plural=plural, singular=kind.lower(),
                        namespaced=namespaced, short_names=short, categories=categories, verbs=verbs,
                        subresources=tuple(s.name for s in subs), list_kind=kind + "List",
                        subresource_info=subs)


_RESOURCES: tuple[ResourceInfo, ...] = (
    # core/v1, in upstream's discovery order (alphabetical by plural)
    _res("", "ConfigMap", "configmaps", short=("cm",)),
    _res("", "Endpoints", "endpoints", short=("ep",)),
    _res("", "Event", "events", short=("ev",)),
    _res("", "Namespace", "namespaces", namespaced=False, short=("ns",), verbs=NO_COLLECTION_DELETE,
         subs=(SubresourceInfo("finalize", "Namespace", ("update",)), _status("Namespace"))),
    _res("", "Node", "nodes", namespaced=False, short=("no",),
         subs=(SubresourceInfo("proxy", "NodeProxyOptions", ("create", "delete", "get", "patch", "update")),
               _status("Node"))),
    _res("", "Pod", "pods", short=("po",), categories=("all",),
         subs=(SubresourceInfo("attach", "PodAttachOptions", ("create", "get")),
               SubresourceInfo("binding", "Binding", ("create",)),
               SubresourceInfo("eviction", "Eviction", ("create",), "policy", "v1"),
               SubresourceInfo("exec", "PodExecOptions", ("create", "get")),
               SubresourceInfo("log", "Pod", ("get",)),
               SubresourceInfo("portforward", "PodPortForwardOptions", ("create", "get")),
               SubresourceInfo("proxy", "PodProxyOptions", ("create", "delete", "get", "patch", "update")),
               _status("Pod"))),
    _res("", "ReplicationController", "replicationcontrollers", short=("rc",), categories=("all",),
         subs=(_SCALE, _status("ReplicationController"))),
    _res("", "Secret", "secrets"),
    _res("", "ServiceAccount", "serviceaccounts", short=("sa",),
         subs=(SubresourceInfo("token", "TokenRequest", ("create",), "authentication.k8s.io", "v1"),)),
    _res("", "Service", "services", short=("svc",), categories=("all",),
         subs=(SubresourceInfo("proxy", "ServiceProxyOptions", ("create", "delete", "get", "patch", "update")),
               _status("Service"))),
    # apps/v1
    _res("apps", "ControllerRevision", "controllerrevisions"),
    _res("apps", "DaemonSet", "daemonsets", short=("ds",), categories=("all",), subs=(_status("DaemonSet"),)),
    _res("apps", "Deployment", "deployments", short=("deploy",), categories=("all",),
         subs=(_SCALE, _status("Deployment"))),
    _res("apps", "ReplicaSet", "replicasets", short=("rs",), categories=("all",),
         subs=(_SCALE, _status("ReplicaSet"))),
    _res("apps", "StatefulSet", "statefulsets", short=("sts",), categories=("all",),
         subs=(_SCALE, _status("StatefulSet"))),
    # authentication.k8s.io/v1, authorization.k8s.io/v1: create-only reviews (answered, never stored)
    _res("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", namespaced=False, verbs=("create",)),
    _res("authentication.k8s.io", "TokenReview", "tokenreviews", namespaced=False, verbs=("create",)),
    _res("authorization.k8s.io", "LocalSubjectAccessReview", "localsubjectaccessreviews", verbs=("create",)),
    _res("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", namespaced=False,
         verbs=("create",)),
    _res("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews", namespaced=False,
         verbs=("create",)),
    _res("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews", namespaced=False,
         verbs=("create",)),
    # batch/v1
    _res("batch", "CronJob", "cronjobs", short=("cj",), categories=("all",), subs=(_status("CronJob"),)),
    _res("batch", "Job", "jobs", categories=("all",), subs=(_status("Job"),)),
    # coordination.k8s.io/v1 (node heartbeats, leader election)
    _res("coordination.k8s.io", "Lease", "leases"),
    # discovery.k8s.io/v1
    _res("discovery.k8s.io", "EndpointSlice", "endpointslices"),
    # networking.k8s.io/v1
    _res("networking.k8s.io", "IngressClass", "ingressclasses", namespaced=False),
    _res("networking.k8s.io", "Ingress", "ingresses", short=("ing",), subs=(_status("Ingress"),)),
    # rbac.authorization.k8s.io/v1
    _res("rbac.authorization.k8s.io", "ClusterRoleBinding", "clusterrolebindings", namespaced=False),
    _res("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", namespaced=False),
    _res("rbac.authorization.k8s.io", "RoleBinding", "rolebindings"),
    _res("rbac.authorization.k8s.io", "Role", "roles"),
    # admissionregistration.k8s.io/v1, apiextensions.k8s.io/v1 (servicenet.apiserver.crds)
    _res("admissionregistration.k8s.io", "ValidatingAdmissionPolicy", "validatingadmissionpolicies",
         namespaced=False, categories=("api-extensions",), subs=(_status("ValidatingAdmissionPolicy"),)),
    _res("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings",
         namespaced=False, categories=("api-extensions",)),
    _res("apiextensions.k8s.io", "CustomResourceDefinition", "customresourcedefinitions", namespaced=False,
         short=("crd", "crds"), categories=("api-extensions",), subs=(_status("CustomResourceDefinition"),)),
)

#: groups in the order ``/apis`` lists them (upstream lists by priority; these are the served ones).
GROUP_ORDER: tuple[str, ...] = ("apps", "authentication.k8s.io", "authorization.k8s.io", "batch", "coordination.k8s.io", "discovery.k8s.io",
                                "networking.k8s.io", "rbac.authorization.k8s.io", "admissionregistration.k8s.io",
                                "apiextensions.k8s.io")

#: the kind the ``scale`` subresource speaks (it has no collection of its own).
SCALE = ResourceInfo(group="autoscaling", version="v1", kind="Scale", plural="", singular="", namespaced=True,
                     verbs=(), list_kind="")

_BY_PLURAL: dict[tuple[str, str, str], ResourceInfo] = {r.gvr: r for r in _RESOURCES}
_BY_KIND: dict[tuple[str, str], ResourceInfo] = {(r.api_version, r.kind): r for r in _RESOURCES}
_BY_NAME: dict[str, ResourceInfo] = {}
for _r in _RESOURCES:
    for _n in (_r.plural, _r.singular, *_r.short_names):
        _BY_NAME.setdefault(_n, _r)


# Resources served from CustomResourceDefinitions, replaced as a whole by ``set_dynamic``.
_DYN: dict[tuple[str, str, str], ResourceInfo] = {}
_DYN_BY_KIND: dict[tuple[str, str], ResourceInfo] = {}
_DYN_BY_NAME: dict[str, ResourceInfo] = {}
_DYN_GROUPS: dict[str, tuple[str, ...]] = {}  # group -> served versions, preferred first


def set_dynamic(infos: list[ResourceInfo], group_versions_: dict[str, tuple[str, ...]]) -> None:
    """Serve ``infos`` (from CRDs) beside the built-ins; ``group_versions_`` orders each group's versions."""
    global _DYN, _DYN_BY_KIND, _DYN_BY_NAME, _DYN_GROUPS, _DYN_GENERATION
    by_name_: dict[str, ResourceInfo] = {}
    for r in infos:
        for n in (r.plural, r.singular, *r.short_names):
            by_name_.setdefault(n, r)
    _DYN, _DYN_BY_KIND = {r.gvr: r for r in infos}, {(r.api_version, r.kind): r for r in infos}
    _DYN_BY_NAME, _DYN_GROUPS = by_name_, {g: v for g, v in group_versions_.items() if g not in GROUP_ORDER}
    _DYN_GENERATION += 1


_DYN_GENERATION = 0


def dynamic_generation() -> int:
    """Changes whenever the set of custom resources does."""
    return _DYN_GENERATION


def all_resources() -> tuple[ResourceInfo, ...]:
    return _RESOURCES


def dynamic_resources() -> tuple[ResourceInfo, ...]:
    return tuple(_DYN.values())


def by_plural(group: str, version: str, plural: str) -> ResourceInfo | None:
    return _BY_PLURAL.get((group, version, plural)) or _DYN.get((group, version, plural))


def by_kind(api_version: str, kind: str) -> ResourceInfo | None:
    return _BY_KIND.get((api_version, kind)) or _DYN_BY_KIND.get((api_version, kind))


def by_name(name: str) -> ResourceInfo | None:
    """Resolve a plural, singular or short name (``svc``) the way kubectl users type them."""
    return _BY_NAME.get(name.lower()) or _DYN_BY_NAME.get(name.lower())


def group_versions() -> list[tuple[str, str]]:
    """Every served (group, version), core first."""
    out: list[tuple[str, str]] = [("", "v1")]
    for g in GROUP_ORDER:
        out.append((g, "v1"))
    for g, vs in _DYN_GROUPS.items():
        out.extend((g, v) for v in vs)
    return out


# ---------------------------------------------------------------- legacy discovery


def api_versions(server_address: str = "127.0.0.1:6443") -> dict[str, Any]:
    """``GET /api``."""
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group(group: str) -> dict[str, Any] | None:
    """``GET /apis/<group>`` (one APIGroup); None if the group is not served."""
    if group in GROUP_ORDER:
        versions: tuple[str, ...] = ("v1",)
    elif group in _DYN_GROUPS:
        versions = _DYN_GROUPS[group]
    else:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list() -> dict[str, Any]:
    """``GET /apis``."""
    groups = []
    for g in (*GROUP_ORDER, *_DYN_GROUPS):
        d = api_group(g) or {}
        del d["kind"], d["apiVersion"]
        groups.append(d)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _api_resource(r: ResourceInfo) -> dict[str, Any]:
    d: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                         "kind": r.kind, "verbs": list(r.verbs)}
    if r.short_names:
        d["shortNames"] = list(r.short_names)
    if r.categories:
        d["categories"] = list(r.categories)
    return d


def _api_subresource(r: ResourceInfo, s: SubresourceInfo) -> dict[str, Any]:
    d: dict[str, Any] = {"name": f"{r.plural}/{s.name}", "singularName": "", "namespaced": r.namespaced}
    if s.group:
        d["group"] = s.group
        d["version"] = s.version
    d["kind"] = s.kind
    d["verbs"] = list(s.verbs)
    return d


def api_resource_list(group: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``GET /apis/<group>/<version>``; ``None`` if the group/version is not served."""
    if (group, version) not in group_versions():
        return None
    resources: list[dict[str, Any]] = []
    for r in (*_RESOURCES, *_DYN.values()):
        if r.group != group or r.version != version:
            continue
        resources.append(_api_resource(r))
        for s in r.subresource_info:
            resources.append(_api_subresource(r, s))
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


# ---------------------------------------------------------------- aggregated discovery (v2)

AGGREGATED_CONTENT_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


def _gvk(group: str, version: str, kind: str) -> dict[str, str]:
    return {"group": group, "version": version, "kind": kind}


def _discovery_group(group: str) -> dict[str, Any]:
    versions = _DYN_GROUPS.get(group, ("v1",))
    return {"metadata": {"name": group} if group else {},
            "versions": [_discovery_version(group, v) for v in versions]}


def _discovery_version(group: str, version: str) -> dict[str, Any]:
    resources = []
    for r in (*_RESOURCES, *_DYN.values()):
        if r.group != group or r.version != version:
            continue
        d: dict[str, Any] = {"resource": r.plural, "responseKind": _gvk(r.group, r.version, r.kind),
                             "scope": "Namespaced" if r.namespaced else "Cluster",
                             "singularResource": r.singular, "verbs": list(r.verbs)}
        if r.short_names:
            d["shortNames"] = list(r.short_names)
        if r.categories:
            d["categories"] = list(r.categories)
        if r.subresource_info:
            d["subresources"] = [
                {"subresource": s.name,
                 "responseKind": _gvk(s.group if s.group else r.group, s.version or r.version, s.kind),
                 "verbs": list(s.verbs)}
                for s in r.subresource_info
            ]
        resources.append(d)
    return {"version": version, "resources": resources, "freshness": "Current"}


def aggregated_discovery(core: bool) -> dict[str, Any]:
    """``GET /api`` (core=True) or ``GET /apis`` answered in the aggregated v2 form."""
    items = [_discovery_group("")] if core else [_discovery_group(g) for g in (*GROUP_ORDER, *_DYN_GROUPS)]
    return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
            "items": items}
