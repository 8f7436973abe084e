from __future__ import annotations

from typing import Any

from servicenet.api import resources as r


def test_lookup() -> None:
    svc = r.by_plural("", "v1", "services")
    assert svc is not None
    assert svc.kind == "Service" and svc.api_version == "v1" and svc.gvr == ("", "v1", "services")
    assert svc.list_kind == "ServiceList" and svc.singular == "service" and svc.namespaced
    assert svc.subresources == ("proxy", "status")
    assert r.by_kind("apps/v1", "Deployment") is r.by_plural("apps", "v1", "deployments")
    assert r.by_kind("v1", "Deployment") is None
    assert r.by_plural("apps", "v1", "services") is None
    assert r.by_name("svc") is svc and r.by_name("deploy") is r.by_kind("apps/v1", "Deployment")
    dep = r.by_kind("apps/v1", "Deployment")
    assert dep is not None and dep.qualified_resource == "deployments.apps"
    scale = dep.subresource("scale")
    assert scale is not None and (scale.group, scale.version, scale.kind) == ("autoscaling", "v1", "Scale")
    kinds = {x.kind for x in r.all_resources()}
    assert kinds >= {"Namespace", "Pod", "Service", "Endpoints", "Node", "Secret", "ConfigMap", "Event",
                     "EndpointSlice", "Deployment", "ReplicaSet", "StatefulSet", "Ingress", "IngressClass"}
    assert not r.by_kind("v1", "Node").namespaced  # type: ignore[union-attr]
    assert not r.by_kind("networking.k8s.io/v1", "IngressClass").namespaced  # type: ignore[union-attr]


def test_api_versions_and_groups() -> None:
    assert r.api_versions("10.0.0.1:6443") == {
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "10.0.0.1:6443"}]}
    groups = r.api_group_list()
    assert groups["kind"] == "APIGroupList" and groups["apiVersion"] == "v1"
    assert groups["groups"][0] == {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                                   "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}
    assert [g["name"] for g in groups["groups"]] == ["apps", "authentication.k8s.io", "authorization.k8s.io",
                                                     "batch", "coordination.k8s.io", "discovery.k8s.io", "networking.k8s.io",
                                                     "rbac.authorization.k8s.io", "admissionregistration.k8s.io",
                                                     "apiextensions.k8s.io"]
    assert r.api_resource_list("apps", "v2") is None


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["name"]: x for x in doc["resources"]}


def test_core_resource_list() -> None:
    doc = r.api_resource_list("", "v1")
    assert doc is not None
    assert (doc["kind"], doc["apiVersion"], doc["groupVersion"]) == ("APIResourceList", "v1", "v1")
    res = _by_name(doc)
    all_verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    assert res["pods"] == {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                           "verbs": all_verbs, "shortNames": ["po"], "categories": ["all"]}
    assert res["pods/status"] == {"name": "pods/status", "singularName": "", "namespaced": True, "kind": "Pod",
                                  "verbs": ["get", "patch", "update"]}
    assert res["pods/log"]["verbs"] == ["get"] and res["pods/log"]["kind"] == "Pod"
    assert res["pods/exec"] == {"name": "pods/exec", "singularName": "", "namespaced": True,
                                "kind": "PodExecOptions", "verbs": ["create", "get"]}
    assert res["pods/portforward"]["kind"] == "PodPortForwardOptions"
    assert res["pods/eviction"] == {"name": "pods/eviction", "singularName": "", "namespaced": True,
                                    "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}
    assert res["services"]["shortNames"] == ["svc"] and res["services"]["categories"] == ["all"]
    assert res["services/status"]["verbs"] == ["get", "patch", "update"]
    assert res["endpoints"]["shortNames"] == ["ep"] and "categories" not in res["endpoints"]
    assert res["namespaces"]["namespaced"] is False and res["namespaces"]["shortNames"] == ["ns"]
    assert "deletecollection" not in res["namespaces"]["verbs"]
    assert res["namespaces/finalize"]["verbs"] == ["update"]
    assert res["nodes"]["shortNames"] == ["no"] and res["nodes"]["namespaced"] is False
    assert res["configmaps"]["shortNames"] == ["cm"] and res["events"]["shortNames"] == ["ev"]
    assert "shortNames" not in res["secrets"]
    assert list(res) == sorted(res)  # upstream lists resources alphabetically


def test_group_resource_lists() -> None:
    apps = _by_name(r.api_resource_list("apps", "v1") or {})
    assert apps["deployments"]["shortNames"] == ["deploy"] and apps["deployments"]["categories"] == ["all"]
    assert apps["deployments/scale"] == {"name": "deployments/scale", "singularName": "", "namespaced": True,
                                         "group": "autoscaling", "version": "v1", "kind": "Scale",
                                         "verbs": ["get", "patch", "update"]}
    assert apps["replicasets"]["shortNames"] == ["rs"] and apps["statefulsets"]["shortNames"] == ["sts"]
    assert "statefulsets/scale" in apps and "replicasets/status" in apps
    disc = _by_name(r.api_resource_list("discovery.k8s.io", "v1") or {})
    assert disc["endpointslices"]["singularName"] == "endpointslice" and "shortNames" not in disc["endpointslices"]
    net = _by_name(r.api_resource_list("networking.k8s.io", "v1") or {})
    assert net["ingresses"]["shortNames"] == ["ing"] and net["ingressclasses"]["namespaced"] is False


def test_aggregated_discovery() -> None:
    core = r.aggregated_discovery(core=True)
    assert core["kind"] == "APIGroupDiscoveryList" and core["apiVersion"] == "apidiscovery.k8s.io/v2"
    assert core["items"][0]["metadata"] == {}
    svc = next(x for x in core["items"][0]["versions"][0]["resources"] if x["resource"] == "services")
    assert svc["scope"] == "Namespaced" and svc["shortNames"] == ["svc"]
    assert {"subresource": "status", "responseKind": {"group": "", "version": "v1", "kind": "Service"},
            "verbs": ["get", "patch", "update"]} in svc["subresources"]
    groups = r.aggregated_discovery(core=False)
    dep = next(x for x in groups["items"][0]["versions"][0]["resources"] if x["resource"] == "deployments")
    assert {"subresource": "scale", "responseKind": {"group": "autoscaling", "version": "v1", "kind": "Scale"},
            "verbs": ["get", "patch", "update"]} in dep["subresources"]


def test_api_group() -> None:
    assert r.api_group("apps") == {"kind": "APIGroup", "apiVersion": "v1", "name": "apps",
                                   "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                                   "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}}
    assert r.api_group("nosuch.example.com") is None
