"""The protobuf codec: JSON → protobuf → JSON is identical for every served kind, the envelope and
watch framing are upstream's, and no byte string makes the decoder do anything but answer or refuse."""

from __future__ import annotations

import base64
import datetime as dt
import struct
from typing import Any

import orjson
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicenet.api import defaults, resources
from servicenet.api.pb import convert, types, wire

SERVED = [r for r in resources.all_resources()]

# every test here runs against the pure-Python fast paths and the C ones (tests/api/conftest.py)
pytestmark = pytest.mark.usefixtures("pb_codec")


def test_every_served_kind_and_its_list_has_a_message() -> None:
    for r in SERVED:
        assert types.message_for(r.api_version, r.kind), r.kind
        if "list" in r.verbs:  # create-only kinds (reviews, TokenRequest) have no list type
            assert types.message_for(r.api_version, r.list_kind or r.kind + "List"), r.kind
    assert types.message_for("v1", "Status") == "k8s.io.apimachinery.pkg.apis.meta.v1.Status"
    assert types.message_for("v1", "NoSuchKind") is None


def test_kinds_of_groups_not_served_yet_are_found_from_the_descriptors() -> None:
    # kinds other work adds later need no table entry: the package of their group-version has them
    for av, kind in [("v1", "ReplicationController"), ("apps/v1", "DaemonSet"), ("batch/v1", "Job"),
                     ("batch/v1", "CronJob"), ("v1", "ServiceAccount"), ("rbac.authorization.k8s.io/v1", "Role"),
                     ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ("coordination.k8s.io/v1", "Lease"),
                     ("authentication.k8s.io/v1", "TokenRequest"), ("networking.k8s.io/v1", "IngressClass"),
                     ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
                     ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy")]:
        name = types.message_for(av, kind)
        assert name is not None and name.endswith("." + kind), (av, kind)


# -- the envelope, as kubectl sends it ---------------------------------------------------------------

# `kubectl create configmap cm1 --from-literal=a=b` (kubectl v1.32.4), as captured on the wire
KUBECTL_CONFIGMAP = (b'k8s\x00\n\x0f\n\x02v1\x12\tConfigMap\x12\x1d\n\x13\n\x03cm1\x12\x00\x1a\x00"\x00*\x002\x00'
                     b'8\x00B\x00\x12\x06\n\x01a\x12\x01b\x1a\x00"\x00')


def test_decode_kubectl_configmap() -> None:
    d = wire.decode(KUBECTL_CONFIGMAP)
    # empty strings Go wrote for omitempty fields, the zero creationTimestamp: all left out, as in JSON
    assert d.obj == {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}, "data": {"a": "b"}}
    assert d.unknown == []


def test_encode_writes_upstreams_envelope() -> None:
    body = wire.encode({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}})
    assert body.startswith(b"k8s\x00\x0a\x0d\x0a\x02v1\x12\x07Service\x12")
    assert body.endswith(b'\x1a\x00"\x00')  # contentEncoding and contentType written empty, as Go does
    av, kind, raw = wire.split_envelope(body)
    assert (av, kind, raw) == ("v1", "Service", b"\x0a\x05\x0a\x03web")


def test_watch_frame_is_length_prefixed_watch_event() -> None:
    obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "resourceVersion": "7"}}
    frame = wire.watch_frame("ADDED", wire.encode(obj))
    (n,) = struct.unpack(">I", frame[:4])
    assert n == len(frame) - 4
    ev = types.message_class(types.WATCH_EVENT).FromString(frame[4:])
    assert ev.type == "ADDED" and ev.object.raw.startswith(wire.MAGIC)
    events, rest = wire.read_watch_frames(frame + frame[:3])
    assert events == [("ADDED", obj)] and rest == frame[:3]


def test_special_json_shapes() -> None:
    cls = types.message_class("k8s.io.api.core.v1.Secret")
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "s", "creationTimestamp": "2024-01-02T03:04:05Z",
        "managedFields": [{"manager": "m", "operation": "Update", "apiVersion": "v1",
                           "time": "2024-01-02T03:04:05Z", "fieldsType": "FieldsV1",
                           "fieldsV1": {"f:data": {".": {}, "f:k": {}}}}]},
           "data": {"k": base64.b64encode(b"\x00\xffbinary").decode()}, "type": "Opaque"}
    msg = convert.from_json(obj, cls())
    assert msg.data["k"] == b"\x00\xffbinary"
    assert msg.metadata.creationTimestamp.seconds == 1704164645
    assert orjson.loads(msg.metadata.managedFields[0].fieldsV1.Raw) == {"f:data": {".": {}, "f:k": {}}}
    assert {"apiVersion": "v1", "kind": "Secret", **convert.to_json(msg)} == obj

    svc_port = types.message_class("k8s.io.api.core.v1.ServicePort")
    for tp in (8080, "http"):
        m = convert.from_json({"port": 80, "targetPort": tp}, svc_port())
        assert convert.to_json(m) == {"port": 80, "targetPort": tp}
    # a non-omitempty zero stays (ServicePort.port), an omitempty zero goes (ServicePort.name)
    m = svc_port(port=0, name="", protocol="")
    assert convert.to_json(m) == {"port": 0}
    lease = types.message_class("k8s.io.api.coordination.v1.LeaseSpec")
    m = convert.from_json({"renewTime": "2024-01-02T03:04:05.123456Z", "leaseDurationSeconds": 15}, lease())
    assert convert.to_json(m) == {"renewTime": "2024-01-02T03:04:05.123456Z", "leaseDurationSeconds": 15}
    res = types.message_class("k8s.io.api.core.v1.ResourceRequirements")
    m = convert.from_json({"limits": {"cpu": "100m", "memory": "1Gi"}}, res())
    assert convert.to_json(m) == {"limits": {"cpu": "100m", "memory": "1Gi"}}


def test_inline_structs_are_flat_in_json() -> None:
    vol = {"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}}
    probe = {"httpGet": {"path": "/", "port": 80, "scheme": "HTTP"}, "periodSeconds": 10}
    m = convert.from_json(vol, types.message_class("k8s.io.api.core.v1.Volume")())
    assert m.volumeSource.configMap.localObjectReference.name == "c"
    assert convert.to_json(m) == vol
    m = convert.from_json(probe, types.message_class("k8s.io.api.core.v1.Probe")())
    assert m.handler.httpGet.path == "/" and convert.to_json(m) == probe


def test_durations_are_go_strings() -> None:
    for ns, text in [(0, "0s"), (10**9, "1s"), (90 * 10**9, "1m30s"), (3600 * 10**9, "1h0m0s"),
                     (1500 * 10**6, "1.5s"), (2 * 10**6, "2ms"), (1500, "1.5µs")]:
        assert convert.format_duration(ns) == text
        assert convert.parse_duration(text) == ns


# -- realistic objects of every served kind ----------------------------------------------------------

def _realistic() -> list[dict[str, Any]]:
    meta = {"name": "web", "namespace": "default", "uid": "5d3c1a52-4b7e-4c1e-9a64-4f0c8a3f3c11",
            "resourceVersion": "42", "generation": 3, "creationTimestamp": "2024-05-06T07:08:09Z",
            "labels": {"app": "web"}, "annotations": {"a": "b"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                                 "uid": "8e2f", "controller": True, "blockOwnerDeletion": True}],
            "finalizers": ["example.com/f"],
            "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "v1",
                               "time": "2024-05-06T07:08:09Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}]}
    pod_spec = {"containers": [{"name": "c", "image": "nginx:1.25", "args": ["-g", "daemon off;"],
                                "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                                "env": [{"name": "A", "value": "1"},
                                        {"name": "B", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                                                 "fieldPath": "status.podIP"}}}],
                                "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                                "readinessProbe": {"httpGet": {"path": "/", "port": "http", "scheme": "HTTP"},
                                                   "periodSeconds": 5, "timeoutSeconds": 1,
                                                   "successThreshold": 1, "failureThreshold": 3},
                                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}],
                                "terminationMessagePath": "/dev/termination-log",
                                "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
                "volumes": [{"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 420}}],
                "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                "securityContext": {}, "schedulerName": "default-scheduler", "nodeName": "node-1",
                "enableServiceLinks": True, "priority": 0,
                "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                                 "effect": "NoExecute", "tolerationSeconds": 300}]}
    template = {"metadata": {"labels": {"app": "web", "tier": "a"}}, "spec": pod_spec}
    sel = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In",
                                                                 "values": ["a", "b"]}]}
    objs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"},
         "binaryData": {"b": base64.b64encode(b"\x01\x02").decode()}, "immutable": False},
        {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "kubernetes.io/tls",
         "data": {"tls.crt": base64.b64encode(b"crt").decode(), "tls.key": base64.b64encode(b"key").decode()}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team", "labels": {
            "kubernetes.io/metadata.name": "team"}, "creationTimestamp": "2024-05-06T07:08:09Z"},
         "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec,
         "status": {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}],
                    "hostIP": "127.0.0.1", "startTime": "2024-05-06T07:08:10Z", "qosClass": "Burstable",
                    "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": None,
                                    "lastTransitionTime": "2024-05-06T07:08:11Z"}],
                    "containerStatuses": [{"name": "c", "ready": True, "restartCount": 0, "image": "nginx:1.25",
                                           "imageID": "", "started": True,
                                           "state": {"running": {"startedAt": "2024-05-06T07:08:10Z"}},
                                           "lastState": {}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta,
         "spec": {"type": "NodePort", "selector": {"app": "web"}, "clusterIP": "10.96.0.10",
                  "clusterIPs": ["10.96.0.10"], "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                  "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080},
                            {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP",
                             "nodePort": 30443}],
                  "sessionAffinity": "None", "externalTrafficPolicy": "Cluster", "internalTrafficPolicy": "Cluster"},
         "status": {"loadBalancer": {}}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
         "subsets": [{"addresses": [{"ip": "10.244.0.5", "targetRef": {"kind": "Pod", "name": "web-1",
                                                                        "namespace": "default"}}],
                      "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}]},
        {"apiVersion": "v1", "kind": "Event", "metadata": meta, "involvedObject": {"kind": "Pod", "name": "p"},
         "reason": "Started", "message": "ok", "type": "Normal", "count": 2,
         "firstTimestamp": "2024-05-06T07:08:09Z", "lastTimestamp": "2024-05-06T07:08:19Z",
         "eventTime": "2024-05-06T07:08:09.123456Z", "source": {"component": "kubelet"},
         "reportingComponent": "", "reportingInstance": ""},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
         "spec": {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"],
                  "taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]},
         "status": {"capacity": {"cpu": "2", "pods": "110"}, "allocatable": {"cpu": "2", "pods": "110"},
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                    "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                    "nodeInfo": {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "6",
                                 "osImage": "", "containerRuntimeVersion": "", "kubeletVersion": "v1.32",
                                 "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64"},
                    "conditions": [{"type": "Ready", "status": "True",
                                    "lastHeartbeatTime": "2024-05-06T07:08:09Z",
                                    "lastTransitionTime": "2024-05-06T07:08:09Z", "reason": "KubeletReady",
                                    "message": "ready"}]}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
         "spec": {"replicas": 3, "selector": sel, "template": template,
                  "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1}},
                  "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
         "status": {"observedGeneration": 3, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3,
                    "availableReplicas": 3, "conditions": [{"type": "Available", "status": "True",
                                                            "lastUpdateTime": "2024-05-06T07:08:09Z",
                                                            "lastTransitionTime": "2024-05-06T07:08:09Z",
                                                            "reason": "MinimumReplicasAvailable",
                                                            "message": "ok"}]}},
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": meta,
         "spec": {"replicas": 0, "selector": sel, "template": template},
         "status": {"replicas": 0, "observedGeneration": 1}},
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta,
         "spec": {"replicas": 2, "selector": sel, "template": template, "serviceName": "web",
                  "podManagementPolicy": "OrderedReady",
                  "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                  "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                      "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}],
                  "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"}},
         "status": {"replicas": 2, "availableReplicas": 2, "currentRevision": "web-1"}},
        {"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": meta,
         "data": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}, "revision": 2},
        {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
         "spec": {"holderIdentity": "node-1", "leaseDurationSeconds": 40, "leaseTransitions": 3,
                  "acquireTime": "2024-05-01T10:00:00.123456Z", "renewTime": "2024-05-01T10:00:10.654321Z"}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": meta, "addressType": "IPv4",
         "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": True, "serving": True,
                                                                    "terminating": False},
                        "nodeName": "node-1", "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default",
                                                            "uid": "u"}}],
         "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}]},
        {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta,
         "spec": {"ingressClassName": "nginx", "tls": [{"hosts": ["foo.com"], "secretName": "tls"}],
                  "rules": [{"host": "foo.com", "http": {"paths": [{"path": "/bar", "pathType": "Prefix",
                                                                    "backend": {"service": {
                                                                        "name": "svc1",
                                                                        "port": {"number": 8080}}}}]}}]},
         "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "nginx"},
         "spec": {"controller": "k8s.io/ingress-nginx", "parameters": {
             "apiGroup": "k8s.example.com", "kind": "IngressParameters", "name": "p", "scope": "Cluster"}}},
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview", "metadata": {},
         "status": {"userInfo": {"username": "jane", "uid": "u1", "groups": ["system:authenticated"],
                                 "extra": {"scopes": ["a", "b"]}}}},
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {},
         "spec": {"token": "abc", "audiences": ["https://kubernetes.default.svc"]},
         "status": {"authenticated": True, "user": {"username": "system:serviceaccount:default:web",
                                                     "groups": ["system:serviceaccounts"]},
                    "audiences": ["https://kubernetes.default.svc"]}},
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {},
         "spec": {"user": "jane", "groups": ["dev"], "resourceAttributes": {
             "namespace": "default", "verb": "get", "resource": "pods", "name": "web-0"}},
         "status": {"allowed": True, "reason": "RBAC: allowed by RoleBinding"}},
        {"apiVersion": "authorization.k8s.io/v1", "kind": "LocalSubjectAccessReview",
         "metadata": {"namespace": "default"},
         "spec": {"user": "jane", "nonResourceAttributes": {"path": "/healthz", "verb": "get"}},
         "status": {"allowed": False, "denied": True}},
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "metadata": {},
         "spec": {"resourceAttributes": {"verb": "list", "group": "discovery.k8s.io",
                                         "resource": "endpointslices"}},
         "status": {"allowed": True}},
        {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview", "metadata": {},
         "spec": {"namespace": "default"},
         "status": {"resourceRules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}],
                    "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}],
                    "incomplete": False}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "agg"},
         "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "resourceNames": ["a"]},
                   {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": [{"verbs": ["get", "list", "watch"], "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "web"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "b"},
         "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"},
                      {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "dev"}],
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"}},
        {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
         "metadata": {"name": "crontabs.stable.example.com"},
         "spec": {"group": "stable.example.com", "scope": "Namespaced",
                  "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "listKind": "CronTabList",
                            "shortNames": ["ct"], "categories": ["all"]},
                  "conversion": {"strategy": "None"},
                  "versions": [{"name": "v1", "served": True, "storage": True,
                                "additionalPrinterColumns": [{"name": "Spec", "type": "string",
                                                              "jsonPath": ".spec.cronSpec", "priority": 1}],
                                "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                                         "statusReplicasPath": ".status.replicas"}},
                                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                                    "type": "object", "default": {"replicas": 1},
                                    "x-kubernetes-validations": [{"rule": "self.replicas >= 0",
                                                                  "message": "m", "reason": "FieldValueForbidden"}],
                                    "properties": {
                                        "cronSpec": {"type": "string", "pattern": "^x$", "maxLength": 20},
                                        "replicas": {"type": "integer", "format": "int32", "minimum": 0},
                                        "port": {"x-kubernetes-int-or-string": True,
                                                 "anyOf": [{"type": "integer"}, {"type": "string"}]},
                                        "mode": {"type": "string", "enum": ["A", "B"]},
                                        "labels": {"type": "object", "additionalProperties": {"type": "string"},
                                                   "x-kubernetes-map-type": "atomic"},
                                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                                  "x-kubernetes-list-map-keys": ["name"],
                                                  "items": {"type": "object", "required": ["name"],
                                                            "properties": {"name": {"type": "string"}}}}}}}}}}]},
         "status": {"acceptedNames": {"plural": "crontabs", "kind": "CronTab"}, "storedVersions": ["v1"],
                    "conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                                    "message": "the initial names have been accepted",
                                    "lastTransitionTime": "2026-01-02T03:04:05Z"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": "p"},
         "spec": {"failurePolicy": "Fail", "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
                  "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                          "operations": ["CREATE", "UPDATE"],
                                                          "resources": ["deployments"]}]},
                  "variables": [{"name": "max", "expression": "int(params.data.max)"}],
                  "validations": [{"expression": "object.spec.replicas <= variables.max", "reason": "Forbidden",
                                   "messageExpression": "'too many'"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": "b"},
         "spec": {"policyName": "p", "validationActions": ["Deny"],
                  "paramRef": {"name": "limits", "namespace": "default", "parameterNotFoundAction": "Deny"}}},
        {"apiVersion": "v1", "kind": "ReplicationController", "metadata": meta,
         "spec": {"replicas": 2, "selector": {"app": "web"}, "template": template},
         "status": {"replicas": 2, "fullyLabeledReplicas": 2, "readyReplicas": 1, "availableReplicas": 1,
                    "observedGeneration": 3}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta, "secrets": [{"name": "tok"}],
         "imagePullSecrets": [{"name": "reg"}], "automountServiceAccountToken": False},
        {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
         "spec": {"selector": sel, "template": template,
                  "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%",
                                                                                "maxSurge": 0}}},
         "status": {"currentNumberScheduled": 2, "numberMisscheduled": 0, "desiredNumberScheduled": 2,
                    "numberReady": 2, "observedGeneration": 3, "updatedNumberScheduled": 2, "numberAvailable": 2}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
         "spec": {"completions": 3, "parallelism": 2, "backoffLimit": 4, "ttlSecondsAfterFinished": 100,
                  "activeDeadlineSeconds": 600, "selector": sel,
                  "template": {**template, "spec": {**pod_spec, "restartPolicy": "Never"}}},
         "status": {"startTime": "2024-05-06T07:08:09Z", "completionTime": "2024-05-06T07:09:09Z",
                    "succeeded": 3, "ready": 0, "terminating": 0, "uncountedTerminatedPods": {},
                    "conditions": [{"type": "Complete", "status": "True", "lastProbeTime": "2024-05-06T07:09:09Z",
                                    "lastTransitionTime": "2024-05-06T07:09:09Z",
                                    "reason": "CompletionsReached", "message": "done"}]}},
        {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": meta,
         "spec": {"schedule": "*/5 * * * *", "timeZone": "Etc/UTC", "startingDeadlineSeconds": 30,
                  "jobTemplate": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"template": {**template, "spec": {**pod_spec,
                                                                             "restartPolicy": "OnFailure"}}}}},
         "status": {"active": [{"kind": "Job", "namespace": "default", "name": "web-1", "uid": "u",
                                "apiVersion": "batch/v1", "resourceVersion": "7"}],
                    "lastScheduleTime": "2024-05-06T07:05:00Z", "lastSuccessfulTime": "2024-05-06T07:00:30Z"}},
    ]
    for o in objs:
        defaults.apply_defaults(o["apiVersion"], o["kind"], o)
    return objs


REALISTIC = _realistic()


def test_realistic_objects_cover_every_served_kind() -> None:
    assert {(o["apiVersion"], o["kind"]) for o in REALISTIC} >= {(r.api_version, r.kind) for r in SERVED}


@pytest.mark.parametrize("obj", REALISTIC, ids=[o["kind"] for o in REALISTIC])
def test_round_trip_realistic(obj: dict[str, Any]) -> None:
    body = wire.encode(obj)
    decoded = wire.decode(body)
    assert decoded.unknown == []
    assert decoded.obj == obj
    assert orjson.dumps(decoded.obj, option=orjson.OPT_SORT_KEYS) == orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def test_lists_round_trip_without_per_item_type_meta() -> None:
    pods = [o for o in REALISTIC if o["kind"] == "Pod"]
    lst = {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9", "continue": "abc",
                                                               "remainingItemCount": 5}, "items": pods}
    back = wire.decode(wire.encode(lst)).obj
    assert back["metadata"] == lst["metadata"]
    assert back["items"] == [{k: v for k, v in p.items() if k not in ("apiVersion", "kind")} for p in pods]


# -- generated objects: every field of every served kind ---------------------------------------------

_SCALARS = {
    FieldDescriptor.TYPE_STRING: st.text(max_size=8),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_DOUBLE: st.floats(allow_nan=False, allow_infinity=False, width=64),
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode()),
}
_TIMES = st.integers(1, 4_000_000_000).map(
    lambda s: dt.datetime.fromtimestamp(s, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
_MICRO = st.tuples(st.integers(1, 4_000_000_000), st.integers(0, 999_999)).map(
    lambda t: dt.datetime.fromtimestamp(t[0], dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{t[1]:06d}Z")
_JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5),
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                                   max_size=3), max_leaves=6)
_SPECIAL = {
    convert.TIME: _TIMES, convert.MICRO_TIME: _MICRO,
    convert.QUANTITY: st.sampled_from(["1", "100m", "1Gi", "0.5", "2k"]),
    convert.INT_OR_STRING: st.integers(0, 65535) | st.sampled_from(["http", "25%"]),
    convert.RAW_EXTENSION: st.dictionaries(st.text(max_size=4), _JSONISH, min_size=1, max_size=3),
    convert.FIELDS_V1: st.dictionaries(st.text(max_size=4), _JSONISH, min_size=1, max_size=3),
    convert.DURATION: st.integers(1, 10**15).map(convert.format_duration),
}


def _obj_strategy(desc: Descriptor, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    """Canonical JSON for ``desc``: what Go would write for some value of the type."""
    parts: dict[str, st.SearchStrategy[Any]] = {}
    inlines: list[st.SearchStrategy[dict[str, Any]]] = []
    for fd in desc.fields:
        go = types.go_field(desc.full_name, fd)
        value = _field_strategy(desc, fd, depth)
        if value is None:
            continue
        if go.inline:
            inlines.append(value)
        else:
            parts[go.json] = value
    base = st.fixed_dictionaries({}, optional=parts)
    for inl in inlines:
        base = st.tuples(base, inl).map(lambda t: {**t[1], **t[0]})
    return base


def _element(fd: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        name = fd.message_type.full_name
        if name in _SPECIAL:
            return _SPECIAL[name]
        if name in types.wrappers():
            return st.lists(st.text(max_size=5), max_size=3)
        if name.startswith("k8s.io.apiextensions") or depth <= 0:
            return st.just({}) if depth <= 0 else None
        return st.deferred(lambda: _obj_strategy(fd.message_type, depth - 1))
    return _SCALARS.get(fd.type)


def _field_strategy(desc: Descriptor, fd: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
    go = types.go_field(desc.full_name, fd)
    if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
        v = _element(fd.message_type.fields_by_name["value"], depth)
        return None if v is None else st.dictionaries(st.text(max_size=5), v, min_size=1, max_size=2)
    e = _element(fd, depth)
    if e is None:
        return None
    if fd.is_repeated:
        return st.lists(e, min_size=1, max_size=2)
    if fd.type != FieldDescriptor.TYPE_MESSAGE and go.omitempty and not go.pointer:
        return e.filter(bool)  # Go leaves a zero out of the JSON
    if go.omitzero:
        return e.filter(lambda v: v not in ({}, None))
    return e


@pytest.mark.parametrize("kind", SERVED, ids=[r.kind for r in SERVED])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_generated_objects_round_trip(kind: resources.ResourceInfo, data: st.DataObject) -> None:
    name = types.message_for(kind.api_version, kind.kind)
    assert name is not None
    obj = data.draw(_obj_strategy(types.descriptor(name), depth=4))
    full = {"apiVersion": kind.api_version, "kind": kind.kind, **obj}
    assert wire.decode(wire.encode(full)).obj == full


# -- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("body,fragment", [
    (b"", "does not appear to be a protobuf"),
    (b'{"kind": "ConfigMap"}', "does not appear to be a protobuf"),
    (KUBECTL_CONFIGMAP[:-9], "could not be decoded"),
    (KUBECTL_CONFIGMAP[:20], "envelope"),
    (b"k8s\x00\xff\xff\xff", "envelope"),
    (wire.envelope("v1", "Frobnicator", b""), 'no kind "Frobnicator" is registered for version "v1"'),
    (wire.envelope("v1", "", b""), "Kind"),
])
def test_bad_bodies_are_refused_with_a_reason(body: bytes, fragment: str) -> None:
    with pytest.raises(wire.ProtobufError) as exc:
        wire.decode(body)
    assert fragment in exc.value.message and exc.value.code == 400


def test_oversized_body_is_413() -> None:
    with pytest.raises(wire.ProtobufError) as exc:
        wire.decode(wire.MAGIC + b"\x00" * wire.MAX_BODY)
    assert exc.value.code == 413


def test_unknown_fields_are_found_with_their_path() -> None:
    cm = types.message_class("k8s.io.api.core.v1.ConfigMap")(data={"a": "b"})
    cm.metadata.name = "x"
    raw = cm.SerializeToString() + b"\xa0\x06\x05"  # field 100, varint 5
    dep = types.message_class("k8s.io.api.apps.v1.Deployment")()
    dep.spec.template.spec.hostname = "h"
    dep_raw = dep.SerializeToString()
    # splice an unknown field 999 into spec.template.spec (PodSpec): rebuild it by hand
    pod_spec = dep.spec.template.spec.SerializeToString() + b"\xb8\x3e\x01"
    tmpl = b"\x12" + bytes([len(pod_spec)]) + pod_spec
    spec = b"\x1a" + bytes([len(tmpl)]) + tmpl
    dep_raw = b"\x12" + bytes([len(spec)]) + spec
    d = wire.decode(wire.envelope("v1", "ConfigMap", raw))
    assert d.unknown == ["#100"] and d.obj["data"] == {"a": "b"}
    d = wire.decode(wire.envelope("apps/v1", "Deployment", dep_raw))
    assert d.unknown == ["spec.template.spec.#999"], d.unknown
    assert d.obj["spec"]["template"]["spec"] == {"hostname": "h"}


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bodies(body: bytes) -> None:
    for candidate in (body, wire.MAGIC + body):
        try:
            wire.decode(candidate)
        except wire.ProtobufError:
            pass


@settings(max_examples=400, deadline=None)
@given(obj=st.sampled_from(REALISTIC), cut=st.integers(0, 10_000), flips=st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4))
def test_fuzz_mutated_real_bodies(obj: dict[str, Any], cut: int, flips: list[tuple[int, int]]) -> None:
    body = bytearray(wire.encode(obj))
    for pos, val in flips:
        body[pos % len(body)] = val
    del body[max(4, cut % (len(body) + 1)):]
    try:
        d = wire.decode(bytes(body))
    except wire.ProtobufError:
        return
    assert isinstance(d.obj, dict)
    orjson.dumps(d.obj)  # whatever decodes is JSON-encodable


# -- the direct encoder agrees with the message-object reference ---------------------------------------

def _same_message(obj: dict[str, Any], name: str) -> None:
    from servicenet.api.pb.encode import encode_message

    cls = types.message_class(name)
    direct = cls.FromString(encode_message(obj, name))
    reference = convert.from_json(obj, cls())
    assert direct == reference


@pytest.mark.parametrize("obj", REALISTIC, ids=[o["kind"] for o in REALISTIC])
def test_direct_encoder_matches_reference_realistic(obj: dict[str, Any]) -> None:
    name = types.message_for(obj["apiVersion"], obj["kind"])
    assert name is not None
    _same_message(obj, name)


@pytest.mark.parametrize("kind", SERVED, ids=[r.kind for r in SERVED])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_direct_encoder_matches_reference_generated(kind: resources.ResourceInfo, data: st.DataObject) -> None:
    name = types.message_for(kind.api_version, kind.kind)
    assert name is not None
    _same_message(data.draw(_obj_strategy(types.descriptor(name), depth=4)), name)


def test_direct_encoder_nulls_and_nested_inline() -> None:
    _same_message({"metadata": {"name": "x", "creationTimestamp": None}, "spec": {"ephemeralContainers": [
        {"name": "dbg", "image": "busybox", "targetContainerName": "c",
         "readinessProbe": {"exec": {"command": ["true"]}}}],
        "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1Gi"}}]}}, "k8s.io.api.core.v1.Pod")


def test_invalid_utf8_in_a_string_field_decodes_to_text() -> None:
    # found by the fuzzer: a flipped byte inside metadata.uid leaked ``bytes`` into the object
    cm = types.message_class("k8s.io.api.core.v1.ConfigMap")()
    cm.metadata.name = "ok"
    raw = bytearray(cm.SerializeToString())
    raw[raw.index(b"ok")] = 0xFF
    d = wire.decode(wire.envelope("v1", "ConfigMap", bytes(raw)))
    assert d.obj["metadata"]["name"] == "\ufffdk"
    orjson.dumps(d.obj)


def test_invalid_utf8_map_key_beside_an_unknown_field_is_refused() -> None:
    # found by the server fuzz test: the unknown-field scan walked a map whose key was not UTF-8
    pod = types.message_class("k8s.io.api.core.v1.Pod")()
    pod.metadata.name = "ok"
    c = pod.spec.containers.add(name="c", image="i")
    c.resources.limits["qz"].string = "1"  # a map of messages (Quantity)
    raw = bytearray(pod.SerializeToString())
    raw[raw.index(b"qz")] = 0xCE
    raw += b"\xa0\x06\x05"  # unknown field 100
    with pytest.raises(wire.ProtobufError) as exc:
        wire.decode(wire.envelope("v1", "Pod", bytes(raw)))
    assert exc.value.code == 400
