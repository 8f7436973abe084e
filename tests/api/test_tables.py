from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from servicenet.api.errors import ApiStatusError
from servicenet.api.tables import column_definitions, to_table
from servicenet.api.timefmt import (
    format_rfc3339,
    human_duration,
    parse_rfc3339,
    short_human_duration,
    translate_timestamp_since,
)

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def ago(**kw: float) -> str:
    return format_rfc3339(NOW - timedelta(**kw))


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        (timedelta(seconds=-3), "<invalid>"),
        (timedelta(seconds=-2), "<invalid>"),
        (timedelta(seconds=-1), "0s"),
        (timedelta(milliseconds=-1500), "0s"),
        (timedelta(0), "0s"),
        (timedelta(seconds=1), "1s"),
        (timedelta(seconds=70), "70s"),
        (timedelta(seconds=119), "119s"),
        (timedelta(minutes=2), "2m"),
        (timedelta(minutes=2, seconds=30), "2m30s"),
        (timedelta(minutes=9, seconds=59), "9m59s"),
        (timedelta(minutes=10), "10m"),
        (timedelta(minutes=10, seconds=59), "10m"),
        (timedelta(hours=2, minutes=59), "179m"),
        (timedelta(hours=3), "3h"),
        (timedelta(hours=3, minutes=1), "3h1m"),
        (timedelta(hours=7, minutes=59), "7h59m"),
        (timedelta(hours=8), "8h"),
        (timedelta(hours=47, minutes=59), "47h"),
        (timedelta(hours=48), "2d"),
        (timedelta(hours=49), "2d1h"),
        (timedelta(days=7, hours=23), "7d23h"),
        (timedelta(days=8), "8d"),
        (timedelta(days=729), "729d"),
        (timedelta(days=730), "2y"),
        (timedelta(days=731), "2y1d"),
        (timedelta(days=365 * 8 - 1), "7y364d"),
        (timedelta(days=365 * 8), "8y"),
        (timedelta(days=365 * 100), "100y"),
    ],
)
def test_human_duration(d: timedelta, expected: str) -> None:
    assert human_duration(d) == expected


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        (timedelta(seconds=-2), "<invalid>"),
        (timedelta(seconds=-1), "0s"),
        (timedelta(seconds=59), "59s"),
        (timedelta(seconds=60), "1m"),
        (timedelta(minutes=59, seconds=59), "59m"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=23), "23h"),
        (timedelta(hours=24), "1d"),
        (timedelta(days=364), "364d"),
        (timedelta(days=365), "1y"),
    ],
)
def test_short_human_duration(d: timedelta, expected: str) -> None:
    assert short_human_duration(d) == expected


def test_timestamps() -> None:
    assert parse_rfc3339("2025-01-01T11:59:00Z") == datetime(2025, 1, 1, 11, 59, tzinfo=UTC)
    assert parse_rfc3339("2025-01-01T11:59:00.123456789Z") == datetime(2025, 1, 1, 11, 59, 0, 123456, tzinfo=UTC)
    assert parse_rfc3339("2025-01-01T12:59:00+01:00") == datetime(2025, 1, 1, 11, 59, tzinfo=UTC)
    assert parse_rfc3339("") is None
    assert parse_rfc3339("garbage") is None
    assert translate_timestamp_since(None, NOW) == "<unknown>"
    assert translate_timestamp_since("2025-01-01T11:55:00Z", NOW) == "5m"


def _cols(kind: str) -> list[tuple[str, str, str, int]]:
    return [(c["name"], c["type"], c["format"], c["priority"]) for c in column_definitions(kind)]


def test_column_sets_match_upstream() -> None:
    assert [c[0] for c in _cols("Service")] == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age",
                                               "Selector"]
    assert _cols("Service")[0] == ("Name", "string", "name", 0)
    assert _cols("Service")[-1] == ("Selector", "string", "", 1)
    assert [(c[0], c[3]) for c in _cols("Pod")] == [
        ("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0), ("IP", 1), ("Node", 1),
        ("Nominated Node", 1), ("Readiness Gates", 1)]
    assert [c[0] for c in _cols("EndpointSlice")] == ["Name", "AddressType", "Ports", "Endpoints", "Age"]
    assert [c[0] for c in _cols("Endpoints")] == ["Name", "Endpoints", "Age"]
    assert [(c[0], c[1]) for c in _cols("ReplicaSet")][:4] == [("Name", "string"), ("Desired", "integer"),
                                                              ("Current", "integer"), ("Ready", "integer")]
    assert [c[0] for c in _cols("Event")] == ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source",
                                             "Message", "First Seen", "Count", "Name"]
    assert _cols("Widget") == [("Name", "string", "name", 0), ("Created At", "date", "", 0)]


def svc(name: str = "web", **spec: object) -> dict:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "uid": "u-1", "resourceVersion": "10240",
                         "creationTimestamp": ago(minutes=5)},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.12.7", "clusterIPs": ["10.96.12.7"],
                     "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}], "selector": {"app": "web"},
                     **spec}}


def cells(kind: str, obj: dict) -> list:
    return to_table(kind, [obj], now=NOW)["rows"][0]["cells"]


def test_service_table_shape() -> None:
    s = svc()
    t = to_table("Service", [s], now=NOW, resource_version="10245")
    assert t["kind"] == "Table" and t["apiVersion"] == "meta.k8s.io/v1"
    assert t["metadata"] == {"resourceVersion": "10245"}
    assert t["rows"][0]["cells"] == ["web", "ClusterIP", "10.96.12.7", "<none>", "80/TCP", "5m", "app=web"]
    assert t["rows"][0]["object"] == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                      "metadata": s["metadata"]}
    assert "conditions" not in t["rows"][0]


def test_table_include_object_and_paging() -> None:
    s = svc()
    assert to_table("Service", [s], now=NOW, include_object="Object")["rows"][0]["object"] == s
    assert to_table("Service", [s], now=NOW, include_object="None")["rows"][0]["object"] is None
    t = to_table("Service", [], now=NOW, resource_version="7", continue_token="abc", remaining_item_count=3)
    assert t["rows"] == [] and t["metadata"] == {"resourceVersion": "7", "continue": "abc", "remainingItemCount": 3}
    beta = to_table("Service", [s], now=NOW, group_version="meta.k8s.io/v1beta1")
    assert beta["apiVersion"] == "meta.k8s.io/v1beta1"
    assert beta["rows"][0]["object"]["apiVersion"] == "meta.k8s.io/v1beta1"
    with pytest.raises(ApiStatusError):
        to_table("Service", [s], now=NOW, include_object="Bogus")


def test_watch_table_headers_only_first() -> None:
    first = to_table("Service", [svc()], now=NOW)
    later = to_table("Service", [svc()], now=NOW, no_headers=True)
    assert len(first["columnDefinitions"]) == 7
    assert later["columnDefinitions"] is None
    assert len(later["rows"]) == 1


@pytest.mark.parametrize(
    ("spec", "status", "external", "ports"),
    [
        ({}, {}, "<none>", "80/TCP"),
        ({"externalIPs": ["1.2.3.4", "5.6.7.8"]}, {}, "1.2.3.4,5.6.7.8", "80/TCP"),
        ({"type": "NodePort", "ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080},
                                        {"port": 53, "protocol": "UDP", "nodePort": 30053}]},
         {}, "<none>", "80:30080/TCP,53:30053/UDP"),
        ({"type": "LoadBalancer", "ports": [{"port": 443, "protocol": "TCP", "nodePort": 31000}]}, {},
         "<pending>", "443:31000/TCP"),
        ({"type": "LoadBalancer"}, {"loadBalancer": {"ingress": [{"ip": "10.255.255.2"}, {"hostname": "lb.example"},
                                                                 {"ip": "10.255.255.1"}]}},
         "10.255.255.1,10.255.255.2,lb.example", "80/TCP"),
        ({"type": "LoadBalancer", "externalIPs": ["9.9.9.9"]},
         {"loadBalancer": {"ingress": [{"ip": "10.255.255.1"}]}}, "10.255.255.1,9.9.9.9", "80/TCP"),
        ({"type": "ExternalName", "externalName": "db.example.com", "clusterIP": "", "clusterIPs": [],
          "ports": []}, {}, "db.example.com", "<none>"),
    ],
)
def test_service_external_ip_and_ports(spec: dict, status: dict, external: str, ports: str) -> None:
    s = svc(**spec)
    s["status"] = status
    c = cells("Service", s)
    assert (c[3], c[4]) == (external, ports)


def test_service_headless_and_no_selector() -> None:
    c = cells("Service", svc(clusterIP="None", clusterIPs=["None"], selector=None))
    assert c[2] == "None" and c[6] == "<none>"
    c = cells("Service", svc(clusterIPs=[], clusterIP=""))
    assert c[2] == "<none>"


def ep(subsets: list) -> dict:
    return {"metadata": {"name": "web", "creationTimestamp": ago(seconds=42)}, "subsets": subsets}


@pytest.mark.parametrize(
    ("subsets", "expected"),
    [
        ([], "<none>"),
        ([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}]}],
         "10.0.0.1:80,10.0.0.2:80"),
        ([{"addresses": [{"ip": f"10.0.0.{i}"} for i in range(1, 5)], "ports": [{"port": 80}]}],
         "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more..."),
        ([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}],
         "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more..."),
        ([{"addresses": [{"ip": "10.0.0.1"}]}], "10.0.0.1"),
        ([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}]}], "[fd00::1]:80"),
        ([{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}], ""),
    ],
)
def test_endpoints_cell(subsets: list, expected: str) -> None:
    assert cells("Endpoints", ep(subsets)) == ["web", expected, "42s"]


def test_endpointslice_cells() -> None:
    sl = {"metadata": {"name": "web-abcde", "creationTimestamp": ago(hours=2)}, "addressType": "IPv4",
          "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
          "endpoints": [{"addresses": ["10.244.1.5"]}, {"addresses": ["10.244.1.6"]}]}
    assert cells("EndpointSlice", sl) == ["web-abcde", "IPv4", "8080", "10.244.1.5,10.244.1.6", "120m"]
    empty = {"metadata": {"name": "web-x"}, "addressType": "IPv4", "ports": [], "endpoints": []}
    assert cells("EndpointSlice", empty) == ["web-x", "IPv4", "<unset>", "<unset>", "<unknown>"]
    many = {"metadata": {"name": "m"}, "addressType": "IPv6",
            "ports": [{"port": 1}, {"name": "named"}, {}, {"port": 4}],
            "endpoints": [{"addresses": [f"fd00::{i}"]} for i in range(1, 6)]}
    c = cells("EndpointSlice", many)
    assert c[2] == "1,named,* + 1 more..."
    assert c[3] == "fd00::1,fd00::2,fd00::3 + 2 more..."


def pod(**kw: object) -> dict:
    p = {"metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": ago(minutes=3)},
         "spec": {"containers": [{"name": "app", "image": "nginx"}], "nodeName": "node-a"},
         "status": {"phase": "Running", "podIP": "10.244.0.5",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"name": "app", "ready": True, "restartCount": 0,
                                           "state": {"running": {"startedAt": ago(minutes=3)}}}]}}
    for k, v in kw.items():
        p[k] = v
    return p


def test_pod_running() -> None:
    assert cells("Pod", pod()) == ["web-0", "1/1", "Running", "0", "3m", "10.244.0.5", "node-a", "<none>", "<none>"]


def test_pod_pending_unscheduled() -> None:
    p = pod(spec={"containers": [{"name": "a"}, {"name": "b"}]}, status={"phase": "Pending"})
    assert cells("Pod", p)[:4] == ["web-0", "0/2", "Pending", "0"]
    assert cells("Pod", p)[5:7] == ["<none>", "<none>"]


def test_pod_container_creating_and_crashloop_with_restart_age() -> None:
    p = pod()
    p["status"] = {"phase": "Pending", "containerStatuses": [
        {"name": "app", "ready": False, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]}
    assert cells("Pod", p)[1:4] == ["0/1", "ContainerCreating", "0"]
    p["status"] = {"phase": "Running", "containerStatuses": [
        {"name": "app", "ready": False, "restartCount": 5, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
         "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(minutes=5)}}}]}
    assert cells("Pod", p)[1:4] == ["0/1", "CrashLoopBackOff", "5 (5m ago)"]


def test_pod_completed_and_terminated_exit_codes() -> None:
    p = pod()
    p["status"] = {"phase": "Succeeded", "containerStatuses": [
        {"name": "app", "ready": False, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
    row = to_table("Pod", [p], now=NOW)["rows"][0]
    assert row["cells"][1:3] == ["0/1", "Completed"]
    assert row["conditions"] == [{"type": "Completed", "status": "True", "reason": "Succeeded",
                                  "message": "The pod has completed successfully."}]
    p["status"] = {"phase": "Failed", "containerStatuses": [
        {"name": "app", "state": {"terminated": {"exitCode": 137}}}]}
    assert cells("Pod", p)[2] == "ExitCode:137"
    p["status"]["containerStatuses"][0]["state"]["terminated"]["signal"] = 9
    assert cells("Pod", p)[2] == "Signal:9"


def test_pod_completed_but_one_container_running() -> None:
    p = pod(spec={"containers": [{"name": "a"}, {"name": "b"}]})
    p["status"] = {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": [
        {"name": "a", "ready": True, "state": {"running": {}}},
        {"name": "b", "ready": False, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}
    assert cells("Pod", p)[1:3] == ["1/2", "NotReady"]
    p["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    assert cells("Pod", p)[2] == "Running"


def test_pod_terminating_and_node_lost() -> None:
    p = pod()
    p["metadata"]["deletionTimestamp"] = ago(seconds=1)
    assert cells("Pod", p)[2] == "Terminating"
    p["status"]["reason"] = "NodeLost"
    assert cells("Pod", p)[2] == "Unknown"


def test_pod_init_containers() -> None:
    p = pod()
    p["spec"]["initContainers"] = [{"name": "i1"}, {"name": "i2"}]
    p["status"] = {"phase": "Pending", "initContainerStatuses": [
        {"name": "i1", "state": {"terminated": {"exitCode": 0}}},
        {"name": "i2", "state": {"running": {}}}], "containerStatuses": [
        {"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}]}
    assert cells("Pod", p)[1:3] == ["0/1", "Init:1/2"]
    p["status"]["initContainerStatuses"][1] = {"name": "i2", "restartCount": 2,
                                               "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
    assert cells("Pod", p)[1:4] == ["0/1", "Init:CrashLoopBackOff", "2"]
    p["status"]["initContainerStatuses"][1] = {"name": "i2", "state": {"terminated": {"exitCode": 3}}}
    assert cells("Pod", p)[2] == "Init:ExitCode:3"
    # sidecar (restartable init container) counts towards READY
    p["spec"]["initContainers"] = [{"name": "side", "restartPolicy": "Always"}]
    p["status"] = {"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}],
                   "initContainerStatuses": [{"name": "side", "started": True, "ready": True,
                                              "state": {"running": {}}}],
                   "containerStatuses": [{"name": "app", "ready": True, "state": {"running": {}}}]}
    assert cells("Pod", p)[1:3] == ["2/2", "Running"]


def test_pod_readiness_gates_and_scheduling_gated() -> None:
    p = pod()
    p["spec"]["readinessGates"] = [{"conditionType": "x/a"}, {"conditionType": "x/b"}]
    p["status"]["conditions"].append({"type": "x/a", "status": "True"})
    assert cells("Pod", p)[8] == "1/2"
    p["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                       "reason": "SchedulingGated"}]}
    assert cells("Pod", p)[2] == "SchedulingGated"


def test_pod_ip_from_pod_ips() -> None:
    p = pod()
    p["status"].pop("podIP")
    p["status"]["podIPs"] = [{"ip": "fd00::5"}]
    assert cells("Pod", p)[5] == "fd00::5"


def workload(kind: str, **status: int) -> dict:
    return {"kind": kind, "metadata": {"name": "web", "creationTimestamp": ago(days=3, hours=4)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.27"},
                                                          {"name": "side", "image": "envoy"}]}}},
            "status": status}


def test_workloads() -> None:
    assert cells("Deployment", workload("Deployment", readyReplicas=2, updatedReplicas=3, availableReplicas=2)) == [
        "web", "2/3", 3, 2, "3d4h", "app,side", "nginx:1.27,envoy", "app=web"]
    assert cells("ReplicaSet", workload("ReplicaSet", replicas=3, readyReplicas=1)) == [
        "web", 3, 3, 1, "3d4h", "app,side", "nginx:1.27,envoy", "app=web"]
    assert cells("StatefulSet", workload("StatefulSet")) == ["web", "0/3", "3d4h", "app,side", "nginx:1.27,envoy"]
    d = workload("Deployment")
    d["spec"]["selector"] = {"matchExpressions": [{"key": "a", "operator": "Bad"}]}
    assert cells("Deployment", d)[7] == "<invalid>"
    r = workload("ReplicaSet")
    r["spec"]["selector"] = {}
    assert cells("ReplicaSet", r)[7] == "<none>"


def test_namespace_node_configmap_secret() -> None:
    assert cells("Namespace", {"metadata": {"name": "default", "creationTimestamp": ago(days=40)},
                               "status": {"phase": "Active"}}) == ["default", "Active", "40d"]
    node = {"metadata": {"name": "n1", "creationTimestamp": ago(hours=1),
                         "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge",
                                    "node-role.kubernetes.io/": "x"}},
            "spec": {"unschedulable": True},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"},
                                      {"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "Hostname", "address": "n1"},
                                     {"type": "InternalIP", "address": "10.1.0.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.4", "osImage": "Debian"}}}
    assert cells("Node", node) == ["n1", "Ready,SchedulingDisabled", "control-plane,edge", "60m", "v1.32.4",
                                   "10.1.0.1", "<none>", "Debian", "<unknown>", "<unknown>"]
    assert cells("Node", {"metadata": {"name": "n2"}})[1:3] == ["Unknown", "<none>"]
    node["status"]["conditions"][1]["status"] = "Unknown"
    node["spec"] = {}
    assert cells("Node", node)[1] == "NotReady"
    assert cells("ConfigMap", {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}})[
        1] == 3
    assert cells("Secret", {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "eA=="}})[1:3] == ["Opaque", 1]


def test_event_cells() -> None:
    ev = {"metadata": {"name": "web.17", "creationTimestamp": ago(minutes=10)},
          "involvedObject": {"kind": "Service", "name": "web", "fieldPath": ""},
          "reason": "CreatedLoadBalancer", "message": "  done \n", "type": "Normal",
          "source": {"component": "service-controller", "host": "n1"},
          "firstTimestamp": ago(minutes=10), "lastTimestamp": ago(minutes=1), "count": 4}
    assert cells("Event", ev) == ["60s", "Normal", "CreatedLoadBalancer", "service/web", "",
                                  "service-controller, n1", "done", "10m", 4, "web.17"]
    ev2 = {"metadata": {"name": "x"}, "involvedObject": {"kind": "Node"}, "eventTime": "2025-01-01T11:59:29.999999Z",
           "reportingComponent": "kubelet", "type": "Warning", "reason": "R", "message": "m"}
    assert cells("Event", ev2) == ["30s", "Warning", "R", "node", "", "kubelet", "m", "30s", 1, "x"]  # 30.000001s
    ev2["series"] = {"count": 7, "lastObservedTime": "2025-01-01T11:59:55.000000Z"}
    assert cells("Event", ev2)[0] == "5s" and cells("Event", ev2)[8] == 7


def test_ingress_and_ingressclass() -> None:
    ing = {"metadata": {"name": "i", "creationTimestamp": ago(seconds=5)},
           "spec": {"ingressClassName": "nginx", "rules": [{"host": "a.example"}, {"host": "b.example"}, {},
                                                            {"host": "d.example"}, {"host": "e.example"}],
                    "tls": [{"hosts": ["a.example"]}]},
           "status": {"loadBalancer": {"ingress": [{"ip": "10.255.255.9"}]}}}
    assert cells("Ingress", ing) == ["i", "nginx", "a.example,b.example,d.example + 2 more...", "10.255.255.9",
                                     "80, 443", "5s"]
    assert cells("Ingress", {"metadata": {"name": "j"}, "spec": {}})[1:5] == ["<none>", "*", "", "80"]
    ic = {"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx",
                                                  "parameters": {"apiGroup": "k8s.example.com", "kind": "P",
                                                                 "name": "p1"}}}
    assert cells("IngressClass", ic)[:3] == ["nginx", "k8s.io/ingress-nginx", "P.k8s.example.com/p1"]
    assert cells("IngressClass", {"metadata": {"name": "x"}, "spec": {"controller": "c"}})[2] == "<none>"


def test_default_table() -> None:
    t = to_table("Lease", [{"metadata": {"name": "l", "creationTimestamp": "2024-05-06T07:08:09Z"}},
                           {"metadata": {"name": "m"}}], now=NOW)
    assert [r["cells"] for r in t["rows"]] == [["l", "2024-05-06T07:08:09Z"], ["m", "0001-01-01T00:00:00Z"]]
