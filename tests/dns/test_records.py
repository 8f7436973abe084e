"""Record table: every record kind, negative answers and options, through Responder.answer."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.reversename
import dns.rrset
import pytest
from dns_fixtures import cluster, ep, eps, ns, pod, svc

from servicenet.dns.model import DnsConfig
from servicenet.dns.records import RecordIndex
from servicenet.dns.responder import Forward, Responder

Z = "cluster.local."


def ask(r: Responder, name: str, qtype: str, edns: int = 0, transport: str = "udp") -> dns.message.Message:
    q = dns.message.make_query(name, qtype, use_edns=edns)
    out = r.answer(q.to_wire(), transport)  # type: ignore[arg-type]
    assert out is not None
    m = dns.message.from_wire(out)
    assert m.id == q.id
    return m


def answers(m: dns.message.Message) -> list[str]:
    return sorted(f"{rrs.name} {rrs.ttl} {dns.rdatatype.to_text(rrs.rdtype)} {rd}" for rrs in m.answer for rd in rrs)


NOERR, NX = "NOERROR", "NXDOMAIN"
TABLE = [
    # ClusterIP A / AAAA (dual stack)
    (f"kubernetes.default.svc.{Z}", "A", NOERR, [f"kubernetes.default.svc.{Z} 5 A 10.96.0.1"]),
    (f"web.default.svc.{Z}", "A", NOERR, [f"web.default.svc.{Z} 5 A 10.96.0.20"]),
    (f"web.default.svc.{Z}", "AAAA", NOERR, [f"web.default.svc.{Z} 5 AAAA fd00::20"]),
    (f"kubernetes.default.svc.{Z}", "AAAA", NOERR, []),  # NODATA
    (f"v6only.default.svc.{Z}", "A", NOERR, []),
    (f"empty.default.svc.{Z}", "A", NOERR, [f"empty.default.svc.{Z} 5 A 10.96.0.40"]),
    # SRV with and without _port._proto; unnamed ports only without
    (f"_https._tcp.kubernetes.default.svc.{Z}", "SRV", NOERR,
     [f"_https._tcp.kubernetes.default.svc.{Z} 5 SRV 0 100 443 kubernetes.default.svc.{Z}"]),
    (f"_dns._udp.web.default.svc.{Z}", "SRV", NOERR,
     [f"_dns._udp.web.default.svc.{Z} 5 SRV 0 50 53 web.default.svc.{Z}"]),
    (f"web.default.svc.{Z}", "SRV", NOERR,
     [f"web.default.svc.{Z} 5 SRV 0 16 {p} web.default.svc.{Z}" for p in (53, 80, 81)]),
    (f"_dns._tcp.web.default.svc.{Z}", "SRV", NX, []),
    (f"_http._tcp.web.default.svc.{Z}", "A", NOERR, [f"_http._tcp.web.default.svc.{Z} 5 A 10.96.0.20"]),
    # endpoint names under a ClusterIP service
    (f"10-244-1-5.web.default.svc.{Z}", "A", NOERR, [f"10-244-1-5.web.default.svc.{Z} 5 A 10.244.1.5"]),
    (f"named-pod.web.default.svc.{Z}", "A", NOERR, [f"named-pod.web.default.svc.{Z} 5 A 10.244.1.6"]),
    (f"10-244-1-6.web.default.svc.{Z}", "A", NX, []),  # it has a hostname
    # headless: ready endpoints only (ready=None counts as ready)
    (f"hl.default.svc.{Z}", "A", NOERR, [f"hl.default.svc.{Z} 5 A 10.244.2.{i}" for i in (1, 2, 4)]),
    (f"hl.default.svc.{Z}", "AAAA", NOERR, [f"hl.default.svc.{Z} 5 AAAA fd00::2:5"]),
    (f"db-0.hl.default.svc.{Z}", "A", NOERR, [f"db-0.hl.default.svc.{Z} 5 A 10.244.2.1"]),
    (f"db-0.hl.default.svc.{Z}", "AAAA", NOERR, []),
    (f"db-2.hl.default.svc.{Z}", "A", NX, []),  # not ready
    (f"10-244-2-4.hl.default.svc.{Z}", "A", NOERR, [f"10-244-2-4.hl.default.svc.{Z} 5 A 10.244.2.4"]),
    (f"_peer._tcp.hl.default.svc.{Z}", "SRV", NOERR,
     [f"_peer._tcp.hl.default.svc.{Z} 5 SRV 0 25 2380 {h}.hl.default.svc.{Z}"
      for h in ("10-244-2-4", "db-0", "db-1", "db-5")]),
    (f"_nope._tcp.hl.default.svc.{Z}", "SRV", NX, []),
    (f"hl-empty.default.svc.{Z}", "A", NX, []),  # headless without ready endpoints
    # ExternalName: CNAME, chased inside the zone
    (f"ext.default.svc.{Z}", "CNAME", NOERR, [f"ext.default.svc.{Z} 5 CNAME www.example.org."]),
    (f"ext-in.default.svc.{Z}", "A", NOERR,
     [f"ext-in.default.svc.{Z} 5 CNAME web.default.svc.{Z}", f"web.default.svc.{Z} 5 A 10.96.0.20"]),
    (f"ext.default.svc.{Z}", "SRV", NOERR, []),
    (f"x.ext.default.svc.{Z}", "A", NX, []),
    # TXT schema version, apex, structural names
    (f"dns-version.{Z}", "TXT", NOERR, [f"dns-version.{Z} 28800 TXT \"1.1.0\""]),
    (f"web.default.svc.{Z}", "TXT", NOERR, []),
    (Z, "A", NOERR, []),
    (Z, "NS", NOERR, [f"{Z} 5 NS ns.dns.{Z}"]),
    (f"svc.{Z}", "A", NOERR, []),
    (f"pod.{Z}", "A", NOERR, []),
    (f"default.svc.{Z}", "A", NOERR, []),
    (f"nope.svc.{Z}", "A", NX, []),
    (f"missing.default.svc.{Z}", "A", NX, []),
    (f"missing.default.svc.{Z}", "AAAA", NX, []),
    (f"a.b.c.web.default.svc.{Z}", "A", NX, []),
    (f"foo.{Z}", "A", NX, []),
    (f"web.default.svc.{Z}", "MX", NOERR, []),
    # pods disabled (default)
    (f"10-244-1-5.default.pod.{Z}", "A", NX, []),
    # PTR v4/v6: ClusterIP and endpoints (hostname or dashed IP), unknown → NXDOMAIN
    ("1.0.96.10.in-addr.arpa.", "PTR", NOERR, [f"1.0.96.10.in-addr.arpa. 5 PTR kubernetes.default.svc.{Z}"]),
    ("1.2.244.10.in-addr.arpa.", "PTR", NOERR, [f"1.2.244.10.in-addr.arpa. 5 PTR db-0.hl.default.svc.{Z}"]),
    ("5.1.244.10.in-addr.arpa.", "PTR", NOERR, [f"5.1.244.10.in-addr.arpa. 5 PTR 10-244-1-5.web.default.svc.{Z}"]),
    ("3.2.244.10.in-addr.arpa.", "PTR", NX, []),  # not ready
    ("9.9.244.10.in-addr.arpa.", "PTR", NX, []),  # slice without service label
    ("99.99.99.10.in-addr.arpa.", "PTR", NX, []),
    (dns.reversename.from_address("fd00::20").to_text(), "PTR", NOERR,
     [f"{dns.reversename.from_address('fd00::20')} 5 PTR web.default.svc.{Z}"]),
    (dns.reversename.from_address("fd00::2:5").to_text(), "PTR", NOERR,
     [f"{dns.reversename.from_address('fd00::2:5')} 5 PTR db-5.hl.default.svc.{Z}"]),
]


@pytest.fixture(scope="module")
def responder() -> Responder:
    return cluster()[1]


@pytest.mark.parametrize("name,qtype,rcode,expected", TABLE, ids=[f"{t[0]}/{t[1]}" for t in TABLE])
@pytest.mark.parametrize("edns", [-1, 0])
def test_table(responder: Responder, name: str, qtype: str, rcode: str, expected: list[str], edns: int) -> None:
    m = ask(responder, name, qtype, edns)
    assert dns.rcode.to_text(m.rcode()) == rcode
    assert answers(m) == sorted(expected)
    assert m.flags & dns.flags.AA and m.flags & dns.flags.QR
    assert (m.edns >= 0) == (edns >= 0)  # OPT only when the query had one
    if not expected:  # NXDOMAIN and NODATA carry the SOA
        apex = "in-addr.arpa." if name.endswith("in-addr.arpa.") else "ip6.arpa." if name.endswith("ip6.arpa.") else Z
        assert [(str(r.name), r.rdtype) for r in m.authority] == [(apex, dns.rdatatype.SOA)]
        soa = m.authority[0]
        assert soa.ttl == 5 and soa[0].minimum == 5 and str(soa[0].mname) == f"ns.dns.{Z}"
    else:
        assert m.authority == []
    again = ask(responder, name, qtype, edns)  # second answer comes from the template cache
    assert answers(again) == answers(m) and again.rcode() == m.rcode()


def test_srv_additional_glue(responder: Responder) -> None:
    m = ask(responder, f"_peer._tcp.hl.default.svc.{Z}", "SRV")
    glue = sorted(f"{r.name} {r[0]}" for r in m.additional if r.rdtype in (1, 28))
    assert f"db-0.hl.default.svc.{Z} 10.244.2.1" in glue and f"db-5.hl.default.svc.{Z} fd00::2:5" in glue


def test_case_is_preserved_and_matching_is_insensitive(responder: Responder) -> None:
    m = ask(responder, "WeB.DeFault.SVC.Cluster.LOCAL.", "A")
    assert str(m.question[0].name) == "WeB.DeFault.SVC.Cluster.LOCAL."
    assert [str(r.name) for r in m.answer] == ["WeB.DeFault.SVC.Cluster.LOCAL."]
    assert m.answer[0][0].address == "10.96.0.20"
    m2 = ask(responder, "web.default.svc.cluster.local.", "A")  # same template, other case
    assert str(m2.answer[0].name) == "web.default.svc.cluster.local."


def test_servfail_until_synced() -> None:
    idx = RecordIndex(DnsConfig(forward=False))
    r = Responder(idx)
    idx.upsert_service(svc("web", ips=["10.96.0.9"]))
    assert ask(r, f"web.default.svc.{Z}", "A").rcode() == dns.rcode.NOERROR  # positive answers flow
    assert ask(r, f"nope.default.svc.{Z}", "A").rcode() == dns.rcode.SERVFAIL
    idx.set_synced()
    assert ask(r, f"nope.default.svc.{Z}", "A").rcode() == dns.rcode.NXDOMAIN


def test_outside_zone_refused_without_forwarder(responder: Responder) -> None:
    m = ask(responder, "example.com.", "A")
    assert m.rcode() == dns.rcode.REFUSED and not m.flags & dns.flags.RA


def test_incremental_updates_invalidate_answers() -> None:
    idx, r = cluster()
    name = f"hl.default.svc.{Z}"
    assert len(answers(ask(r, name, "A"))) == 3
    idx.upsert_slice(eps("hl-a", "hl", [ep("10.244.2.1", hostname="db-0")]))
    assert answers(ask(r, name, "A")) == [f"{name} 5 A 10.244.2.1"]
    assert ask(r, "2.2.244.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.NXDOMAIN
    idx.delete_slice(eps("hl-a", "hl", []))
    idx.delete_slice(eps("hl-b", "hl", []))
    assert ask(r, name, "A").rcode() == dns.rcode.NXDOMAIN
    idx.delete_service(svc("web"))
    assert ask(r, f"web.default.svc.{Z}", "A").rcode() == dns.rcode.NXDOMAIN
    assert ask(r, "20.0.96.10.in-addr.arpa.", "PTR").rcode() == dns.rcode.NXDOMAIN
    idx.upsert_service(svc("web", ips=["10.96.0.21"]))
    assert answers(ask(r, f"web.default.svc.{Z}", "A")) == [f"web.default.svc.{Z} 5 A 10.96.0.21"]
    idx.upsert_service(svc("new", "brand-new", ips=["10.96.7.7"]))  # namespace appears with its service
    assert ask(r, f"brand-new.svc.{Z}", "A").rcode() == dns.rcode.NOERROR
    idx.delete_service(svc("new", "brand-new"))
    assert ask(r, f"brand-new.svc.{Z}", "A").rcode() == dns.rcode.NXDOMAIN


def test_pods_insecure_and_verified() -> None:
    _, r = cluster(DnsConfig(forward=False, pods="insecure"))
    assert answers(ask(r, f"1-2-3-4.default.pod.{Z}", "A")) == [f"1-2-3-4.default.pod.{Z} 5 A 1.2.3.4"]
    assert answers(ask(r, f"fd00--1.default.pod.{Z}", "AAAA")) == [f"fd00--1.default.pod.{Z} 5 AAAA fd00::1"]
    assert ask(r, f"1-2-3-4.default.pod.{Z}", "AAAA").rcode() == dns.rcode.NOERROR
    assert ask(r, f"not-an-ip.default.pod.{Z}", "A").rcode() == dns.rcode.NXDOMAIN
    assert ask(r, f"1-2-3-4.nons.pod.{Z}", "A").rcode() == dns.rcode.NXDOMAIN
    idx, r = cluster(DnsConfig(forward=False, pods="verified"))
    assert ask(r, f"10-244-7-7.default.pod.{Z}", "A").rcode() == dns.rcode.NXDOMAIN
    idx.upsert_pod(pod("p", "10.244.7.7"))
    assert answers(ask(r, f"10-244-7-7.default.pod.{Z}", "A")) == [f"10-244-7-7.default.pod.{Z} 5 A 10.244.7.7"]
    assert ask(r, f"10-244-7-7.other.pod.{Z}", "A").rcode() == dns.rcode.NXDOMAIN  # other namespace
    idx.delete_pod(pod("p", "10.244.7.7"))
    assert ask(r, f"10-244-7-7.default.pod.{Z}", "A").rcode() == dns.rcode.NXDOMAIN


def test_endpoint_pod_names() -> None:
    _, r = cluster(DnsConfig(forward=False, endpoint_pod_names=True))
    assert answers(ask(r, f"db-pod-3.hl.default.svc.{Z}", "A")) == [f"db-pod-3.hl.default.svc.{Z} 5 A 10.244.2.4"]
    assert ask(r, f"10-244-2-4.hl.default.svc.{Z}", "A").rcode() == dns.rcode.NXDOMAIN


def test_ignore_empty_service_and_exposed_namespaces_and_ttl() -> None:
    _, r = cluster(DnsConfig(forward=False, ignore_empty_service=True, namespaces=frozenset({"default"}), ttl=30))
    assert ask(r, f"empty.default.svc.{Z}", "A").rcode() == dns.rcode.NXDOMAIN
    m = ask(r, f"web.default.svc.{Z}", "A")
    assert answers(m) == [f"web.default.svc.{Z} 30 A 10.96.0.20"]
    assert ask(r, f"api.other.svc.{Z}", "A").rcode() == dns.rcode.NXDOMAIN
    assert ask(r, f"other.svc.{Z}", "A").rcode() == dns.rcode.NXDOMAIN
    with pytest.raises(ValueError):
        DnsConfig(ttl=3601)
    idx = RecordIndex(DnsConfig(forward=False, ttl=600))
    idx.set_synced()
    assert ask(Responder(idx), f"x.{Z}", "A").authority[0].ttl == 300  # SOA TTL = min(ttl, 300)


def test_other_zone_name() -> None:
    idx = RecordIndex(DnsConfig(zone="corp.example", forward=False))
    idx.upsert_namespace(ns("default"))
    idx.upsert_service(svc("web", ips=["10.96.0.3"]))
    idx.set_synced()
    r = Responder(idx)
    assert answers(ask(r, "web.default.svc.corp.example.", "A")) == ["web.default.svc.corp.example. 5 A 10.96.0.3"]
    assert ask(r, f"web.default.svc.{Z}", "A").rcode() == dns.rcode.REFUSED


def test_truncation_and_tcp() -> None:
    idx = RecordIndex(DnsConfig(forward=False))
    idx.upsert_service(svc("big", headless=True))
    idx.upsert_slice(eps("big-1", "big", [ep(f"10.1.{i // 250}.{i % 250 + 1}") for i in range(200)]))
    idx.set_synced()
    r = Responder(idx)
    for edns, limit in ((-1, 512), (0, 1232)):
        q = dns.message.make_query(f"big.default.svc.{Z}", "A", use_edns=edns, payload=4096)
        out = r.answer(q.to_wire(), "udp")
        assert out is not None and len(out) <= limit
        m = dns.message.from_wire(out)
        assert m.flags & dns.flags.TC and not m.answer
        full = dns.message.from_wire(r.answer(q.to_wire(), "tcp"))  # type: ignore[arg-type]
        assert not full.flags & dns.flags.TC and len(full.answer[0]) == 200
    q = dns.message.make_query(f"big.default.svc.{Z}", "A", use_edns=0, payload=700)  # client asked for less
    assert dns.message.from_wire(r.answer(q.to_wire(), "udp", max_udp=4096)).flags & dns.flags.TC  # type: ignore[arg-type]


def test_axfr_over_tcp_only_when_enabled() -> None:
    _, r = cluster(DnsConfig(forward=False, axfr=True))
    q = dns.message.make_query(Z, "AXFR")
    m = dns.message.from_wire(r.answer(q.to_wire(), "tcp"), xfr=True, origin=None)  # type: ignore[arg-type]
    types = [rrs.rdtype for rrs in m.answer]
    assert types[0] == dns.rdatatype.SOA and types[-1] == dns.rdatatype.SOA
    names = {str(rrs.name) for rrs in m.answer}
    assert f"db-0.hl.default.svc.{Z}" in names and f"_https._tcp.kubernetes.default.svc.{Z}" in names
    assert dns.message.from_wire(r.answer(q.to_wire(), "udp")).rcode() == dns.rcode.REFUSED  # type: ignore[arg-type]
    _, r2 = cluster()
    assert dns.message.from_wire(r2.answer(q.to_wire(), "tcp")).rcode() == dns.rcode.REFUSED  # type: ignore[arg-type]


def test_external_name_chain_leaving_the_zone_is_forwarded() -> None:
    idx, r = cluster(DnsConfig(forward=True))
    idx.upsert_service(svc("hop", external="ext.default.svc.cluster.local", ports=[]))
    q = dns.message.make_query(f"hop.default.svc.{Z}", "A")
    f = r.handle(q.to_wire())
    assert isinstance(f, Forward) and f.target == ("www", "example", "org")
    assert [str(rr.rdata) for rr in f.prefix] == [str(("ext", "default", "svc", "cluster", "local")),
                                                  str(("www", "example", "org"))]
    m = ask(r, f"hop.default.svc.{Z}", "A")  # answer() without an upstream: the in-zone part
    assert answers(m) == [f"ext.default.svc.{Z} 5 CNAME www.example.org.", f"hop.default.svc.{Z} 5 CNAME ext.default.svc.{Z}"]


def test_tcp_answer_too_big_for_one_message_is_truncated() -> None:
    idx = RecordIndex(DnsConfig(forward=False))
    idx.upsert_service(svc("huge", headless=True))
    idx.upsert_slice(eps("huge-1", "huge", [ep(f"10.2.{i // 250}.{i % 250 + 1}") for i in range(5000)]))
    idx.set_synced()
    out = Responder(idx).answer(dns.message.make_query(f"huge.default.svc.{Z}", "A").to_wire(), "tcp")
    assert out is not None and len(out) < 65535 and dns.message.from_wire(out).flags & dns.flags.TC


def test_age_ttls_counts_down_every_record_but_opt() -> None:
    from servicenet.dns.wire import age_ttls

    q = dns.message.make_query("www.example.org.", "A", use_edns=0)
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("www.example.org.", 300, "IN", "CNAME", "x.example.org."))
    r.answer.append(dns.rrset.from_text("x.example.org.", 2, "IN", "A", "192.0.2.1"))
    aged = dns.message.from_wire(age_ttls(r.to_wire(), 5))
    assert [rrs.ttl for rrs in aged.answer] == [295, 0] and aged.edns == 0 and aged.payload == r.payload
    assert age_ttls(b"\x00\x01garbage", 3) == b"\x00\x01garbage"
