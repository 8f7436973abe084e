"""RBAC evaluation core: request attributes, rule matching, bindings, escalation pieces, aggregation."""

from __future__ import annotations

from servicenet.api.rbac import (
    Attributes,
    RbacIndex,
    User,
    aggregated_rules,
    attributes_of,
    escalation_message,
    forbidden_message,
    rule_allows,
    uncovered,
)


def test_attributes_of_requests() -> None:
    a = attributes_of("GET", "/apis/apps/v1/namespaces/ns/deployments/d/scale", {})
    assert (a.verb, a.api_group, a.namespace, a.resource, a.subresource, a.name) == \
        ("get", "apps", "ns", "deployments", "scale", "d")
    assert attributes_of("GET", "/api/v1/pods", {"watch": "true"}).verb == "watch"
    assert attributes_of("GET", "/api/v1/watch/namespaces/a/pods", {}).verb == "watch"
    assert attributes_of("DELETE", "/api/v1/namespaces/a/pods", {}).verb == "deletecollection"
    named = attributes_of("GET", "/api/v1/namespaces/a/secrets", {"fieldSelector": "metadata.name=s"})
    assert (named.verb, named.name) == ("list", "s")
    ns = attributes_of("GET", "/api/v1/namespaces/foo", {})
    assert (ns.resource, ns.name, ns.namespace) == ("namespaces", "foo", "foo")
    assert not attributes_of("GET", "/healthz", {}).resource_request


def test_rule_matching() -> None:
    r = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"], "resourceNames": ["p1"]}
    assert rule_allows(r, Attributes("get", True, resource="pods", name="p1"))
    assert not rule_allows(r, Attributes("get", True, resource="pods", name="p2"))
    assert not rule_allows({**r, "verbs": ["list"]}, Attributes("list", True, resource="pods"))  # unnamed
    assert not rule_allows({**r, "verbs": ["create"]}, Attributes("create", True, resource="pods"))
    sub = {"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["*"]}
    assert rule_allows(sub, Attributes("patch", True, api_group="apps", resource="deployments", subresource="status"))
    assert not rule_allows(sub, Attributes("patch", True, api_group="apps", resource="deployments"))
    nr = {"nonResourceURLs": ["/apis/*"], "verbs": ["get"]}
    assert rule_allows(nr, Attributes("get", False, path="/apis/apps"))
    assert not rule_allows(nr, Attributes("get", False, path="/api"))
    assert not rule_allows(nr, Attributes("get", True, resource="pods"))


def test_bindings_scope() -> None:
    idx = RbacIndex.build(
        roles=[{"metadata": {"namespace": "a", "name": "r"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}],
        cluster_roles=[{"metadata": {"name": "cr"}, "rules": [{"apiGroups": [""], "resources": ["secrets"],
                                                               "verbs": ["list"]}]}],
        role_bindings=[
            {"metadata": {"namespace": "a", "name": "b1"}, "roleRef": {"kind": "Role", "name": "r"},
             "subjects": [{"kind": "ServiceAccount", "name": "sa"}]},
            {"metadata": {"namespace": "a", "name": "b2"}, "roleRef": {"kind": "ClusterRole", "name": "cr"},
             "subjects": [{"kind": "Group", "name": "team"}]}],
        cluster_role_bindings=[])
    sa = User("system:serviceaccount:a:sa", ("system:serviceaccounts",))
    assert idx.authorize(sa, Attributes("get", True, namespace="a", resource="pods"))[0]
    assert not idx.authorize(sa, Attributes("get", True, namespace="b", resource="pods"))[0]
    member = User("jane", ("team",))
    ok, reason = idx.authorize(member, Attributes("list", True, namespace="a", resource="secrets"))
    assert ok and 'RoleBinding "b2/a"' in reason
    assert not idx.authorize(member, Attributes("list", True, resource="secrets"))[0]  # cluster scope
    assert idx.authorize(User("root", ("system:masters",)), Attributes("delete", True, resource="nodes"))[0]


def test_escalation_pieces_and_messages() -> None:
    owner = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    want = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}]
    missing = uncovered(owner, want)
    assert missing == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}]
    assert uncovered([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}], want) == []
    msg = escalation_message(User("bob", ("system:authenticated",)), missing)
    assert msg.endswith('{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}')
    text, *_ = forbidden_message(User("u"), Attributes("list", True, api_group="discovery.k8s.io",
                                                       resource="endpointslices", namespace="n"))
    assert text == ('endpointslices.discovery.k8s.io is forbidden: User "u" cannot list resource "endpointslices" '
                    'in API group "discovery.k8s.io" in the namespace "n"')


def test_aggregation_union_of_selected_roles() -> None:
    agg = {"metadata": {"name": "view"}, "aggregationRule": {"clusterRoleSelectors": [
        {"matchLabels": {"agg": "view"}}]}, "rules": []}
    a = {"metadata": {"name": "a", "labels": {"agg": "view"}}, "rules": [{"verbs": ["get"], "resources": ["x"]}]}
    b = {"metadata": {"name": "b", "labels": {"agg": "other"}}, "rules": [{"verbs": ["get"], "resources": ["y"]}]}
    assert aggregated_rules(agg, [agg, a, b]) == a["rules"]
    assert aggregated_rules(a, [a]) is None
