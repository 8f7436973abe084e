"""Pure core: parsing, endpoint selection pipeline, change tracking, conntrack and balancer decisions."""

from __future__ import annotations

import random

import pytest

from servicenet.api import wellknown as wk
from servicenet.proxy.balancer import Balancer
from servicenet.proxy.conntrack import FlowFilter, stale_udp_flows
from servicenet.proxy.model import (
    Endpoint,
    ParseCache,
    ServicePortName,
    changed_services,
    compute,
    parse_service,
)

from . import helpers as h

P80 = [h.port(80, "p80")]
SPN = ServicePortName("ns1", "svc1", "p80", "TCP")


def _es(ips: list[str], **kw: object) -> dict:
    return h.eslice("ns1", "svc1", [h.endpoint(ip, **kw) for ip in ips], [{"name": "p80", "port": 80}])


def test_service_port_name_string() -> None:
    assert str(SPN) == "ns1/svc1:p80"
    assert str(ServicePortName("ns1", "svc1", "", "UDP")) == "ns1/svc1"


def test_headless_externalname_and_unlabelled_slices_are_ignored() -> None:
    headless = h.service("ns1", "hl", "None", P80)
    extname = {"metadata": {"namespace": "ns1", "name": "x"}, "spec": {"type": "ExternalName", "externalName": "a.b"}}
    st = compute([headless, extname, h.service("ns1", "svc1", "172.30.0.41", P80)],
                 [h.eslice("ns1", "svc1", [h.endpoint("10.0.0.1")], [{"name": "p80", "port": 80}], label=False)],
                 "node1")
    assert list(st.services) == [SPN]
    assert st.services[SPN].endpoints == ()


def test_endpoints_merge_across_slices_sorted_by_address_string() -> None:
    st = compute([h.service("ns1", "svc1", "172.30.0.41", P80)],
                 [_es(["10.0.0.2"]), {**_es(["10.0.0.10", "10.0.0.2"]), "metadata": {
                     "namespace": "ns1", "name": "b", "labels": {wk.SERVICE_NAME_LABEL: "svc1"}}}], "node1")
    assert [e.addr for e in st.services[SPN].cluster] == ["10.0.0.10:80", "10.0.0.2:80"]


def test_port_name_and_protocol_must_match() -> None:
    svc = h.service("ns1", "svc1", "172.30.0.41", [h.port(53, "dns", "UDP"), h.port(53, "dns-tcp", "TCP")])
    es = h.eslice("ns1", "svc1", [h.endpoint("10.0.0.1")],
                  [{"name": "dns", "port": 5353, "protocol": "UDP"}, {"name": "dns-tcp", "port": 5353, "protocol": "TCP"}])
    st = compute([svc], [es], "node1")
    udp = st.services[ServicePortName("ns1", "svc1", "dns", "UDP")]
    assert [e.addr for e in udp.cluster] == ["10.0.0.1:5353"]


def test_ready_then_serving_terminating_fallback() -> None:
    svc = h.service("ns1", "svc1", "172.30.0.41", P80)
    eps = [h.endpoint("10.0.0.1", ready=False, serving=True, terminating=True),
           h.endpoint("10.0.0.2", ready=True)]
    st = compute([svc], [h.eslice("ns1", "svc1", eps, [{"name": "p80", "port": 80}])], "node1")
    assert [e.ip for e in st.services[SPN].cluster] == ["10.0.0.2"]
    eps[1] = h.endpoint("10.0.0.2", ready=False, serving=False, terminating=True)
    st = compute([svc], [h.eslice("ns1", "svc1", eps, [{"name": "p80", "port": 80}])], "node1")
    assert [e.ip for e in st.services[SPN].cluster] == ["10.0.0.1"]


def test_local_policies() -> None:
    svc = h.service("ns1", "svc1", "172.30.0.41", [h.port(80, "p80", node_port=30080)], type_="NodePort",
                    etp="Local")
    eps = [h.endpoint("10.0.0.1", node="node1"), h.endpoint("10.0.0.2", node="node2")]
    st = compute([svc], [h.eslice("ns1", "svc1", eps, [{"name": "p80", "port": 80}])], "node1").services[SPN]
    assert [e.ip for e in st.cluster] == ["10.0.0.1", "10.0.0.2"]
    assert [e.ip for e in st.local] == ["10.0.0.1"] and st.external == st.local and st.internal == st.cluster
    itp = h.service("ns1", "svc1", "172.30.0.41", P80, itp="Local")
    st = compute([itp], [h.eslice("ns1", "svc1", eps, [{"name": "p80", "port": 80}])], "node2").services[SPN]
    assert st.cluster == () and [e.ip for e in st.local] == ["10.0.0.2"]
    assert st.has_any


def test_zone_hints() -> None:
    svc = h.service("ns1", "svc1", "172.30.0.41", P80)
    eps = [h.endpoint("10.0.0.1", zones=["a"]), h.endpoint("10.0.0.2", zones=["b"])]
    es = h.eslice("ns1", "svc1", eps, [{"name": "p80", "port": 80}])
    assert [e.ip for e in compute([svc], [es], "node1", zone="b").services[SPN].cluster] == ["10.0.0.2"]
    assert len(compute([svc], [es], "node1", zone="c").services[SPN].cluster) == 2
    eps[1] = h.endpoint("10.0.0.2")  # one endpoint without hints: hints ignored
    es = h.eslice("ns1", "svc1", eps, [{"name": "p80", "port": 80}])
    assert len(compute([svc], [es], "node1", zone="a").services[SPN].cluster) == 2


def test_parse_lb_and_affinity() -> None:
    svc = h.service("ns1", "svc1", "172.30.0.41", [h.port(80, "p80", node_port=30080)], type_="LoadBalancer",
                    lb_ips=["1.2.3.4"], etp="Local", hcnp=31000, affinity=60, external_ips=["5.5.5.5"])
    svc["status"]["loadBalancer"]["ingress"].append({"ip": "6.6.6.6", "ipMode": "Proxy"})
    (sp,) = parse_service(svc)
    assert (sp.lb_ips, sp.external_ips, sp.affinity_timeout) == (("1.2.3.4",), ("5.5.5.5",), 60)
    assert sp.external_policy_local and sp.health_check_node_port == 31000 and sp.node_port == 30080
    svc["spec"]["sessionAffinityConfig"] = {}
    assert parse_service(svc)[0].affinity_timeout == 10800


def test_changed_services() -> None:
    svcs = [h.service("ns1", "svc1", "172.30.0.41", P80), h.service("ns1", "svc2", "172.30.0.42", P80)]
    a = compute(svcs, [_es(["10.0.0.1"])], "node1")
    b = compute(svcs, [_es(["10.0.0.1", "10.0.0.2"])], "node1")
    c = compute(svcs[1:], [], "node1")
    assert changed_services(None, a) == set(a.services)
    assert changed_services(a, a) == set()
    assert changed_services(a, b) == {SPN}
    assert changed_services(b, c) == {SPN}


def test_stale_udp_flows() -> None:
    svc = h.service("ns1", "dns", "172.30.0.10", [h.port(53, "dns", "UDP", node_port=30053)], type_="NodePort")
    es = lambda ips: h.eslice("ns1", "dns", [h.endpoint(ip) for ip in ips],  # noqa: E731
                              [{"name": "dns", "port": 53, "protocol": "UDP"}])
    empty, one, two = (compute([svc], [es(x)], "node1") for x in ([], ["10.0.0.1"], ["10.0.0.1", "10.0.0.2"]))
    assert stale_udp_flows(two, one) == [FlowFilter(None, 30053, "10.0.0.2"), FlowFilter("172.30.0.10", 53, "10.0.0.2")]
    assert stale_udp_flows(empty, one) == [FlowFilter(None, 30053), FlowFilter("172.30.0.10", 53)]
    assert stale_udp_flows(one, two) == []
    assert FlowFilter("172.30.0.10", 53, "10.0.0.2").argv() == [
        "conntrack", "-D", "-p", "udp", "--orig-dst", "172.30.0.10", "--orig-port-dst", "53", "--reply-src", "10.0.0.2"]


def test_balancer_round_robin_affinity_and_exclusion() -> None:
    a, b, c = ("10.0.0.1", 80), ("10.0.0.2", 80), ("10.0.0.3", 80)
    bal = Balancer([a, b, c])
    assert [bal.pick("x", 0) for _ in range(4)] == [a, b, c, a]
    assert bal.pick("x", 0, exclude=[b, c]) == a
    assert bal.pick("x", 0, exclude=[a, b, c]) is None
    sticky = Balancer([a, b, c], affinity_timeout=10)
    first = sticky.pick("1.1.1.1", 0)
    assert all(sticky.pick("1.1.1.1", t) == first for t in range(1, 30, 5))  # refreshed on use
    assert sticky.pick("1.1.1.1", 100) != first or len(sticky.endpoints) == 1  # expired -> next in rotation
    sticky.update([b, c], 10)  # affinity to a removed endpoint is dropped
    assert sticky.pick("2.2.2.2", 200) in (b, c)
    rnd = Balancer([a, b], mode="random", rng=random.Random(1))
    assert {rnd.pick("x", 0) for _ in range(50)} == {a, b}


def test_endpoint_addr_ipv6() -> None:
    assert Endpoint("fd00::1", 80).addr == "[fd00::1]:80"


def test_parse_cache_changes_nothing_but_the_work() -> None:
    """compute() with a ParseCache equals compute() without one, as objects come and go; the cache
    reparses a replaced object (a new dict), keeps the same dict's parse, and forgets what a full
    snapshot no longer holds."""
    rng = random.Random(11)
    cache = ParseCache("node1")
    svcs = {i: h.service("ns1", f"s{i}", f"172.30.0.{i + 1}", P80) for i in range(12)}
    slices = {i: h.eslice("ns1", f"s{i}", [h.endpoint(f"10.0.{i}.1")], [{"name": "p80", "port": 80}])
              for i in range(12)}
    for _ in range(60):
        i = rng.randrange(14)
        op = rng.choice(["svc", "slice", "del-svc", "del-slice"])
        if op == "svc":
            svcs[i] = h.service("ns1", f"s{i}", f"172.30.0.{i + 1}", [h.port(rng.choice([80, 81]), "p80")])
        elif op == "slice":
            ips = [f"10.0.{i}.{rng.randrange(1, 9)}" for _ in range(rng.randrange(1, 4))]
            slices[i] = h.eslice("ns1", f"s{i}", [h.endpoint(ip, ready=rng.random() < 0.8) for ip in ips],
                                 [{"name": "p80", "port": 80}])
        elif op == "del-svc":
            svcs.pop(i, None)
        else:
            slices.pop(i, None)
        want = compute(list(svcs.values()), list(slices.values()), "node1")
        assert compute(list(svcs.values()), list(slices.values()), "node1", cache=cache) == want
        assert set(cache.slices) == {("ns1", f"s{i}-abcde") for i in slices}
        assert all(cache.slices[k][0] is slices[int(k[1][1:].split("-")[0])] for k in cache.slices)
    one = next(iter(slices.values()))
    assert cache.slice(one) is cache.slice(one)  # the same dict: parsed once
    assert cache.slice(dict(one)) == cache.slice(one)
    with pytest.raises(ValueError):
        compute([], [], "node2", cache=cache)
