"""Views parse once with upstream's defaults (table-driven, no I/O)."""

from __future__ import annotations

import pytest

from servicenet.api import wellknown as wk
from servicenet.api.selectors import equality_selector_matches, selector_matches
from servicenet.api.views import (
    EndpointSliceView,
    EndpointView,
    NodeView,
    PodView,
    ServiceView,
    service_cluster_ips,
)


@pytest.mark.parametrize("spec, want", [
    ({}, []),
    ({"clusterIP": "10.0.0.1"}, ["10.0.0.1"]),
    ({"clusterIP": "10.0.0.1", "clusterIPs": ["10.0.0.1", "fd00::1"]}, ["10.0.0.1", "fd00::1"]),
    ({"clusterIPs": [], "clusterIP": "None"}, ["None"]),
])
def test_cluster_ips_fallback(spec, want):
    assert service_cluster_ips(spec) == want
    assert list(ServiceView.parse({"metadata": {"name": "a"}, "spec": spec}).cluster_ips) == want


def test_service_defaults():
    v = ServiceView.parse({"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}],
                                                                  "sessionAffinity": "ClientIP"}})
    assert (v.namespace, v.type, v.headless, v.selector) == ("default", "ClusterIP", False, None)
    assert v.ports[0].protocol == "TCP" and v.ports[0].name == ""
    assert v.affinity_timeout == wk.DEFAULT_SESSION_AFFINITY_TIMEOUT
    assert ServiceView.parse({"spec": {"clusterIP": "None"}}).headless


@pytest.mark.parametrize("conditions, want", [
    ({}, (True, True, False)),                                   # unset means ready (and serving)
    ({"ready": False}, (False, False, False)),                   # serving defaults to ready
    ({"ready": False, "serving": True, "terminating": True}, (False, True, True)),
    ({"ready": None}, (True, True, False)),
])
def test_endpoint_conditions(conditions, want):
    e = EndpointView.parse({"addresses": ["10.0.0.1"], "conditions": conditions})
    assert (e.ready, e.serving, e.terminating) == want


def test_slice_view():
    s = EndpointSliceView.parse({
        "metadata": {"name": "web-x", "namespace": "a", "labels": {wk.SERVICE_NAME_LABEL: "web"},
                     "annotations": {wk.TRIGGER_TIME_ANNOTATION: "t"}},
        "ports": [{"port": 80}, {"name": "x"}],
        "endpoints": [{"addresses": ["1.2.3.4"], "targetRef": {"name": "p"}},
                      {"addresses": ["1.2.3.5"], "targetRef": {"kind": "Node", "name": "n"}}]})
    assert (s.service, s.address_type, s.trigger_time) == ("web", "", "t")
    assert [(p.name, p.protocol, p.port) for p in s.ports] == [("", "TCP", 80), ("x", "TCP", None)]
    assert [e.pod_name for e in s.endpoints] == ["p", None]
    assert EndpointSliceView.parse({"metadata": {"name": "x"}}).service == ""


@pytest.mark.parametrize("status, want", [
    ({}, ()),
    ({"podIP": "10.0.0.1"}, ("10.0.0.1",)),
    ({"podIP": "10.0.0.1", "podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}, ("10.0.0.1", "fd00::1")),
])
def test_pod_ips(status, want):
    assert PodView.parse({"metadata": {"name": "p"}, "status": status}).ips == want


def test_node_view():
    n = NodeView.parse({"metadata": {"name": "n1", "labels": {wk.ZONE_LABEL: "z"},
                                     "annotations": {wk.NETNS_ANNOTATION: "sn-x"}},
                        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                                   "conditions": [{"type": "Ready", "status": "True"}]}})
    assert (n.zone, n.netns, n.ready, n.addresses_of()) == ("z", "sn-x", True, ("10.0.0.1",))


@pytest.mark.parametrize("sel, labels, want", [
    (None, {"a": "1"}, False),                                      # nil selector: nothing
    ({}, {"a": "1"}, True),                                         # empty selector: everything
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
])
def test_selector_matches(sel, labels, want):
    assert selector_matches(sel, labels) is want


@pytest.mark.parametrize("sel, labels, want", [
    (None, {"a": "1"}, False), ({}, {"a": "1"}, False),
    ({"a": "1"}, {"a": "1", "b": "2"}, True), ({"a": "1", "b": "3"}, {"a": "1", "b": "2"}, False),
])
def test_equality_selector(sel, labels, want):
    assert equality_selector_matches(sel, labels) is want


def test_address_plan():
    assert wk.address_plan("netns").dns_ip == "10.96.0.10"
    assert wk.address_plan("loopback").dns_ip == "127.96.0.10"
    with pytest.raises(KeyError, match="network mode"):
        wk.address_plan("nope")
