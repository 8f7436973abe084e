"""Golden tests for the nftables renderer (literal ``nft -f`` transactions)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from servicenet.proxy import nft_skeleton
from servicenet.proxy import render_nftables as nft
from servicenet.proxy.model import changed_services, compute
from servicenet.proxy.nft_commands import DnatMap, PortKey, Target, Verdict, render

from . import helpers as h

CFG = nft.NftConfig(cluster_cidr="10.0.0.0/8")
P80 = h.P80
BASE_END = 'add rule ip kube-proxy cluster-ips-check ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"\n'


_es = h.es80


def _state(svcs: list[dict], slices: list[dict]):
    return compute(svcs, slices, "node1", ["192.168.0.2"])


def _service_part(tx: str) -> str:
    return tx.split(BASE_END)[1]


# Written by hand from the layout (module docstring of render_nftables): no per-endpoint chains
# without affinity; the endpoints sit in the shared endpoint map under the chain's key range;
# the ClusterIP masquerade check is one rule in "services"; hairpin pairs for every endpoint.
CLUSTERIP_3 = """\
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 meta l4proto tcp dnat ip addr . port to numgen random mod 3 offset 0 map @service-endpoints-0
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add element ip kube-proxy hairpin-connections { 10.180.0.1 . 10.180.0.1, 10.180.0.2 . 10.180.0.2, 10.180.0.3 . 10.180.0.3 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
add element ip kube-proxy service-endpoints-0 { 0 : 10.180.0.1 . 80, 1 : 10.180.0.2 . 80, 2 : 10.180.0.3 . 80 }
"""


def test_base_objects() -> None:
    base = nft_skeleton.base_objects(nft.NftConfig(nodeport_primary=False, service_cidrs=("172.30.0.0/16",)))
    assert base[0] == 'add table ip kube-proxy { comment "rules for kube-proxy" ; }'
    assert "add chain ip kube-proxy nat-prerouting { type nat hook prerouting priority -100 ; }" in base
    assert "add chain ip kube-proxy filter-prerouting-pre-dnat { type filter hook prerouting priority -110 ; }" in base
    assert ("add rule ip kube-proxy services fib daddr type local ip daddr != 127.0.0.0/8 "
            "meta l4proto . th dport vmap @service-nodeports") in base
    assert "add rule ip kube-proxy masquerading masquerade fully-random" in base
    assert not any("daddr @cluster-ips" in ln and "masquerade" in ln for ln in base)  # no cluster CIDR: no check
    with_cidr = nft_skeleton.base_objects(CFG)
    masq = "add rule ip kube-proxy services ip daddr @cluster-ips ip saddr != 10.0.0.0/8 jump mark-for-masquerade"
    assert with_cidr.index(masq) < with_cidr.index(
        "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips")
    assert ("add rule ip kube-proxy masquerading ct status dnat ip saddr . ip daddr @hairpin-connections "
            'jump mark-for-masquerade comment "hairpin"') in with_cidr
    assert base[-1] == ('add rule ip kube-proxy cluster-ips-check ip daddr { 172.30.0.0/16 } drop '
                        'comment "Drop traffic to unallocated ClusterIPs"')
    assert not any("nodeport-ips" in ln for ln in base)


def test_clusterip_three_endpoints() -> None:
    st = _state([h.service("ns1", "svc1", "172.30.0.41", P80)], [_es("svc1", ["10.180.0.2", "10.180.0.3", "10.180.0.1"])])
    tx = nft.full_transaction(nft.build(st, CFG), CFG)
    assert tx.startswith("add table ip kube-proxy\ndelete table ip kube-proxy\n")
    assert _service_part(tx) == CLUSTERIP_3


@pytest.mark.parametrize("name, svcs, slices", h.GOLDEN_CASES)
def test_golden(name: str, svcs: list[dict], slices: list[dict]) -> None:
    tx = nft.full_transaction(nft.build(_state(svcs, slices), CFG), CFG)
    assert _service_part(tx) == globals()[f"GOLDEN_{name}"]


def test_local_policy_without_local_endpoints_drops_external() -> None:
    st = _state([h.service("ns1", "svc7", "172.30.0.47", [h.port(80, "p80", node_port=3007)], type_="NodePort",
                           etp="Local")], [_es("svc7", ["10.180.1.1"], node="node2")])
    rs = nft.build(st, CFG)
    assert rs.maps["no-endpoint-nodeports"] == {PortKey(None, "tcp", 3007): Verdict("drop")}
    to = rs.maps["service-nodeports"][PortKey(None, "tcp", 3007)]
    assert isinstance(to, Verdict) and to.code == "goto" and (to.chain or "").startswith("external-")


def test_incremental_endpoint_removal() -> None:
    svcs = [h.service("ns1", "svc1", "172.30.0.41", P80), h.service("ns1", "svc2", "172.30.0.42", P80)]
    old = nft.build(_state(svcs, [_es("svc1", ["10.180.0.1", "10.180.0.2"]), _es("svc2", ["10.180.0.9"])]), CFG)
    new = nft.build(_state(svcs, [_es("svc1", ["10.180.0.1"]), _es("svc2", ["10.180.0.9"])]), CFG)
    assert nft.incremental_transaction(old, old, CFG) == []
    assert render(nft.incremental_transaction(old, new, CFG)) == """\
flush chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 meta l4proto tcp dnat to 10.180.0.1:80
delete element ip kube-proxy hairpin-connections { 10.180.0.2 . 10.180.0.2 }
delete element ip kube-proxy service-endpoints-0 { 0 }
delete element ip kube-proxy service-endpoints-0 { 1 }
"""


def test_incremental_service_loses_all_endpoints() -> None:
    svcs = [h.service("ns1", "svc1", "172.30.0.41", P80)]
    old = nft.build(_state(svcs, [_es("svc1", ["10.180.0.1"])]), CFG)
    new = nft.build(_state(svcs, []), CFG)
    assert render(nft.incremental_transaction(old, new, CFG)) == """\
delete element ip kube-proxy hairpin-connections { 10.180.0.1 . 10.180.0.1 }
delete element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 }
add element ip kube-proxy no-endpoint-services { 172.30.0.41 . tcp . 80 : goto reject-chain }
flush chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
delete chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
"""


def test_endpoint_ranges_are_kept_and_reused() -> None:
    blocks = nft.Blocks()
    assert blocks.fit("a", 3) == 0 and blocks.fit("b", 2) == 4  # a: [0, 4), b: [4, 6)
    assert blocks.fit("a", 4) == 0  # still fits its power-of-two range
    assert blocks.fit("a", 5) == 6  # grows: a new range of 8; [0, 4) is free again
    assert blocks.fit("c", 3) == 0 and blocks.fit("d", 1) == 14
    blocks.release("b")
    assert blocks.fit("e", 2) == 4 and not blocks.holds("b", 4) and blocks.holds("e", 4)
    sharded = nft.Blocks(8)
    assert sharded.map_for("service-X") == sharded.map_for("service-X") in sharded.maps
    assert len({sharded.map_for(f"service-{i}") for i in range(200)}) == 8


def test_shards_grow_with_the_square_root_of_the_endpoints() -> None:
    def world(n: int, eps: int):
        svcs = [h.service("ns1", f"s{i}", f"172.30.{i // 250}.{i % 250 + 1}", P80) for i in range(n)]
        return _state(svcs, [_es(f"s{i}", [f"10.{180 + j}.{i // 250}.{i % 250}" for j in range(eps)]) for i in range(n)])
    assert nft.shards_for(world(5, 3)) == 1
    assert nft.shards_for(world(200, 10)) == 32  # sqrt(2 x 2000) = 63 -> 32
    rs = nft.build(world(200, 10), CFG, blocks=nft.Blocks(32))
    assert len(rs.endpoint_maps) == 32 and sum(len(rs.maps[m]) for m in rs.endpoint_maps) == 2000


def test_incremental_affinity_timeout_change_needs_full_sync() -> None:
    eps = [_es("svc1", ["10.180.0.1"])]
    old = nft.build(_state([h.service("ns1", "svc1", "172.30.0.41", P80, affinity=100)], eps), CFG)
    new = nft.build(_state([h.service("ns1", "svc1", "172.30.0.41", P80, affinity=200)], eps), CFG)
    with pytest.raises(nft.NeedFullSync):
        nft.incremental_transaction(old, new, CFG)


def test_full_sync_over_existing_table_flushes_and_deletes_stale() -> None:
    st = _state([h.service("ns1", "svc1", "172.30.0.41", P80)], [_es("svc1", ["10.180.0.1", "10.180.0.2"])])
    tx = nft.full_transaction(nft.build(st, CFG), CFG, existing_chains=["services", "service-OLD-ns/x/tcp/"],
                              existing_sets=["cluster-ips", "affinity-OLD-ns/x/tcp/__1.2.3.4/80",
                                             "service-endpoints-0", "service-endpoints-7"])
    lines = tx.splitlines()
    assert "delete table ip kube-proxy" not in lines
    assert {"flush map ip kube-proxy service-ips", "flush map ip kube-proxy service-endpoints-0",
            "flush set ip kube-proxy hairpin-connections"} <= set(lines)
    assert "add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80" in lines
    assert lines[-4:] == ["flush chain ip kube-proxy service-OLD-ns/x/tcp/", "delete chain ip kube-proxy service-OLD-ns/x/tcp/",
                          "delete set ip kube-proxy affinity-OLD-ns/x/tcp/__1.2.3.4/80",
                          "delete map ip kube-proxy service-endpoints-7"]
    # flushes of base chains come before their fixed rules are re-added
    assert lines.index("flush chain ip kube-proxy services") < lines.index(
        "add rule ip kube-proxy services ip daddr . meta l4proto . th dport vmap @service-ips")
    # the endpoint map is filled after the rule that reads it (cheaper for the kernel)
    rule = next(i for i, ln in enumerate(lines) if "map @service-endpoints-0" in ln)
    assert rule < lines.index("add element ip kube-proxy service-endpoints-0 { 0 : 10.180.0.1 . 80, 1 : 10.180.0.2 . 80 }")


GOLDEN_NODEPORT = '''\
add chain ip kube-proxy service-QCIBCZ4I-ns1/svc2/tcp/p80
add chain ip kube-proxy external-QCIBCZ4I-ns1/svc2/tcp/p80
add rule ip kube-proxy service-QCIBCZ4I-ns1/svc2/tcp/p80 meta l4proto tcp dnat to 10.180.0.1:80
add rule ip kube-proxy external-QCIBCZ4I-ns1/svc2/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-QCIBCZ4I-ns1/svc2/tcp/p80 goto service-QCIBCZ4I-ns1/svc2/tcp/p80
add element ip kube-proxy cluster-ips { 172.30.0.42 }
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add element ip kube-proxy hairpin-connections { 10.180.0.1 . 10.180.0.1 }
add element ip kube-proxy service-ips { 172.30.0.42 . tcp . 80 : goto service-QCIBCZ4I-ns1/svc2/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3001 : goto external-QCIBCZ4I-ns1/svc2/tcp/p80 }
'''

GOLDEN_LB = '''\
add chain ip kube-proxy service-WP5PG6SI-ns1/svc3/tcp/p80
add chain ip kube-proxy external-WP5PG6SI-ns1/svc3/tcp/p80
add rule ip kube-proxy service-WP5PG6SI-ns1/svc3/tcp/p80 meta l4proto tcp dnat to 10.180.0.1:80
add rule ip kube-proxy external-WP5PG6SI-ns1/svc3/tcp/p80 jump mark-for-masquerade
add rule ip kube-proxy external-WP5PG6SI-ns1/svc3/tcp/p80 goto service-WP5PG6SI-ns1/svc3/tcp/p80
add element ip kube-proxy cluster-ips { 172.30.0.43 }
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add element ip kube-proxy hairpin-connections { 10.180.0.1 . 10.180.0.1 }
add element ip kube-proxy service-ips { 172.30.0.43 . tcp . 80 : goto service-WP5PG6SI-ns1/svc3/tcp/p80, 1.2.3.4 . tcp . 80 : goto external-WP5PG6SI-ns1/svc3/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3003 : goto external-WP5PG6SI-ns1/svc3/tcp/p80 }
'''

# affinity keeps upstream's GA layout (its sets are declared with the skeleton, before the fixed rules)
GOLDEN_AFFINITY = '''\
add chain ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
add chain ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
add chain ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 ip saddr 10.180.0.1 jump mark-for-masquerade
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 update @affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 { ip saddr }
add rule ip kube-proxy endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 meta l4proto tcp dnat to 10.180.0.1:80
add rule ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 ip saddr 10.180.0.2 jump mark-for-masquerade
add rule ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 update @affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 { ip saddr }
add rule ip kube-proxy endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 meta l4proto tcp dnat to 10.180.0.2:80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip saddr @affinity-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 ip saddr @affinity-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 goto endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80
add rule ip kube-proxy service-ULMVA6XW-ns1/svc1/tcp/p80 numgen random mod 2 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 , 1 : goto endpoint-2ZNDXFAB-ns1/svc1/tcp/p80__10.180.0.2/80 }
add element ip kube-proxy cluster-ips { 172.30.0.41 }
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add element ip kube-proxy hairpin-connections { 10.180.0.1 . 10.180.0.1, 10.180.0.2 . 10.180.0.2 }
add element ip kube-proxy service-ips { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
'''

GOLDEN_NOEP = '''\
add element ip kube-proxy cluster-ips { 172.30.0.44 }
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add element ip kube-proxy no-endpoint-services { 172.30.0.44 . tcp . 80 : goto reject-chain }
'''

# eTP=Local: the cluster chain picks from both endpoints (map), the local chain has one (direct DNAT)
GOLDEN_LOCAL = '''\
add chain ip kube-proxy service-ZJ5FP4N2-ns1/svc5/tcp/p80
add chain ip kube-proxy local-ZJ5FP4N2-ns1/svc5/tcp/p80
add chain ip kube-proxy external-ZJ5FP4N2-ns1/svc5/tcp/p80
add rule ip kube-proxy service-ZJ5FP4N2-ns1/svc5/tcp/p80 meta l4proto tcp dnat ip addr . port to numgen random mod 2 offset 0 map @service-endpoints-0
add rule ip kube-proxy local-ZJ5FP4N2-ns1/svc5/tcp/p80 meta l4proto tcp dnat to 10.180.0.1:80
add rule ip kube-proxy external-ZJ5FP4N2-ns1/svc5/tcp/p80 ip saddr 10.0.0.0/8 goto service-ZJ5FP4N2-ns1/svc5/tcp/p80 comment "short-circuit pod traffic"
add rule ip kube-proxy external-ZJ5FP4N2-ns1/svc5/tcp/p80 fib saddr type local jump mark-for-masquerade comment "masquerade local traffic"
add rule ip kube-proxy external-ZJ5FP4N2-ns1/svc5/tcp/p80 fib saddr type local goto service-ZJ5FP4N2-ns1/svc5/tcp/p80 comment "short-circuit local traffic"
add rule ip kube-proxy external-ZJ5FP4N2-ns1/svc5/tcp/p80 goto local-ZJ5FP4N2-ns1/svc5/tcp/p80
add element ip kube-proxy cluster-ips { 172.30.0.45 }
add element ip kube-proxy nodeport-ips { 192.168.0.2 }
add element ip kube-proxy hairpin-connections { 10.180.0.1 . 10.180.0.1, 10.180.1.1 . 10.180.1.1 }
add element ip kube-proxy service-ips { 172.30.0.45 . tcp . 80 : goto service-ZJ5FP4N2-ns1/svc5/tcp/p80, 5.6.7.8 . tcp . 80 : goto external-ZJ5FP4N2-ns1/svc5/tcp/p80 }
add element ip kube-proxy service-nodeports { tcp . 3005 : goto external-ZJ5FP4N2-ns1/svc5/tcp/p80 }
add element ip kube-proxy service-endpoints-0 { 0 : 10.180.0.1 . 80, 1 : 10.180.1.1 . 80 }
'''


def test_fragment_cache_gives_identical_rulesets() -> None:
    svcs = [h.service("ns1", f"s{i}", f"172.30.0.{i}", P80, affinity=60 if i % 2 else None) for i in range(1, 6)]
    st1 = _state(svcs, [_es(f"s{i}", [f"10.180.0.{i}", "10.180.1.1"]) for i in range(1, 6)])
    st2 = _state(svcs[:4], [_es(f"s{i}", [f"10.180.0.{i}"]) for i in range(1, 4)])
    cache: nft.FragmentCache = {}
    blocks = nft.Blocks()
    for st in (st1, st2, st1):  # key ranges may differ (reused ones); what each chain picks from may not
        assert _resolved(nft.build(st, CFG, cache, blocks)) == _resolved(nft.build(st, CFG))


def _resolved(rs: nft.NftRuleset) -> nft.NftRuleset:
    """``rs`` with each "numgen ... offset B map @M" replaced by the endpoints it picks from."""
    chains: dict[str, tuple[object, ...]] = {}
    for c, rules in rs.chains.items():
        out: list[object] = []
        for r in rules:
            last = r.exprs[-1]
            if isinstance(last, DnatMap):
                emap = rs.maps[last.map]
                out.append((r.exprs[:-1], tuple(emap[k] for k in range(last.offset, last.offset + last.mod))))
            else:
                out.append(r)
        chains[c] = tuple(out)
    maps = {m: v for m, v in rs.maps.items() if not m.startswith("service-endpoints-")}
    return nft.NftRuleset(chains, rs.affinity_sets, maps, rs.sets, rs.endpoint_maps)  # type: ignore[arg-type]


def test_bulk_is_the_same_content_as_the_text() -> None:
    svcs = [h.service("ns1", f"s{i}", f"172.30.0.{i}", P80, affinity=60 if i == 3 else None) for i in range(1, 6)]
    st = _state(svcs, [_es(f"s{i}", [f"10.180.0.{i}", "10.180.1.1", f"10.180.2.{i}"][:i]) for i in range(1, 6)])
    full = nft.build(st, CFG, blocks=nft.Blocks(2))
    lean = nft.build(st, CFG, blocks=nft.Blocks(2), endpoints=False)
    emaps, hairpin = lean.bulk()
    from_bulk = {m: {k: Target(ep.ip, ep.port) for base, eps in runs for k, ep in enumerate(eps, base)}
                 for m, runs in emaps.items()}
    assert from_bulk == {m: dict(full.maps[m]) for m in full.endpoint_maps if full.maps.get(m)}
    assert hairpin == full.sets["hairpin-connections"] == {"10.180.0.1", "10.180.0.2", "10.180.0.3", "10.180.0.4",
                                                            "10.180.0.5", "10.180.1.1", "10.180.2.3", "10.180.2.4",
                                                            "10.180.2.5"}
    text = render(nft.content_transaction(full, CFG))
    lean_text = render(nft.content_transaction(lean, CFG, bulk=False))
    bulk_lines = ("add element ip kube-proxy service-endpoints-", "add element ip kube-proxy hairpin-connections ")
    assert sum(ln.startswith(bulk_lines) for ln in text.splitlines()) == 3  # two endpoint maps, the hairpin set
    assert [ln for ln in text.splitlines() if not ln.startswith(bulk_lines)] == lean_text.splitlines()


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
    blocks, cache = nft.Blocks(), {}
    rs1 = nft.build(st1, CFG, cache, blocks)
    prog = nft.Programmed.of(st1, CFG, cache)
    changed = changed_services(st1, st2)
    cmds, prog2 = nft.partial_transaction(prog, st2, changed, CFG, blocks)
    tx = render(cmds)
    rs2 = nft.build(st2, CFG, dict(prog2.fragments), blocks)  # every fragment current: nothing re-rendered
    assert _lines(tx) == _lines(render(nft.incremental_transaction(rs1, rs2, CFG)))
    assert rs2 == nft.build(st2, CFG, blocks=nft.Blocks())  # s2 gave back its range; s1 keeps none
    # the shared ClusterIP stays (one port of "multi" is left); s2's is removed; 10.180.1.1 still backs s3
    assert "delete element ip kube-proxy cluster-ips { 172.30.0.9 }" not in tx
    assert "delete element ip kube-proxy cluster-ips { 172.30.0.2 }" in tx
    assert "delete element ip kube-proxy hairpin-connections { 10.180.0.2 . 10.180.0.2 }" in tx
    assert "hairpin-connections { 10.180.1.1 . 10.180.1.1 }" not in tx
    assert prog2.cluster_ips == {"172.30.0.9": 1, "172.30.0.1": 1, "172.30.0.3": 1, "172.30.0.4": 1}
    assert prog2.refs["hairpin-connections"]["10.180.1.1"] == 1
    assert set(prog2.fragments) == set(st2.services)
    # nothing changed: nothing to send
    assert nft.partial_transaction(prog2, st2, set(), CFG, blocks)[0] == []
    # and back again
    cmds3, prog3 = nft.partial_transaction(prog2, st1, changed_services(st2, st1), CFG, blocks)
    rs3 = nft.build(st1, CFG, dict(prog3.fragments), blocks)
    assert _lines(render(cmds3)) == _lines(render(nft.incremental_transaction(rs2, rs3, CFG)))


def test_build_returns_the_previous_ruleset_made_of_the_same_fragments() -> None:
    svcs = [h.service("ns1", f"s{i}", f"172.30.0.{i}", P80) for i in range(1, 4)]
    st = _state(svcs, [_es(f"s{i}", [f"10.180.0.{i}", "10.180.1.1"]) for i in range(1, 4)])
    cache: nft.FragmentCache = {}
    blocks = nft.Blocks()
    lean = nft.build(st, CFG, cache, blocks, endpoints=False)
    assert nft.build(st, CFG, cache, blocks, endpoints=False, previous=lean) is lean
    # made with the endpoint map elements, or of other fragments: assembled afresh (and equal to a fresh build)
    full = nft.build(st, CFG, cache, blocks, previous=lean)
    assert full is not lean and full == nft.build(st, CFG, dict(cache), blocks)
    st2 = _state(svcs, [_es(f"s{i}", [f"10.180.0.{i}"]) for i in range(1, 4)])
    again = nft.build(st2, CFG, cache, blocks, endpoints=False, previous=lean)
    assert again is not lean and again == nft.build(st2, CFG, blocks=nft.Blocks(), endpoints=False)
    # the node's addresses are part of the ruleset where NodePorts listen on them only
    primary = replace(CFG, nodeport_primary=True)
    cache, blocks = {}, nft.Blocks()
    lean = nft.build(st, primary, cache, blocks, endpoints=False)
    moved = replace(st, node_ips=("192.168.0.9",))
    moved_rs = nft.build(moved, primary, cache, blocks, endpoints=False, previous=lean)
    assert moved_rs is not lean and moved_rs.sets["nodeport-ips"] == {"192.168.0.9"}
    assert nft.build(moved, primary, cache, blocks, endpoints=False, previous=moved_rs) is moved_rs
