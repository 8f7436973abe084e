"""The bootstrap RBAC policy: upstream's default ClusterRoles and bindings plus one least-privilege
identity per servicenet component (pure data; the API server reconciles it at start).

Names and rules follow upstream's ``bootstrappolicy`` (cluster-admin, admin/edit/view through
aggregation, ``system:basic-user``, ``system:discovery``, ``system:public-info-viewer``,
``system:node-proxier``, ``system:node``, ``system:kube-dns``, ``system:kube-controller-manager``,
``system:kube-scheduler``, ``system:auth-delegator``).
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

RBAC = "rbac.authorization.k8s.io"
AGG = "rbac.authorization.k8s.io/aggregate-to-"
READ = ["get", "list", "watch"]
WRITE = ["create", "delete", "deletecollection", "patch", "update"]
ALL_RW = READ + WRITE

# component identities (x509 CN, O) — the names upstream's components use
CONTROLLER_MANAGER = ("system:kube-controller-manager", ())
SCHEDULER = ("system:kube-scheduler", ())
PROXY = ("system:kube-proxy", ())
DNS = ("system:serviceaccount:kube-system:coredns", ("system:serviceaccounts", "system:serviceaccounts:kube-system"))
INGRESS = ("system:servicenet:ingress-controller", ())
APISERVER_KUBELET_CLIENT = ("kube-apiserver-kubelet-client", ("system:masters",))


def node_identity(node: str) -> tuple[str, tuple[str, ...]]:
    return (f"system:node:{node}", ("system:nodes",))


def _r(groups: list[str], resources: list[str], verbs: list[str], names: list[str] | None = None) -> Obj:
    d: Obj = {"apiGroups": groups, "resources": resources, "verbs": verbs}
    if names:
        d["resourceNames"] = names
    return d


def _nr(urls: list[str], verbs: list[str]) -> Obj:
    return {"nonResourceURLs": urls, "verbs": verbs}


def _meta(name: str, labels: dict[str, str] | None = None) -> Obj:
    return {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults", **(labels or {})},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}


def _role(name: str, rules: list[Obj], labels: dict[str, str] | None = None) -> Obj:
    return {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(name, labels), "rules": rules}


def _aggregate(name: str, sources: list[str], labels: dict[str, str] | None = None) -> Obj:
    return {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRole", "metadata": _meta(name, labels),
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {AGG + s: "true"}} for s in sources]},
            "rules": []}


def _binding(name: str, role: str, subjects: list[Obj]) -> Obj:
    return {"apiVersion": f"{RBAC}/v1", "kind": "ClusterRoleBinding", "metadata": _meta(name),
            "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role}, "subjects": subjects}


def _user(name: str) -> Obj:
    return {"apiGroup": RBAC, "kind": "User", "name": name}


def _group(name: str) -> Obj:
    return {"apiGroup": RBAC, "kind": "Group", "name": name}


def _sa(ns: str, name: str) -> Obj:
    return {"kind": "ServiceAccount", "name": name, "namespace": ns}


_VIEW_CORE = ["configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
              "replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services",
              "services/status", "bindings", "events", "limitranges", "namespaces/status", "pods/log",
              "pods/status", "replicationcontrollers/status", "resourcequotas", "resourcequotas/status",
              "namespaces"]
_APPS = ["controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
         "deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
         "statefulsets/scale", "statefulsets/status"]
_APPS_W = ["daemonsets", "deployments", "deployments/scale", "replicasets", "replicasets/scale", "statefulsets",
           "statefulsets/scale"]


def cluster_roles() -> list[Obj]:
    view_rules = [
        _r([""], _VIEW_CORE, READ),
        _r(["apps"], _APPS, READ),
        _r(["batch"], ["cronjobs", "cronjobs/status", "jobs", "jobs/status"], READ),
        _r(["discovery.k8s.io"], ["endpointslices"], READ),
        _r(["networking.k8s.io"], ["ingresses", "ingresses/status", "networkpolicies"], READ),
        _r(["gateway.networking.k8s.io"], ["gateways", "httproutes", "grpcroutes", "referencegrants",
                                           "gateways/status", "httproutes/status"], READ),
    ]
    edit_rules = [
        _r([""], ["pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"],
           READ),
        _r([""], ["serviceaccounts"], ["impersonate"]),
        _r([""], ["pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"], WRITE),
        _r([""], ["pods/eviction"], ["create"]),
        _r([""], ["configmaps", "endpoints", "events", "persistentvolumeclaims", "replicationcontrollers",
                  "replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"],
           WRITE),
        _r([""], ["serviceaccounts/token"], ["create"]),
        _r(["apps"], _APPS_W, WRITE),
        _r(["batch"], ["cronjobs", "jobs"], WRITE),
        _r(["discovery.k8s.io"], ["endpointslices"], WRITE),
        _r(["networking.k8s.io"], ["ingresses", "networkpolicies"], WRITE),
        _r(["gateway.networking.k8s.io"], ["gateways", "httproutes", "grpcroutes", "referencegrants"], WRITE),
    ]
    admin_rules = [
        _r(["authorization.k8s.io"], ["localsubjectaccessreviews"], ["create"]),
        _r([RBAC], ["rolebindings", "roles"], ALL_RW),
    ]
    node_rules = [
        _r(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
        _r(["authorization.k8s.io"], ["localsubjectaccessreviews", "subjectaccessreviews"], ["create"]),
        _r([""], ["services"], READ),
        _r([""], ["nodes"], ["create", "get", "list", "watch", "patch", "update"]),
        _r([""], ["nodes/status"], ["patch", "update"]),
        _r([""], ["events"], ["create", "patch", "update"]),
        _r([""], ["pods"], READ),
        _r([""], ["pods"], ["create", "delete"]),
        _r([""], ["pods/status"], ["patch", "update"]),
        _r([""], ["pods/eviction"], ["create"]),
        _r([""], ["configmaps", "secrets"], ["get", "list", "watch"]),
        _r([""], ["persistentvolumeclaims", "persistentvolumes"], ["get"]),
        _r([""], ["endpoints"], ["get"]),
        _r([""], ["serviceaccounts/token"], ["create"]),
        _r(["coordination.k8s.io"], ["leases"], ["create", "delete", "get", "patch", "update"]),
    ]
    return [
        _role("cluster-admin", [_r(["*"], ["*"], ["*"]), _nr(["*"], ["*"])]),
        _aggregate("admin", ["admin"]),
        _aggregate("edit", ["edit"], {AGG + "admin": "true"}),
        _aggregate("view", ["view"], {AGG + "edit": "true"}),
        _role("system:aggregate-to-admin", admin_rules, {AGG + "admin": "true"}),
        _role("system:aggregate-to-edit", edit_rules, {AGG + "edit": "true"}),
        _role("system:aggregate-to-view", view_rules, {AGG + "view": "true"}),
        _role("system:basic-user", [
            _r(["authorization.k8s.io"], ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], ["create"]),
            _r(["authentication.k8s.io"], ["selfsubjectreviews"], ["create"])]),
        _role("system:discovery", [_nr(["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi",
                                        "/openapi/*", "/readyz", "/version", "/version/"], ["get"])]),
        _role("system:public-info-viewer", [_nr(["/healthz", "/livez", "/readyz", "/version", "/version/"],
                                                ["get"])]),
        _role("system:service-account-issuer-discovery",
              [_nr(["/.well-known/openid-configuration", "/.well-known/openid-configuration/",
                    "/openid/v1/jwks", "/openid/v1/jwks/"], ["get"])]),
        _role("system:auth-delegator", [
            _r(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
            _r(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"])]),
        _role("system:node", node_rules),
        _role("system:node-proxier", [
            _r([""], ["endpoints", "services"], ["list", "watch"]),
            _r([""], ["nodes"], READ),
            _r([""], ["events"], ["create", "patch", "update"]),
            _r(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"]),
            _r(["networking.k8s.io"], ["servicecidrs"], ["list", "watch"]),
            # servicenet's proxy also allocates LoadBalancer addresses (a cloud provider's job upstream)
            _r([""], ["services/status"], ["patch", "update"]),
        ]),
        _role("system:kube-dns", [_r([""], ["endpoints", "services"], ["list", "watch"])]),
        _role("system:coredns", [
            _r([""], ["endpoints", "services", "pods", "namespaces"], ["list", "watch"]),
            _r([""], ["nodes"], ["get", "list", "watch"]),
            _r(["discovery.k8s.io"], ["endpointslices"], ["list", "watch"])]),
        _role("system:kube-scheduler", [
            _r([""], ["events"], ["create", "patch", "update"]),
            _r([""], ["nodes", "namespaces", "services", "replicationcontrollers", "persistentvolumeclaims",
                      "persistentvolumes"], READ),
            _r([""], ["pods"], READ + ["delete", "patch", "update"]),
            _r([""], ["bindings", "pods/binding"], ["create"]),
            _r([""], ["pods/status"], ["patch", "update"]),
            _r(["apps"], ["replicasets", "statefulsets"], READ),
            _r(["coordination.k8s.io"], ["leases"], ["create", "get", "update"])]),
        _role("system:kube-controller-manager", [
            _r([""], ["events"], ["create", "patch", "update"]),
            _r([""], ["pods", "endpoints"], ALL_RW),
            _r([""], ["pods/status", "pods/binding", "pods/eviction"], ["create", "patch", "update"]),
            _r([""], ["services", "nodes", "namespaces", "configmaps", "persistentvolumeclaims",
                      "serviceaccounts"], READ),
            _r([""], ["services/status", "nodes/status"], ["patch", "update"]),
            _r(["apps"], _APPS, ALL_RW),
            _r([""], ["replicationcontrollers", "replicationcontrollers/status"], ALL_RW),
            _r(["batch"], ["jobs", "jobs/status", "cronjobs", "cronjobs/status"], ALL_RW),
            _r(["discovery.k8s.io"], ["endpointslices"], ALL_RW),
            # leader election (create/get/update) and the node lifecycle's Lease informer (list/watch)
            _r(["coordination.k8s.io"], ["leases"], ["create", "get", "list", "watch", "update"]),
            _r(["authentication.k8s.io"], ["tokenreviews"], ["create"]),
            _r(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"])]),
        _role("system:servicenet:ingress-controller", [
            _r([""], ["services", "endpoints", "secrets", "namespaces", "nodes", "pods"], ["get", "list", "watch"]),
            _r(["discovery.k8s.io"], ["endpointslices"], ["get", "list", "watch"]),
            _r(["networking.k8s.io"], ["ingresses", "ingressclasses"], ["get", "list", "watch"]),
            _r(["networking.k8s.io"], ["ingressclasses"], ["create"]),  # it registers its own class at start
            _r(["networking.k8s.io"], ["ingresses/status"], ["patch", "update"]),
            # servicenet's controller publishes its own IngressClass on start
            _r(["networking.k8s.io"], ["ingressclasses"], ["create"]),
            _r(["gateway.networking.k8s.io"], ["*"], ["get", "list", "watch"]),
            _r(["gateway.networking.k8s.io"], ["*/status"], ["patch", "update"]),
            _r([""], ["events"], ["create", "patch", "update"])]),
    ]


def cluster_role_bindings() -> list[Obj]:
    return [
        _binding("cluster-admin", "cluster-admin", [_group("system:masters")]),
        _binding("system:basic-user", "system:basic-user", [_group("system:authenticated")]),
        _binding("system:discovery", "system:discovery", [_group("system:authenticated")]),
        _binding("system:public-info-viewer", "system:public-info-viewer",
                 [_group("system:authenticated"), _group("system:unauthenticated")]),
        _binding("system:service-account-issuer-discovery", "system:service-account-issuer-discovery",
                 [_group("system:serviceaccounts")]),
        # upstream's binding has no subjects (the Node authorizer decides); servicenet binds the group
        # and lets its node restriction (authz.NodeRestriction) narrow secrets/configmaps/pods.
        _binding("system:node", "system:node", [_group("system:nodes")]),
        _binding("system:node-proxier", "system:node-proxier", [_user("system:kube-proxy")]),
        _binding("system:kube-dns", "system:kube-dns", [_sa("kube-system", "kube-dns")]),
        _binding("system:coredns", "system:coredns", [_sa("kube-system", "coredns")]),
        _binding("system:kube-scheduler", "system:kube-scheduler", [_user("system:kube-scheduler")]),
        _binding("system:kube-controller-manager", "system:kube-controller-manager",
                 [_user("system:kube-controller-manager")]),
        _binding("system:servicenet:ingress-controller", "system:servicenet:ingress-controller",
                 [_user(INGRESS[0]), _sa("kube-system", "ingress-controller")]),
    ]
