"""Golden tests for the iptables renderer (literal iptables-restore payloads)."""

from __future__ import annotations

import pytest

from servicenet.proxy.model import ServicePortName, compute
from servicenet.proxy.render_iptables import IptablesConfig, probability, render, render_cleanup

from . import helpers as h

CFG = IptablesConfig(cluster_cidr="10.0.0.0/8")
P80 = h.P80


_es = h.es80


def _state(svcs: list[dict], slices: list[dict]):
    return compute(svcs, slices, "node1", ["192.168.0.2"])


# The ClusterIP + 3 endpoints payload, written out by hand from the upstream layout
# (hashes, order of writes, %0.10f probabilities, 0x%08x mark).
CLUSTERIP_3 = """\
*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-LXVODXWDISEETFEF - [0:0]
:KUBE-SEP-ICDUIKC33SFI6ZPR - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-LXVODXWDISEETFEF
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.3:80" -j KUBE-SEP-ICDUIKC33SFI6ZPR
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SEP-ICDUIKC33SFI6ZPR -m comment --comment ns1/svc1:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
-A KUBE-SEP-ICDUIKC33SFI6ZPR -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
"""


def test_clusterip_three_endpoints() -> None:
    st = _state([h.service("ns1", "svc1", "172.30.0.41", P80)], [_es("svc1", ["10.180.0.3", "10.180.0.1", "10.180.0.2"])])
    r = render(st, CFG)
    assert r.payload == CLUSTERIP_3
    assert r.active_nat_chains == {"KUBE-SVC-XPGD46QRK7WJZT7O", "KUBE-SEP-SXIVWICOYRO3J4NJ",
                                   "KUBE-SEP-LXVODXWDISEETFEF", "KUBE-SEP-ICDUIKC33SFI6ZPR"}


def test_probability_format() -> None:
    assert [probability(n) for n in (1, 2, 3, 7)] == ["1.0000000000", "0.5000000000", "0.3333333333", "0.1428571429"]


@pytest.mark.parametrize("name, svcs, slices", h.GOLDEN_CASES)
def test_golden(name: str, svcs: list[dict], slices: list[dict]) -> None:
    assert render(_state(svcs, slices), CFG).payload == globals()[f"GOLDEN_{name}"]


def test_internal_local_without_local_endpoints_drops() -> None:
    st = _state([h.service("ns1", "svc6", "172.30.0.46", P80, itp="Local")], [_es("svc6", ["10.180.1.1"], node="node2")])
    p = render(st, CFG).payload
    assert ('-A KUBE-SERVICES -m comment --comment "ns1/svc6:p80 has no local endpoints" -m tcp -p tcp '
            "-d 172.30.0.46 --dport 80 -j DROP") in p
    assert "KUBE-SVC-" not in p and "KUBE-SEP-" not in p


def test_external_local_without_local_endpoints() -> None:
    st = _state([h.service("ns1", "svc7", "172.30.0.47", [h.port(80, "p80", node_port=3007)], type_="NodePort",
                           etp="Local")], [_es("svc7", ["10.180.1.1"], node="node2")])
    p = render(st, CFG).payload
    assert ('-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc7:p80 has no local endpoints" '
            "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3007 -j DROP") in p
    # ClusterIP traffic still works, NodePort traffic goes through the EXT chain (no SVL jump)
    assert "-d 172.30.0.47 --dport 80 -j KUBE-SVC-" in p
    ext = [ln for ln in p.splitlines() if ln.startswith("-A KUBE-EXT-")]
    assert len(ext) == 3 and not any("KUBE-SVL" in ln for ln in ext)


def test_terminating_fallback() -> None:
    eps = [h.endpoint("10.180.0.1", ready=False, serving=True, terminating=True),
           h.endpoint("10.180.0.2", ready=False, serving=False, terminating=True)]
    st = _state([h.service("ns1", "svc1", "172.30.0.41", P80)],
                [h.eslice("ns1", "svc1", eps, [{"name": "p80", "port": 80}])])
    p = render(st, CFG).payload
    assert "--to-destination 10.180.0.1:80" in p and "10.180.0.2" not in p


def test_source_ranges_use_firewall_chain() -> None:
    st = _state([h.service("ns1", "svc8", "172.30.0.48", [h.port(80, "p80", node_port=3008)], type_="LoadBalancer",
                           lb_ips=["9.9.9.9"], source_ranges=["203.0.113.0/25"])], [_es("svc8", ["10.180.0.1"])])
    lines = render(st, CFG).payload.splitlines()
    fw = [ln for ln in lines if ln.startswith("-A KUBE-FW-")]
    assert fw[0].endswith("-s 203.0.113.0/25 -j " + fw[0].split()[1].replace("KUBE-FW-", "KUBE-EXT-"))
    assert any(ln.startswith("-A KUBE-PROXY-FIREWALL") and ln.endswith("-d 9.9.9.9 --dport 80 -j DROP") for ln in lines)
    assert any("-d 9.9.9.9 --dport 80 -j KUBE-FW-" in ln for ln in lines)


def test_partial_sync_omits_unchanged_service_chains_and_deletes_stale() -> None:
    svcs = [h.service("ns1", "svc1", "172.30.0.41", P80), h.service("ns1", "svc2", "172.30.0.42", P80)]
    st1 = _state(svcs, [_es("svc1", ["10.180.0.1"]), _es("svc2", ["10.180.0.2", "10.180.0.3"])])
    full = render(st1, CFG)
    st2 = _state(svcs, [_es("svc1", ["10.180.0.1"]), _es("svc2", ["10.180.0.2"])])
    part = render(st2, CFG, changed={ServicePortName("ns1", "svc2", "p80", "TCP")},
                  existing_nat_chains=full.active_nat_chains)
    p = part.payload
    assert ":KUBE-SVC-XPGD46QRK7WJZT7O" not in p  # svc1 untouched ...
    assert "-A KUBE-SERVICES -m comment --comment \"ns1/svc1:p80 cluster IP\"" in p  # ... but still captured
    gone = (full.active_nat_chains - part.active_nat_chains)
    assert len(gone) == 1 and next(iter(gone)).startswith("KUBE-SEP-")
    chain = next(iter(gone))
    assert f":{chain} - [0:0]" in p and p.rstrip().endswith(f"-X {chain}\nCOMMIT")
    assert "KUBE-SVC-XPGD46QRK7WJZT7O" in part.active_nat_chains


def test_large_cluster_mode_drops_endpoint_comments() -> None:
    st = _state([h.service("ns1", "svc1", "172.30.0.41", P80)], [_es("svc1", ["10.180.0.1", "10.180.0.2"])])
    p = render(st, IptablesConfig(cluster_cidr="10.0.0.0/8", large_cluster_threshold=1)).payload
    assert "-A KUBE-SEP-SXIVWICOYRO3J4NJ -s 10.180.0.1 -j KUBE-MARK-MASQ" in p
    assert "-A KUBE-SVC-XPGD46QRK7WJZT7O -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-" in p


def test_cleanup_payload() -> None:
    out = render_cleanup({"nat": ["KUBE-SERVICES", "KUBE-SVC-X", "DOCKER"], "filter": []})
    assert out == "*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SVC-X - [0:0]\n-X KUBE-SERVICES\n-X KUBE-SVC-X\nCOMMIT\n"


GOLDEN_NODEPORT = '''\
*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-EXT-IP2NFBUX2EWVD722 - [0:0]
:KUBE-SVC-IP2NFBUX2EWVD722 - [0:0]
:KUBE-SEP-LWI7DVUDZBXMUXY2 - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000
-A KUBE-SERVICES -m comment --comment "ns1/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-IP2NFBUX2EWVD722
-A KUBE-NODEPORTS -m comment --comment ns1/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-IP2NFBUX2EWVD722
-A KUBE-SVC-IP2NFBUX2EWVD722 -m comment --comment "ns1/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-EXT-IP2NFBUX2EWVD722 -m comment --comment "masquerade traffic for ns1/svc2:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-IP2NFBUX2EWVD722 -j KUBE-SVC-IP2NFBUX2EWVD722
-A KUBE-SVC-IP2NFBUX2EWVD722 -m comment --comment "ns1/svc2:p80 -> 10.180.0.1:80" -j KUBE-SEP-LWI7DVUDZBXMUXY2
-A KUBE-SEP-LWI7DVUDZBXMUXY2 -m comment --comment ns1/svc2:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-LWI7DVUDZBXMUXY2 -m comment --comment ns1/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
'''

GOLDEN_LB = '''\
*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-EXT-S2BCUQRGOEMMWFLE - [0:0]
:KUBE-SVC-S2BCUQRGOEMMWFLE - [0:0]
:KUBE-SEP-4NYEEJS6CS5BTSPM - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000
-A KUBE-SERVICES -m comment --comment "ns1/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-S2BCUQRGOEMMWFLE
-A KUBE-SERVICES -m comment --comment "ns1/svc3:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-S2BCUQRGOEMMWFLE
-A KUBE-NODEPORTS -m comment --comment ns1/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-S2BCUQRGOEMMWFLE
-A KUBE-SVC-S2BCUQRGOEMMWFLE -m comment --comment "ns1/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-EXT-S2BCUQRGOEMMWFLE -m comment --comment "masquerade traffic for ns1/svc3:p80 external destinations" -j KUBE-MARK-MASQ
-A KUBE-EXT-S2BCUQRGOEMMWFLE -j KUBE-SVC-S2BCUQRGOEMMWFLE
-A KUBE-SVC-S2BCUQRGOEMMWFLE -m comment --comment "ns1/svc3:p80 -> 10.180.0.1:80" -j KUBE-SEP-4NYEEJS6CS5BTSPM
-A KUBE-SEP-4NYEEJS6CS5BTSPM -m comment --comment ns1/svc3:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-4NYEEJS6CS5BTSPM -m comment --comment ns1/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
'''

GOLDEN_AFFINITY = '''\
*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
:KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
:KUBE-SEP-LXVODXWDISEETFEF - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000
-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --rcheck --seconds 10800 --reap -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -m recent --name KUBE-SEP-LXVODXWDISEETFEF --rcheck --seconds 10800 --reap -j KUBE-SEP-LXVODXWDISEETFEF
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-SXIVWICOYRO3J4NJ
-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j KUBE-SEP-LXVODXWDISEETFEF
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-SXIVWICOYRO3J4NJ --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
-A KUBE-SEP-LXVODXWDISEETFEF -m comment --comment ns1/svc1:p80 -m recent --name KUBE-SEP-LXVODXWDISEETFEF --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
'''

GOLDEN_NOEP = '''\
*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-SERVICES -m comment --comment "ns1/svc4:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j REJECT
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
'''

GOLDEN_LOCAL = '''\
*filter
:KUBE-SERVICES - [0:0]
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-FIREWALL - [0:0]
-A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-NODEPORTS -m comment --comment "ns1/svc5:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x00004000/0x00004000 -j ACCEPT
-A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
COMMIT
*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-EXT-7NLCIPNPQQ6RDVMZ - [0:0]
:KUBE-SVC-7NLCIPNPQQ6RDVMZ - [0:0]
:KUBE-SVL-7NLCIPNPQQ6RDVMZ - [0:0]
:KUBE-SEP-727BVBYEJXSS7GUH - [0:0]
:KUBE-SEP-OQCZTKIZIATKAYOB - [0:0]
-A KUBE-POSTROUTING -m mark ! --mark 0x00004000/0x00004000 -j RETURN
-A KUBE-POSTROUTING -j MARK --xor-mark 0x00004000
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000
-A KUBE-SERVICES -m comment --comment "ns1/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-7NLCIPNPQQ6RDVMZ
-A KUBE-SERVICES -m comment --comment "ns1/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-EXT-7NLCIPNPQQ6RDVMZ
-A KUBE-NODEPORTS -m comment --comment ns1/svc5:p80 -m tcp -p tcp --dport 3005 -j KUBE-EXT-7NLCIPNPQQ6RDVMZ
-A KUBE-SVC-7NLCIPNPQQ6RDVMZ -m comment --comment "ns1/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
-A KUBE-EXT-7NLCIPNPQQ6RDVMZ -m comment --comment "pod traffic for ns1/svc5:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-7NLCIPNPQQ6RDVMZ
-A KUBE-EXT-7NLCIPNPQQ6RDVMZ -m comment --comment "masquerade LOCAL traffic for ns1/svc5:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
-A KUBE-EXT-7NLCIPNPQQ6RDVMZ -m comment --comment "route LOCAL traffic for ns1/svc5:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-7NLCIPNPQQ6RDVMZ
-A KUBE-EXT-7NLCIPNPQQ6RDVMZ -j KUBE-SVL-7NLCIPNPQQ6RDVMZ
-A KUBE-SVC-7NLCIPNPQQ6RDVMZ -m comment --comment "ns1/svc5:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-727BVBYEJXSS7GUH
-A KUBE-SVC-7NLCIPNPQQ6RDVMZ -m comment --comment "ns1/svc5:p80 -> 10.180.1.1:80" -j KUBE-SEP-OQCZTKIZIATKAYOB
-A KUBE-SVL-7NLCIPNPQQ6RDVMZ -m comment --comment "ns1/svc5:p80 -> 10.180.0.1:80" -j KUBE-SEP-727BVBYEJXSS7GUH
-A KUBE-SEP-727BVBYEJXSS7GUH -m comment --comment ns1/svc5:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-727BVBYEJXSS7GUH -m comment --comment ns1/svc5:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
-A KUBE-SEP-OQCZTKIZIATKAYOB -m comment --comment ns1/svc5:p80 -s 10.180.1.1 -j KUBE-MARK-MASQ
-A KUBE-SEP-OQCZTKIZIATKAYOB -m comment --comment ns1/svc5:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.1.1:80
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
COMMIT
'''

