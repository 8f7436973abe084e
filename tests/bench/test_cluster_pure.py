"""Pure pieces of bench/cluster: hollow-node addressing and objects, nft monitor matching, percentiles."""

from __future__ import annotations

import math

import dns.message
import dns.rdatatype
import dns.rrset
import pytest

from bench.cluster import hollow
from bench.cluster.observe import a_addresses, a_query, element_line_has, pct, summary


def test_hollow_addresses_do_not_overlap() -> None:
    ns = hollow.nodes(300)
    cidrs = {n.pod_cidr for n in ns}
    assert len(cidrs) == 300
    assert ns[0].pod_cidr == "10.64.0.0/24" and ns[257].pod_cidr == "10.65.1.0/24"
    assert ns[257].pod_ip(0) == "10.65.1.2" and ns[257].pod_ip(252) == "10.65.1.254"
    assert len({n.ip for n in ns}) == 300 and ns[0].ip == "172.31.0.1"
    with pytest.raises(ValueError):
        ns[0].pod_ip(253)


def test_spread_round_robin_and_capacity() -> None:
    assert hollow.spread(5, 2) == [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2)]
    assert len(set(hollow.spread(1000, 7))) == 1000
    with pytest.raises(ValueError):
        hollow.spread(254, 1)


def test_pod_status_readiness() -> None:
    up = hollow.pod_status("10.64.0.2", True, "2026-01-01T00:00:00Z")
    down = hollow.pod_status("10.64.0.2", False, "2026-01-01T00:00:00Z")
    ready = {c["type"]: c["status"] for c in up["conditions"]}
    assert ready["Ready"] == "True" and up["podIP"] == "10.64.0.2" and up["phase"] == "Running"
    assert {c["type"]: c["status"] for c in down["conditions"]}["Ready"] == "False"
    node = hollow.nodes(1)[0]
    pod = hollow.pod_object("p", node, {"app": "x"})
    assert pod["spec"]["nodeName"] == node.name and pod["metadata"]["labels"] == {"app": "x"}


def test_element_line_matches_whole_addresses_only() -> None:
    line = "delete element ip kube-proxy ep-3 { 10.64.0.23 . 8080 }"
    assert element_line_has(line, "10.64.0.23", "delete")
    assert not element_line_has(line, "10.64.0.2", "delete")
    assert not element_line_has(line, "0.64.0.23", "delete")
    assert not element_line_has(line, "10.64.0.23", "add")
    assert not element_line_has("add rule ip kube-proxy x ip daddr 10.64.0.23", "10.64.0.23", "add")


def test_percentiles() -> None:
    xs = [i / 1000 for i in range(1, 101)]
    assert pct(xs, 50) == 0.05 and pct(xs, 99) == 0.099 and pct(xs, 100) == 0.1
    assert math.isnan(pct([], 99))
    s = summary(xs)
    assert s == {"n": 100, "p50_ms": 50.0, "p99_ms": 99.0, "max_ms": 100.0}


def test_hollow_heartbeats_start_spread_over_one_interval() -> None:
    offsets = [hollow.stagger(i, 1000, 10.0) for i in range(1000)]
    assert offsets[0] == 0.0 and max(offsets) < 10.0
    assert sum(1 for o in offsets if o < 1.0) == 100  # a tenth of the nodes in each tenth of the interval


def test_a_addresses_reads_what_dnspython_reads() -> None:
    name = "probe-h.scale.svc.cluster.local"
    q = dns.message.from_wire(a_query(name, 4242))
    assert q.id == 4242 and not q.flags & 0x0100 and q.question[0].rdtype == dns.rdatatype.A
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("alias." + name + ".", 30, "IN", "CNAME", name + "."))
    r.answer.append(dns.rrset.from_text(name + ".", 30, "IN", "A", "10.64.0.2", "10.64.1.2", "10.64.255.254"))
    r.answer.append(dns.rrset.from_text(name + ".", 30, "IN", "AAAA", "fd00::1"))
    wire = r.to_wire()  # names compressed against the question
    want = {rd.address for rs in dns.message.from_wire(wire).answer if rs.rdtype == dns.rdatatype.A for rd in rs}
    assert a_addresses(wire, 4242) == want == {"10.64.0.2", "10.64.1.2", "10.64.255.254"}
    assert a_addresses(wire, 4243) is None  # another query's answer
    assert a_addresses(a_query(name, 4242), 4242) is None  # not a response
    empty = dns.message.make_response(q)
    empty.set_rcode(3)
    assert a_addresses(empty.to_wire(), 4242) == set()
