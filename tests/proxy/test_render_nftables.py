"""Golden tests for the nftables renderer (literal ``nft -f`` transactions)."""

from __future__ import annotations

import pytest

from servicenet.proxy import render_nftables as nft
from servicenet.proxy.model import compute

from . import helpers as h

CFG = nft.NftConfig(cluster_cidr="10.0.0.0/8")
P80 = [h.port(80, "p80")]
BASE_END = 'add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"\n'


def _es(svc: str, ips: list[str], node: str = "node1") -> dict:
    return h.eslice("ns1", svc, [h.endpoint(ip, node=node) for ip in ips], [{"name": "p80", "port": 80}])


def _state(svcs: list[dict], slices: list[dict]):
    return compute(svcs, slices, "node1", ["192.168.0.2"])


def _service_part(tx: str) -> str:
    return tx.split(BASE_END)[1]


# Written by hand from the upstream layout: endpoint chains are created before the vmap that
# references them; the masquerade rule uses the cluster CIDR as the local-traffic detector.
CLUSTERIP_3 = """\
add chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
add chain ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
add chain ip kube-proxy endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80
add rule ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 ip saddr 10.180.0.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 meta l4proto tcp dnat to 10.180.0.2:80
add rule ip kube-proxy endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 ip saddr 10.180.0.3 jump mark-for-masquerade
add rule ip kube-proxy endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 meta l4proto tcp dnat to 10.180.0.3:80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 3 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 , 1 : goto endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 , 2 : goto endpoint-WUHIZN2H-ns1/svc1/tcp/p80__10.180.0.3/80 }
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
"""


def test_base_objects() -> None:
    base = nft.base_objects(nft.NftConfig(nodeport_primary=False, service_cidrs=("172.30.0.0/16",)))
    assert base[0] == 'add table ip kube-proxy { comment "rules for kube-proxy" ; }'
    assert "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }" in base
    assert "add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }" in base
    assert ("add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 "
            "meta l4proto . th dport vmap @service-nodeports") in base
    assert "add rule ip kube-proxy masquerading masquerade fully-random" in base
    assert base[-1] == ('add rule ip kube-proxy cluster-ips-check ip daddr { 172.30.0.0/16 } drop '
                        'comment "Drop traffic to unallocated ClusterIPs"')
    assert not any("nodeport-ips" in ln for ln in base)


def test_clusterip_three_endpoints() -> None:
    st = _state([h.service("ns1", "svc1", "172.30.0.41", P80)], [_es("svc1", ["10.180.0.2", "10.180.0.3", "10.180.0.1"])])
    tx = nft.full_transaction(nft.build(st, CFG), CFG)
    assert tx.startswith("add table ip kube-proxy\ndelete table ip kube-proxy\n")
    assert _service_part(tx) == CLUSTERIP_3


@pytest.mark.parametrize("name, svcs, slices", [
    ("NODEPORT", [h.service("ns1", "svc2", "172.30.0.42", [h.port(80, "p80", node_port=3001)], type_="NodePort")],
     [_es("svc2", ["10.180.0.1"])]),
    ("LB", [h.service("ns1", "svc3", "172.30.0.43", [h.port(80, "p80", node_port=3003)], type_="LoadBalancer",
                      lb_ips=["1.2.3.4"])], [_es("svc3", ["10.180.0.1"])]),
    ("AFFINITY", [h.service("ns1", "svc1", "172.30.0.41", P80, affinity=10800)],
     [_es("svc1", ["10.180.0.1", "10.180.0.2"])]),
    ("NOEP", [h.service("ns1", "svc4", "172.30.0.44", P80)], []),
    ("LOCAL", [h.service("ns1", "svc5", "172.30.0.45", [h.port(80, "p80", node_port=3005)], type_="LoadBalancer",
                         lb_ips=["5.6.7.8"], etp="Local", hcnp=30000)],
     [h.eslice("ns1", "svc5", [h.endpoint("10.180.0.1", node="node1"), h.endpoint("10.180.1.1", node="node2")],
               [{"name": "p80", "port": 80}])]),
])
def test_golden(name: str, svcs: list[dict], slices: list[dict]) -> None:
    tx = nft.full_transaction(nft.build(_state(svcs, slices), CFG), CFG)
    assert _service_part(tx) == globals()[f"GOLDEN_{name}"]


def test_local_policy_without_local_endpoints_drops_external() -> None:
    st = _state([h.service("ns1", "svc7", "172.30.0.47", [h.port(80, "p80", node_port=3007)], type_="NodePort",
                           etp="Local")], [_es("svc7", ["10.180.1.1"], node="node2")])
    rs = nft.build(st, CFG)
    assert rs.maps["no-endpoint-nodeports"] == {"tcp . 3007": "drop"}
    assert rs.maps["service-nodeports"]["tcp . 3007"].startswith("goto external-")


def test_incremental_endpoint_removal() -> None:
    svcs = [h.service("ns1", "svc1", "172.30.0.41", P80), h.service("ns1", "svc2", "172.30.0.42", P80)]
    old = nft.build(_state(svcs, [_es("svc1", ["10.180.0.1", "10.180.0.2"]), _es("svc2", ["10.180.0.9"])]), CFG)
    new = nft.build(_state(svcs, [_es("svc1", ["10.180.0.1"]), _es("svc2", ["10.180.0.9"])]), CFG)
    assert nft.incremental_transaction(old, old, CFG) == ""
    assert nft.incremental_transaction(old, new, CFG) == """\
flush chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }
flush chain ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
delete chain ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
"""


def test_incremental_service_loses_all_endpoints() -> None:
    svcs = [h.service("ns1", "svc1", "172.30.0.41", P80)]
    old = nft.build(_state(svcs, [_es("svc1", ["10.180.0.1"])]), CFG)
    new = nft.build(_state(svcs, []), CFG)
    assert nft.incremental_transaction(old, new, CFG) == """\
delete element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 }
add element ip kube-proxy no-endpoint-services { 172.30.0.41 . tcp . 80 : goto reject-chain }
flush chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
flush chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
delete chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
delete chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
"""


def test_incremental_affinity_timeout_change_needs_full_sync() -> None:
    eps = [_es("svc1", ["10.180.0.1"])]
    old = nft.build(_state([h.service("ns1", "svc1", "172.30.0.41", P80, affinity=100)], eps), CFG)
    new = nft.build(_state([h.service("ns1", "svc1", "172.30.0.41", P80, affinity=200)], eps), CFG)
    with pytest.raises(nft.NeedFullSync):
        nft.incremental_transaction(old, new, CFG)


def test_full_sync_over_existing_table_flushes_and_deletes_stale() -> None:
    st = _state([h.service("ns1", "svc1", "172.30.0.41", P80)], [_es("svc1", ["10.180.0.1"])])
    tx = nft.full_transaction(nft.build(st, CFG), CFG, existing_chains=["services", "service-OLD-ns/x/tcp/"],
                              existing_sets=["cluster-ips", "affinity-OLD-ns/x/tcp/__1.2.3.4/80"])
    lines = tx.splitlines()
    assert "delete table ip kube-proxy" not in lines
    assert "flush map ip kube-proxy service-ips" in lines
    assert "flush chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80" in lines
    assert lines[-3:] == ["flush chain ip kube-proxy service-OLD-ns/x/tcp/", "delete chain ip kube-proxy service-OLD-ns/x/tcp/",
                          "delete set ip kube-proxy affinity-OLD-ns/x/tcp/__1.2.3.4/80"]
    # flushes of base chains come before their fixed rules are re-added
    assert lines.index("flush chain ip kube-proxy services") < lines.index(
        "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips")


GOLDEN_NODEPORT = '''\
add chain ip kube-proxy endpoint-UC744OSB-ns1/svc2/tcp/p80__10.180.0.1/80
add chain ip kube-proxy service-QCIBCZ4I-ns1/svc2/tcp/p80
add chain ip kube-proxy external-QCIBCZ4I-ns1/svc2/tcp/p80
add rule ip kube-proxy endpoint-UC744OSB-ns1/svc2/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-UC744OSB-ns1/svc2/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80
add rule ip kube-proxy service-QCIBCZ4I-ns1/svc2/tcp/p80 ip daddr 172.30.0.42 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-QCIBCZ4I-ns1/svc2/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-UC744OSB-ns1/svc2/tcp/p80__10.180.0.1/80 }
add rule ip kube-proxy external-QCIBCZ4I-ns1/svc2/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-QCIBCZ4I-ns1/svc2/tcp/p80 goto service-QCIBCZ4I-ns1/svc2/tcp/p80
add element ip kube-proxy cluster-ips { 172.30.0.42 }
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add element ip kube-proxy service-ips { 172.30.0.42 . tcp . 80 : goto service-QCIBCZ4I-ns1/svc2/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3001 : goto external-QCIBCZ4I-ns1/svc2/tcp/p80 }
'''

GOLDEN_LB = '''\
add chain ip kube-proxy endpoint-OC4SXSTP-ns1/svc3/tcp/p80__10.180.0.1/80
add chain ip kube-proxy service-WP5PG6SI-ns1/svc3/tcp/p80
add chain ip kube-proxy external-WP5PG6SI-ns1/svc3/tcp/p80
add rule ip kube-proxy endpoint-OC4SXSTP-ns1/svc3/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-OC4SXSTP-ns1/svc3/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80
add rule ip kube-proxy service-WP5PG6SI-ns1/svc3/tcp/p80 ip daddr 172.30.0.43 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-WP5PG6SI-ns1/svc3/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-OC4SXSTP-ns1/svc3/tcp/p80__10.180.0.1/80 }
add rule ip kube-proxy external-WP5PG6SI-ns1/svc3/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-WP5PG6SI-ns1/svc3/tcp/p80 goto service-WP5PG6SI-ns1/svc3/tcp/p80
add element ip kube-proxy cluster-ips { 172.30.0.43 }
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add element ip kube-proxy service-ips { 172.30.0.43 . tcp . 80 : goto service-WP5PG6SI-ns1/svc3/tcp/p80 }
add element ip kube-proxy service-ips { 1.2.3.4 . tcp . 80 : goto external-WP5PG6SI-ns1/svc3/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3003 : goto external-WP5PG6SI-ns1/svc3/tcp/p80 }
'''

GOLDEN_AFFINITY = '''\
add set ip kube-proxy affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
add set ip kube-proxy affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 { type ipv4_addr ; flags dynamic,timeout ; timeout 10800s ; }
add chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
add chain ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 update @affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 { ip saddr }
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80
add rule ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 ip saddr 10.180.0.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 update @affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 { ip saddr }
add rule ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 meta l4proto tcp dnat to 10.180.0.2:80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip saddr @affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip saddr @affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 goto endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 , 1 : goto endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 }
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
'''

GOLDEN_NOEP = '''\
add element ip kube-proxy cluster-ips { 172.30.0.44 }
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add element ip kube-proxy no-endpoint-services { 172.30.0.44 . tcp . 80 : goto reject-chain }
'''

GOLDEN_LOCAL = '''\
add chain ip kube-proxy endpoint-DLIPODYR-ns1/svc5/tcp/p80__10.180.0.1/80
add chain ip kube-proxy endpoint-4UQGXHON-ns1/svc5/tcp/p80__10.180.1.1/80
add chain ip kube-proxy service-ZJ5FP4N2-ns1/svc5/tcp/p80
add chain ip kube-proxy local-ZJ5FP4N2-ns1/svc5/tcp/p80
add chain ip kube-proxy external-ZJ5FP4N2-ns1/svc5/tcp/p80
add rule ip kube-proxy endpoint-DLIPODYR-ns1/svc5/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-DLIPODYR-ns1/svc5/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80
add rule ip kube-proxy endpoint-4UQGXHON-ns1/svc5/tcp/p80__10.180.1.1/80 ip saddr 10.180.1.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-4UQGXHON-ns1/svc5/tcp/p80__10.180.1.1/80 meta l4proto tcp dnat to 10.180.1.1:80
add rule ip kube-proxy service-ZJ5FP4N2-ns1/svc5/tcp/p80 ip daddr 172.30.0.45 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
add rule ip kube-proxy service-ZJ5FP4N2-ns1/svc5/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-DLIPODYR-ns1/svc5/tcp/p80__10.180.0.1/80 , 1 : goto endpoint-4UQGXHON-ns1/svc5/tcp/p80__10.180.1.1/80 }
add rule ip kube-proxy local-ZJ5FP4N2-ns1/svc5/tcp/p80 numgen random mod 1 vmap { 0 : goto endpoint-DLIPODYR-ns1/svc5/tcp/p80__10.180.0.1/80 }
add rule ip kube-proxy external-ZJ5FP4N2-ns1/svc5/tcp/p80 ip saddr 10.0.0.0/8 goto service-ZJ5FP4N2-ns1/svc5/tcp/p80 comment "short-circuit pod traffic"
add rule ip kube-proxy external-ZJ5FP4N2-ns1/svc5/tcp/p80 fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
add rule ip kube-proxy external-ZJ5FP4N2-ns1/svc5/tcp/p80 fib saddr type local goto service-ZJ5FP4N2-ns1/svc5/tcp/p80 comment "short-circuit local traffic"
add rule ip kube-proxy external-ZJ5FP4N2-ns1/svc5/tcp/p80 goto local-ZJ5FP4N2-ns1/svc5/tcp/p80
add element ip kube-proxy cluster-ips { 172.30.0.45 }
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add element ip kube-proxy service-ips { 172.30.0.45 . tcp . 80 : goto service-ZJ5FP4N2-ns1/svc5/tcp/p80 }
add element ip kube-proxy service-ips { 5.6.7.8 . tcp . 80 : goto external-ZJ5FP4N2-ns1/svc5/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3005 : goto external-ZJ5FP4N2-ns1/svc5/tcp/p80 }
'''



def test_fragment_cache_gives_identical_rulesets() -> None:
    svcs = [h.service("ns1", f"s{i}", f"172.30.0.{i}", P80, affinity=60 if i % 2 else None) for i in range(1, 6)]
    st1 = _state(svcs, [_es(f"s{i}", [f"10.180.0.{i}", "10.180.1.1"]) for i in range(1, 6)])
    st2 = _state(svcs[:4], [_es(f"s{i}", [f"10.180.0.{i}"]) for i in range(1, 4)])
    cache: nft.FragmentCache = {}
    for st in (st1, st2, st1):
        assert nft.build(st, CFG, cache) == nft.build(st, CFG)


def _rules_by_chain(lines: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for ln in lines:
        if ln.startswith("add rule ip kube-proxy "):
            chain, rule = ln.removeprefix("add rule ip kube-proxy ").split(" ", 1)
            out.setdefault(chain, []).append(rule)
    return out


def _elements(lines: list[str]) -> set[tuple[str, str]]:
    """(set, element) pairs, whether written one per statement or many per statement."""
    out = set()
    for ln in lines:
        if ln.startswith("add element ip kube-proxy "):
            name, rest = ln.removeprefix("add element ip kube-proxy ").split(" ", 1)
            out |= {(name, e.strip()) for e in rest.strip("{} ").split(", ")}
    return out


def _world(n: int) -> nft.NftRuleset:
    svcs = [h.service("ns1", f"s{i}", f"172.30.0.{i}", P80, affinity=60 if i % 3 == 0 else None) for i in range(1, n + 1)]
    return nft.build(_state(svcs, [_es(f"s{i}", [f"10.180.0.{i}", f"10.180.1.{i}"]) for i in range(1, n + 1)]), CFG)


def test_full_transactions_same_content_as_one_transaction() -> None:
    rs = _world(7)
    one = nft.full_transaction(rs, CFG).splitlines()
    txs = nft.full_transactions(rs, CFG, chunk_chains=4)
    assert len(txs) == 2 + 7  # head, one per service (3 chains each > 4/2), elements
    many = "".join(txs).splitlines()
    assert _rules_by_chain(many) == _rules_by_chain(one)  # per-chain rule order kept
    assert _elements(many) == _elements(one)
    assert {ln for ln in many if not ln.startswith(("add rule", "add element"))} == \
           {ln for ln in one if not ln.startswith(("add rule", "add element"))}
    # step 1 creates every chain; the maps are filled only in the last step
    assert all(f"add chain ip kube-proxy {c}" in txs[0] for c in rs.chains)
    assert "add element" not in "".join(txs[:-1]) and "add rule" not in txs[-1]
    assert txs[-1].startswith("add element ip kube-proxy cluster-ips { 172.30.0.1, 172.30.0.2, ")


def test_full_transactions_never_split_a_service() -> None:
    rs = _world(6)
    for tx in nft.full_transactions(rs, CFG, chunk_chains=5)[1:-1]:
        chains = set(_rules_by_chain(tx.splitlines()))
        svcs = {c.split("-", 2)[2].split("__")[0] for c in chains}
        assert len(svcs) == 1, svcs
        # the service chain (anonymous vmap) is written before its endpoint chains
        first = tx.splitlines()[0].removeprefix("add rule ip kube-proxy ").split(" ", 1)[0]
        assert first.startswith("service-"), tx


def test_full_transactions_over_existing_table() -> None:
    rs = _world(2)
    txs = nft.full_transactions(rs, CFG, existing_chains=["services", "service-OLD-ns/x/tcp/"],
                                existing_sets=["cluster-ips", "affinity-OLD-ns/x/tcp/__1.2.3.4/80"])
    assert len(txs) == 3
    head, body, tail = (tx.splitlines() for tx in txs)
    assert "delete table ip kube-proxy" not in head and not any("flush map" in ln for ln in head)
    assert head.index("flush chain ip kube-proxy services") < head.index(
        "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips")
    # each rewritten chain is flushed in the same transaction that refills it
    assert {ln.removeprefix("flush chain ip kube-proxy ") for ln in body if ln.startswith("flush")} == set(rs.chains)
    assert tail[:2] == ["flush set ip kube-proxy cluster-ips", "flush set ip kube-proxy nodeport-ips"]
    assert tail[-3:] == ["flush chain ip kube-proxy service-OLD-ns/x/tcp/", "delete chain ip kube-proxy service-OLD-ns/x/tcp/",
                         "delete set ip kube-proxy affinity-OLD-ns/x/tcp/__1.2.3.4/80"]


def _lines(tx: str) -> list[str]:
    return sorted(tx.splitlines())


def test_partial_transaction_matches_whole_ruleset_diff() -> None:
    two_ports = [h.port(80, "p80"), h.port(443, "p443")]
    svcs = [h.service("ns1", "multi", "172.30.0.9", two_ports)] + \
           [h.service("ns1", f"s{i}", f"172.30.0.{i}", P80, affinity=60 if i == 3 else None) for i in range(1, 5)]

    def es(name: str, ips: list[str]) -> dict:
        return h.eslice("ns1", name, [h.endpoint(ip) for ip in ips], [{"name": "p80", "port": 80},
                                                                       {"name": "p443", "port": 443}])

    st1 = _state(svcs, [es("multi", ["10.180.9.1"])] + [es(f"s{i}", [f"10.180.0.{i}", "10.180.1.1"]) for i in range(1, 5)])
    # s1 loses an endpoint, s2 is deleted, s4 loses all endpoints, one port of "multi" goes away
    svcs2 = [h.service("ns1", "multi", "172.30.0.9", two_ports[:1]), svcs[1], svcs[3], svcs[4]]
    st2 = _state(svcs2, [es("multi", ["10.180.9.1"]), es("s1", ["10.180.0.1"]), es("s3", ["10.180.0.3", "10.180.1.1"])])
    cache: nft.FragmentCache = {}
    nft.build(st1, CFG, cache)
    prog = nft.Programmed.of(st1, CFG, cache)
    from servicenet.proxy.model import changed_services
    changed = changed_services(st1, st2)
    tx, prog2 = nft.partial_transaction(prog, st2, changed, CFG)
    assert _lines(tx) == _lines(nft.incremental_transaction(nft.build(st1, CFG), nft.build(st2, CFG), CFG))
    # the shared ClusterIP stays (one port of "multi" is left); s2's is removed
    assert "delete element ip kube-proxy cluster-ips { 172.30.0.9 }" not in tx
    assert "delete element ip kube-proxy cluster-ips { 172.30.0.2 }" in tx
    assert prog2.cluster_ips == {"172.30.0.9": 1, "172.30.0.1": 1, "172.30.0.3": 1, "172.30.0.4": 1}
    assert set(prog2.fragments) == set(st2.services)
    # nothing changed: nothing to send
    assert nft.partial_transaction(prog2, st2, set(), CFG)[0] == ""
    # and back again
    tx3, _ = nft.partial_transaction(prog2, st1, changed_services(st2, st1), CFG)
    assert _lines(tx3) == _lines(nft.incremental_transaction(nft.build(st2, CFG), nft.build(st1, CFG), CFG))
