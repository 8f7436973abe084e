from __future__ import annotations

import copy
from typing import Any

import pytest

from servicenet.api.defaults import apply_defaults, prepare_for_create, service_prepare_for_update
from servicenet.api.errors import invalid_object
from servicenet.api.resources import by_kind
from servicenet.api.validation import validate_create, validate_update

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
             "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation "
             "is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
               "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
               "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                   "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                   "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")
NAME_PART_MSG = ("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
                 "with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for "
                 "validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')")


def svc(name: str = "web", **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    s.update(spec)
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"}, "spec": s}
    apply_defaults("v1", "Service", obj)
    prepare_for_create("v1", "Service", obj)
    return obj


def upd(**spec: Any) -> dict[str, Any]:
    """A Service update body: defaulted, without the create-time normalisation."""
    s: dict[str, Any] = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    s.update(spec)
    obj = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"}, "spec": s}
    apply_defaults("v1", "Service", obj)
    return obj


def pod(**spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {"containers": [{"name": "c", "image": "nginx:1"}]}
    s.update(spec)
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": s}
    apply_defaults("v1", "Pod", obj)
    return obj


def deploy(selector: Any = None, labels: Any = None, **spec: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "selector": {"matchLabels": {"app": "web"}} if selector is None else selector,
        "template": {"metadata": {"labels": {"app": "web"} if labels is None else labels},
                     "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}},
    }
    s.update(spec)
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
           "spec": s}
    apply_defaults("apps/v1", "Deployment", obj)
    return obj


def slice_(**kw: Any) -> dict[str, Any]:
    obj = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
           "metadata": {"name": "web-abc", "namespace": "default"}, "addressType": "IPv4",
           "endpoints": [{"addresses": ["10.244.0.5"]}], "ports": [{"name": "http", "port": 80}]}
    obj.update(kw)
    apply_defaults("discovery.k8s.io/v1", "EndpointSlice", obj)
    return obj


def _full(obj: dict[str, Any]) -> list[str]:
    info = by_kind(obj["apiVersion"], obj["kind"])
    assert info is not None
    return [e.full() for e in validate_create(info, obj)]


CREATE_CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("valid service", svc(), []),
    ("headless without ports", svc(clusterIP="None", ports=[]), []),
    ("service name dns1035", svc("1web"), [f'metadata.name: Invalid value: "1web": {DNS1035_MSG}']),
    ("service name too long", svc("a" * 64),
     [f'metadata.name: Invalid value: "{"a" * 64}": must be no more than 63 characters']),
    ("ports required", svc(ports=[]), ["spec.ports: Required value"]),
    ("port name required with 2 ports", svc(ports=[{"port": 80, "name": "http"}, {"port": 81}]),
     ["spec.ports[1].name: Required value"]),
    ("port name dns label", svc(ports=[{"port": 80, "name": "HTTP"}]),
     [f'spec.ports[0].name: Invalid value: "HTTP": {LABEL_MSG}']),
    ("duplicate port name", svc(ports=[{"port": 80, "name": "http"}, {"port": 81, "name": "http"}]),
     ['spec.ports[1].name: Duplicate value: "http"']),
    ("port range", svc(ports=[{"port": 70000}]),
     ["spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive",
      "spec.ports[0].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive"]),
    ("bad protocol", svc(ports=[{"port": 80, "protocol": "HTTP"}]),
     ['spec.ports[0].protocol: Unsupported value: "HTTP": supported values: "SCTP", "TCP", "UDP"']),
    ("named targetPort", svc(ports=[{"port": 80, "targetPort": "http--x"}]),
     ['spec.ports[0].targetPort: Invalid value: "http--x": must not contain consecutive hyphens']),
    ("targetPort long name", svc(ports=[{"port": 80, "targetPort": "a-very-long-port-name"}]),
     ['spec.ports[0].targetPort: Invalid value: "a-very-long-port-name": must be no more than 15 characters']),
    ("duplicate port+protocol", svc(ports=[{"port": 80, "name": "a"}, {"port": 80, "name": "b"}]),
     ['spec.ports[1]: Duplicate value: core.ServicePort{Name:"", Protocol:"TCP", AppProtocol:(*string)(nil), '
      'Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:""}, NodePort:0}']),
    ("nodePort on ClusterIP", svc(ports=[{"port": 80, "nodePort": 30080}]),
     ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]),
    ("None on NodePort", svc(type="NodePort", clusterIP="None"),
     ['spec.clusterIPs[0]: Invalid value: "None": may not be set to \'None\' for NodePort services']),
    ("None on LoadBalancer", svc(type="LoadBalancer", clusterIP="None"),
     ['spec.clusterIPs[0]: Invalid value: "None": may not be set to \'None\' for LoadBalancer services']),
    ("externalName required", svc(type="ExternalName", selector=None, ports=[]),
     ["spec.externalName: Required value"]),
    ("externalName bad", svc(type="ExternalName", externalName="Foo_bar"),
     [f'spec.externalName: Invalid value: "Foo_bar": {SUBDOMAIN_MSG}']),
    ("externalName trailing dot ok", svc(type="ExternalName", externalName="example.com."), []),
    ("externalName with clusterIP", svc(type="ExternalName", externalName="x.com", clusterIP="10.96.0.5"),
     ["spec.clusterIPs: Forbidden: may not be set for ExternalName services"]),
    ("selector label value", svc(selector={"app": "-web"}),
     [f'spec.selector: Invalid value: "-web": {LABEL_VALUE_MSG}']),
    ("selector label key", svc(selector={"a/b/c": "x"}),
     ['spec.selector: Invalid value: "a/b/c": a qualified name must consist of alphanumeric characters, '
      "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
      "or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional "
      "DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]),
    ("bad clusterIP", svc(clusterIP="10.96.0.300"),
     ['spec.clusterIPs[0]: Invalid value: "10.96.0.300": must be a valid IP address, '
      "(e.g. 10.9.8.7 or 2001:db8::ffff)"]),
    ("bad type", svc(type="Weird"),
     ['spec.type: Unsupported value: "Weird": supported values: "ClusterIP", "ExternalName", '
      '"LoadBalancer", "NodePort"',
      "spec.internalTrafficPolicy: Required value"]),  # not defaulted for an unknown type, as upstream
    ("bad affinity", svc(sessionAffinity="Sticky"),
     ['spec.sessionAffinity: Unsupported value: "Sticky": supported values: "ClientIP", "None"']),
    ("LB kubelet port", svc(type="LoadBalancer", ports=[{"port": 10250}]),
     ["spec.ports[0].port: Invalid value: 10250: may not expose port 10250 externally since it is used by kubelet"]),
    ("ETP on ClusterIP", svc(externalTrafficPolicy="Local"),
     ['spec.externalTrafficPolicy: Invalid value: "Local": may only be set for externally-accessible services']),
    ("ipFamilies mismatch", svc(clusterIP="fd00::5", ipFamilies=["IPv4"]),
     ['spec.clusterIPs[0]: Invalid value: "fd00::5": expected an IPv4 value as indicated by `ipFamilies[0]`']),
    ("two v4 clusterIPs", svc(clusterIP="10.96.0.5", clusterIPs=["10.96.0.5", "10.96.0.6"]),
     ['spec.clusterIPs: Invalid value: ["10.96.0.5","10.96.0.6"]: may specify no more than one IP for each '
      "IP family"]),
    ("valid pod", pod(), []),
    ("pod no containers", pod(containers=[]), ["spec.containers: Required value"]),
    ("pod container name", pod(containers=[{"name": "C", "image": "x"}]),
     [f'spec.containers[0].name: Invalid value: "C": {LABEL_MSG}']),
    ("pod image required", pod(containers=[{"name": "c"}]), ["spec.containers[0].image: Required value"]),
    ("pod duplicate container", pod(containers=[{"name": "c", "image": "x"}, {"name": "c", "image": "y"}]),
     ['spec.containers[1].name: Duplicate value: "c"']),
    ("pod restartPolicy", pod(restartPolicy="Sometimes"),
     ['spec.restartPolicy: Unsupported value: "Sometimes": supported values: "Always", "OnFailure", "Never"']),
    ("pod container port", pod(containers=[{"name": "c", "image": "x", "ports": [{"containerPort": 0}]}]),
     ["spec.containers[0].ports[0].containerPort: Required value"]),
    ("valid deployment", deploy(), []),
    ("deployment selector mismatch", deploy(labels={"app": "other"}),
     ['spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: '
      "`selector` does not match template `labels`"]),
    ("deployment no selector", deploy(selector={}),
     ["spec.selector: Invalid value: &v1.LabelSelector{MatchLabels:map[string]string(nil), "
      "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]),
    ("deployment replicas", deploy(replicas=-1),
     ["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]),
    ("deployment template restartPolicy",
     deploy(template={"metadata": {"labels": {"app": "web"}},
                      "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}),
     ['spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"']),
    ("valid slice", slice_(), []),
    ("slice address type", slice_(addressType="IPv5"),
     ['addressType: Unsupported value: "IPv5": supported values: "FQDN", "IPv4", "IPv6"']),
    ("slice bad v4", slice_(endpoints=[{"addresses": ["fd00::1"]}]),
     ['endpoints[0].addresses[0]: Invalid value: "fd00::1": must be a valid IPv4 address']),
    ("slice no address", slice_(endpoints=[{"addresses": []}]),
     ["endpoints[0].addresses: Required value: must contain at least 1 address"]),
    ("slice too many", slice_(endpoints=[{"addresses": [f"10.0.{i // 250}.{i % 250 + 1}"]} for i in range(1001)]),
     ["endpoints: Too many: 1001: must have at most 1000 items"]),
    ("slice port name", slice_(ports=[{"name": "Http", "port": 80}]),
     [f'ports[0].name: Invalid value: "Http": {LABEL_MSG}']),
]


@pytest.mark.parametrize("name,obj,expected", CREATE_CASES, ids=[c[0] for c in CREATE_CASES])
def test_validate_create(name: str, obj: dict[str, Any], expected: list[str]) -> None:
    assert _full(obj) == expected


def test_metadata_rules() -> None:
    obj = svc()
    obj["metadata"]["labels"] = {"app": "x" * 64, "bad key!": "v"}
    obj["metadata"]["annotations"] = {"/x": "y"}
    assert _full(obj) == [
        f'metadata.labels: Invalid value: "{"x" * 64}": must be no more than 63 characters',
        f'metadata.labels: Invalid value: "bad key!": {NAME_PART_MSG}',
        'metadata.annotations: Invalid value: "/x": prefix part must be non-empty',
    ]
    obj = svc()
    del obj["metadata"]["name"]
    assert _full(obj) == ["metadata.name: Required value: name or generateName is required"]
    obj["metadata"]["generateName"] = "web-"
    assert _full(obj) == ["metadata.name: Required value: name or generateName is required"]
    obj["metadata"]["generateName"] = "Web-"
    assert _full(obj)[0].startswith('metadata.generateName: Invalid value: "Web-": a DNS-1035 label')
    obj = svc()
    del obj["metadata"]["namespace"]
    assert _full(obj) == ["metadata.namespace: Required value"]
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b", "namespace": "x"}}
    assert _full(ns) == [f'metadata.name: Invalid value: "a.b": {LABEL_MSG}',
                         "metadata.namespace: Forbidden: not allowed on this type"]
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Cfg", "namespace": "d"},
          "data": {"ok.key": "1", "bad/key": "2", "..x": "3"}}
    assert _full(cm) == [
        f'metadata.name: Invalid value: "Cfg": {SUBDOMAIN_MSG}',
        "data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters, "
        "'-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is "
        "'[-._a-zA-Z0-9]+')",
        "data[..x]: Invalid value: \"..x\": must not start with '..'",
    ]


def test_invalid_status_message() -> None:
    obj = svc(type="NodePort", clusterIP="None")
    info = by_kind("v1", "Service")
    assert info is not None
    err = invalid_object("Service", "", "web", validate_create(info, obj))
    assert err.status()["message"] == ('Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "None": '
                                       "may not be set to 'None' for NodePort services")


def _update(new: dict[str, Any], old: dict[str, Any]) -> list[str]:
    info = by_kind(new["apiVersion"], new["kind"])
    assert info is not None
    return [e.full() for e in validate_update(info, new, old)]


def test_service_update_rules() -> None:
    old = svc(clusterIP="10.96.0.20")
    new = svc(clusterIP="None")
    assert _update(new, old) == ['spec.clusterIPs[0]: Invalid value: ["None"]: may not change once set']
    # a manifest without clusterIP keeps the allocated one (kubectl apply/replace)
    new = upd()
    service_prepare_for_update(new, old)
    assert new["spec"]["clusterIP"] == "10.96.0.20" and new["spec"]["clusterIPs"] == ["10.96.0.20"]
    assert _update(new, old) == []
    # an old client sending only clusterIP keeps clusterIPs
    new = upd(clusterIP="10.96.0.20")
    service_prepare_for_update(new, old)
    assert new["spec"]["clusterIPs"] == ["10.96.0.20"]
    # changing only clusterIP (merge patch) moves clusterIPs along, then validation refuses it
    new = upd(clusterIP="10.96.0.21", clusterIPs=["10.96.0.20"])
    service_prepare_for_update(new, old)
    assert _update(new, old) == ['spec.clusterIPs[0]: Invalid value: ["10.96.0.21"]: may not change once set']
    # explicit clearing of clusterIPs while clusterIP stays
    new = svc(clusterIP="10.96.0.20")
    new["spec"]["clusterIPs"] = []
    assert "spec.clusterIPs[0]: Invalid value: []: primary clusterIP can not be unset" in _update(new, old)
    # to ExternalName: allowed to drop IPs
    new = svc(type="ExternalName", externalName="db.example.com", selector=None, ports=[])
    assert _update(new, old) == []
    # a merge patch that only flips the type to ExternalName: the old IPs are dropped for the user
    new = copy.deepcopy(old)
    new["spec"].update(type="ExternalName", externalName="db.example.com", ipFamilies=["IPv4"])
    old["spec"]["ipFamilies"] = ["IPv4"]
    service_prepare_for_update(new, old)
    assert "clusterIP" not in new["spec"] and "clusterIPs" not in new["spec"] and "ipFamilies" not in new["spec"]
    assert _update(new, old) == []
    # name immutable
    new = svc("other", clusterIP="10.96.0.20")
    assert _update(new, old) == ['metadata.name: Invalid value: "other": field is immutable']


def test_service_prepare_for_update_node_ports() -> None:
    old = svc(type="NodePort", clusterIP="10.96.0.20", ports=[{"port": 80, "nodePort": 30080}])
    new = upd(type="NodePort", ports=[{"port": 80}])
    service_prepare_for_update(new, old)
    assert new["spec"]["ports"][0]["nodePort"] == 30080
    assert _update(new, old) == []
    # NodePort -> ClusterIP by patching only the type: nodePorts and externalTrafficPolicy go away
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    service_prepare_for_update(new, old)
    assert new["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert "externalTrafficPolicy" not in new["spec"]
    assert _update(new, old) == []
    # ... but an explicitly changed nodePort is kept and refused
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    new["spec"]["ports"][0]["nodePort"] = 30081
    service_prepare_for_update(new, old)
    assert _update(new, old) == ["spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"]


def test_deployment_selector_immutable() -> None:
    old = deploy()
    new = deploy(selector={"matchLabels": {"app": "web", "v": "2"}}, labels={"app": "web", "v": "2"})
    assert _update(new, old) == [
        'spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{"app":"web", "v":"2"}, '
        "MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]


def test_pod_update_rules() -> None:
    old = pod()
    new = copy.deepcopy(old)
    new["spec"]["containers"][0]["image"] = "nginx:2"
    new["spec"]["activeDeadlineSeconds"] = 30
    assert _update(new, old) == []
    new["spec"]["containers"][0]["ports"] = [{"containerPort": 80, "protocol": "TCP"}]
    errs = _update(new, old)
    assert errs == ["spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
                    "additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set "
                    "to 1 if it was previously negative)"]
    bound = copy.deepcopy(old)
    bound["spec"]["nodeName"] = "node-1"
    assert _update(bound, old) == []


def test_statefulset_update_forbidden() -> None:
    def sts(**spec: Any) -> dict[str, Any]:
        s = {"serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
             "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}
        s.update(spec)
        o = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": "d"}, "spec": s}
        apply_defaults("apps/v1", "StatefulSet", o)
        return o
    assert _full(sts()) == []
    assert _update(sts(replicas=3), sts()) == []
    assert _update(sts(serviceName="other"), sts()) == [
        "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', "
        "'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' "
        "are forbidden"]


def test_endpointslice_update_and_loopback() -> None:
    old = slice_()
    assert _update(slice_(addressType="IPv6", endpoints=[{"addresses": ["fd00::1"]}]), old) == [
        'addressType: Invalid value: "IPv6": field is immutable']
    lo = slice_(endpoints=[{"addresses": ["127.64.0.5"]}])
    info = by_kind("discovery.k8s.io/v1", "EndpointSlice")
    assert info is not None
    assert validate_create(info, lo) == []
    assert [e.full() for e in validate_create(info, lo, allow_loopback_endpoints=False)] == [
        'endpoints[0].addresses[0]: Invalid value: "127.64.0.5": may not be in the loopback range '
        "(127.0.0.0/8, ::1/128)"]


def test_endpoints() -> None:
    ep = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "d"},
          "subsets": [{"addresses": [{"ip": "10.244.0.5"}, {"ip": "nope"}],
                       "ports": [{"port": 80, "protocol": "TCP"}, {"port": 81, "protocol": "TCP"}]},
                      {"ports": [{"port": 80, "protocol": "TCP"}]}]}
    assert _full(ep) == [
        'subsets[0].addresses[1].ip: Invalid value: "nope": must be a valid IP address, '
        "(e.g. 10.9.8.7 or 2001:db8::ffff)",
        "subsets[0].ports[0].name: Required value",
        "subsets[0].ports[1].name: Required value",
        "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`",
    ]


def test_ingress() -> None:
    ing = {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i", "namespace": "d"},
           "spec": {"rules": [{"host": "*.example.com", "http": {"paths": [
               {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
               {"path": "/x", "backend": {"service": {"name": "web", "port": {"name": "http"}}}},
               {"path": "rel", "pathType": "Exact", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
           ]}}]}}
    assert _full(ing) == [
        "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified",
        'spec.rules[0].http.paths[2].path: Invalid value: "rel": must be an absolute path',
    ]


def test_secret_type_immutable_and_tls() -> None:
    s = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"},
         "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}
    assert _full(s) == ["data[tls.key]: Required value"]
    old = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "d"}, "type": "Opaque"}
    new = {**old, "type": "other"}
    assert _update(new, old) == ['type: Invalid value: "other": field is immutable']


def test_validity_memo_never_hides_errors() -> None:
    from servicenet.api import validation

    for _ in range(2):  # the second round is answered from the memo of valid strings
        assert validation.is_qualified_name("app.kubernetes.io/name") == []
        assert validation.is_valid_label_value("web") == []
        assert validation.is_dns1123_subdomain("web-1") == []
    bad = validation.is_qualified_name("-bad")
    assert bad and bad == validation.is_qualified_name("-bad")
    assert validation.is_dns1123_label("Web") != []
    assert validation.is_dns1123_label("Web") != []
    # results handed out are fresh lists: mutating one does not poison later answers
    validation.is_valid_label_value("ok").append("junk")
    assert validation.is_valid_label_value("ok") == []
