"""Resync over a populated nftables table: the table is dumped, compared with what is wanted,
and only the repairs are sent (:mod:`nft_resync`, :mod:`nft_live`).

Root tests tamper with the kernel's table in every way a resync must repair and check that
the table ends up exactly as the proxy wrote it (``nft -j list table``, handles aside), and
that a resync over an intact table commits nothing (the ruleset generation stays put)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from servicenet.proxy import nft_encode, nft_live, nft_resync
from servicenet.proxy import render_nftables as nft
from servicenet.proxy.model import compute
from servicenet.proxy.nft_commands import L4, AddElements, DnatMap, Rule, Target
from servicenet.proxy.nft_encode import _Ctx, dnat_map_parts, encoded_elements, strip_nested
from servicenet.proxy.nft_live import kernel_elements
from servicenet.proxy.nft_socket import NetlinkSession
from servicenet.proxy.sync import NftablesBackend

from . import helpers as h

CFG = nft.NftConfig(cluster_cidr="10.0.0.0/8", service_cidrs=("172.30.0.0/16",))


def _world(n: int, *, affinity: bool = True, extra_eps: int = 0) -> Any:
    """n services: 1-4 endpoints (a direct DNAT or a numgen map read), a NodePort, an eTP=Local
    LoadBalancer (fib rules, comments), and with ``affinity`` some ClientIP-affinity services
    (endpoint chains, affinity sets, an anonymous verdict map)."""
    svcs, slices = h.big_world_objects(n, affinity=affinity, extra_eps=extra_eps)
    return compute(svcs, slices, "node1", ["192.168.0.2"])


# --- pure ----------------------------------------------------------------------------------------

def test_kernel_elements_are_the_encoded_elements_without_nested_flags() -> None:
    cases: list[tuple[tuple[Any, ...], tuple[Any, ...] | None]] = [
        ((7, 8), (Target("10.0.0.1", 80), Target("10.0.0.2", 8080))),
        (("10.0.0.1", "10.0.0.2"), None),
    ]
    for keys, values in cases:
        ours = encoded_elements(_Ctx("ip", "t"), keys, values)
        assert kernel_elements("ip", keys, values) == [strip_nested(e) for e in ours]
        assert kernel_elements("ip", keys, values) != ours  # (the flags were there)


def test_split_elements_cuts_at_the_stride_only_when_every_piece_is_known() -> None:
    a = kernel_elements("ip", ("10.0.0.1", "10.0.0.2"), None)
    blob = b"".join(a)
    assert nft_live.split_elements([blob], set(a)) == a
    assert nft_live.split_elements([blob]) == a  # (walked)
    b = kernel_elements("ip", (1,), (Target("10.0.0.1", 80),))
    mixed = blob + b[0]  # elements of two sizes: the walk
    assert nft_live.split_elements([mixed], set(a)) == [*a, b[0]]


def test_element_set_is_what_the_split_finds() -> None:
    a = kernel_elements("ip", ("10.0.0.1", "10.0.0.2", "10.0.0.3"), None)
    b = kernel_elements("ip", (1,), (Target("10.0.0.1", 80),))
    blob = b"".join(a)
    cases: list[tuple[list[bytes], set[bytes]]] = [
        ([blob], set(a)),  # exactly the wanted: cut and compared
        ([blob[: 2 * len(a[0])], a[2]], set(a)),  # over two messages
        ([blob], set(a[:2])),  # a stray element (the cuts are not all known): walked
        ([blob + b[0]], set(a)),  # elements of two sizes in one message: walked
        ([b[0] + b[0][:8] + b[0][:8]], {b[0]}),  # cut pieces that are not elements
        ([b"", blob], set()),
    ]
    for blobs, probe in cases:
        assert nft_live.element_set(blobs, probe) == set(nft_live.split_elements(blobs, probe)) == \
            set(nft_live.split_elements(blobs))


def test_wanted_elements_are_made_once_per_ruleset_and_seeded_by_a_cold_start() -> None:
    state = _world(6, affinity=False)
    blocks = nft.Blocks(2)
    rs = nft.build(state, CFG, {}, blocks, endpoints=False)
    fresh = nft_resync.WantedElements()
    want = fresh.of(rs, "ip")
    assert fresh.of(rs, "ip") is want  # (asked again for the same ruleset: made once)
    # the bulk elements as a cold start sends them, kept in the dump's form, seed another one
    runs, hairpin = rs.bulk()
    kept: dict[str, list[bytes]] = {}
    order = sorted(hairpin, reverse=True)  # (any order: the seed keeps it)
    msgs = nft_encode.bulk_messages("ip", "kube-proxy", runs, nft.HAIRPIN_SET, order, kept)
    assert msgs and set(kept) == {*runs, nft.HAIRPIN_SET}
    seeded = nft_resync.WantedElements()
    seeded.seed(rs, kept, order)
    got = seeded.of(rs, "ip")
    assert got.keys() == want.keys()
    for name, (elems, elem_set, pick, is_map) in got.items():
        assert elem_set == want[name][1] and is_map == want[name][3]
        if name == nft.HAIRPIN_SET:
            assert elems == kept[name]
        # whatever the order, a position picks the key of the element at that position
        idx = list(range(len(elems)))
        assert kernel_elements("ip", pick(idx).keys, pick(idx).values) == elems
    # and a resync over a dump of exactly those elements repairs nothing
    live = nft_live.LiveTable(chains=set(rs.chains), sets={s: 0 for s in nft_resync.element_sets(CFG, rs.endpoint_maps)})
    m = nft_live.RuleMatcher()
    for c, rules in rs.chains.items():
        enc = [m._encoded(r) for r in rules]
        live.rules[c] = [(b"".join(strip_nested(x) for x in e[0]), e[1]) for e in enc if e is not None]
    for name, (elems, _, _, _) in got.items():
        live.elements[name] = [b"".join(elems)] if elems else []
    assert nft_resync.repair_transaction(live, rs, CFG, m, seeded) == []


def test_element_keys_read_back() -> None:
    e = kernel_elements("ip", (42,), (Target("10.0.0.1", 80),))[0]
    assert nft_live.element_key(e, "service-endpoints-3", "ip") == 42
    e = kernel_elements("ip", ("10.1.2.3",), None)[0]
    assert nft_live.element_key(e, "cluster-ips", "ip") == "10.1.2.3"
    assert nft_live.element_key(e, "service-ips", "ip") is None  # not that layout


def test_a_rule_is_not_the_same_as_another() -> None:
    m = nft_live.RuleMatcher()
    r1 = Rule((L4["tcp"], DnatMap(3, 8, "service-endpoints-0")))
    r2 = Rule((L4["tcp"], DnatMap(3, 16, "service-endpoints-0")))
    enc = m._encoded(r1)
    assert enc is not None
    ours = (b"".join(strip_nested(e) for e in enc[0]), enc[1])
    assert m.same([ours], [r1]) and not m.same([ours], [r2]) and not m.same([ours, ours], [r1])


def test_an_intact_dump_needs_no_repairs_and_drift_is_repaired() -> None:
    """The diff itself, on a 'dump' made of the wanted elements: nothing; then a stray and a
    missing element."""
    state = _world(6, affinity=False)
    rs = nft.build(state, CFG, {}, nft.Blocks(), endpoints=False)
    live = nft_live.LiveTable(chains=set(rs.chains), sets={s: 0 for s in nft_resync.element_sets(CFG, rs.endpoint_maps)})
    m = nft_live.RuleMatcher()
    for c, rules in rs.chains.items():
        enc = [m._encoded(r) for r in rules]
        live.rules[c] = [(b"".join(strip_nested(x) for x in e[0]), e[1]) for e in enc if e is not None]
    wanted = nft_resync.WantedElements().of(rs, "ip")
    for name, (want, _, _, _) in wanted.items():
        live.elements[name] = [b"".join(want)] if want else []
    assert nft_resync.repair_transaction(live, rs, CFG, m) == []
    live.elements["cluster-ips"] = [live.elements["cluster-ips"][0] + kernel_elements("ip", ("172.30.9.9",), None)[0]]
    emap = rs.endpoint_maps[0]
    first = live.elements[emap][0]
    live.elements[emap] = [first[32:]]  # one endpoint element gone
    tx = nft_resync.repair_transaction(live, rs, CFG, m)
    assert [type(c).__name__ for c in tx] == ["DeleteElements", "AddElements"]
    assert tx[0].keys == ("172.30.9.9",) and isinstance(tx[1], AddElements) and len(tx[1].keys) == 1


# --- kernel --------------------------------------------------------------------------------------

def _sh(*argv: str, stdin: str | None = None) -> str:
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"{' '.join(argv)}: {p.stderr}"
    return p.stdout


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("kernel tests need root in CI")
        pytest.skip("needs root")
    name = f"sn-{uuid.uuid4().hex[:6]}-rs"
    _sh("ip", "netns", "add", name)
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def _nft(ns: str, text: str) -> None:
    _sh("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=text)


def _table(ns: str) -> list[Any]:
    """``nft -j list table`` without handles, set elements sorted, anonymous map names blanked."""
    out = json.loads(_sh("ip", "netns", "exec", ns, "nft", "-j", "list", "table", "ip", "kube-proxy"))

    def norm(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: norm(v) for k, v in x.items() if k != "handle"}
        if isinstance(x, list):
            return [norm(v) for v in x]
        return x

    items = norm(out["nftables"])
    for it in items:
        body = it.get("set") or it.get("map")
        if body and "elem" in body:
            body["elem"] = sorted(body["elem"], key=lambda e: json.dumps(e, sort_keys=True))
    return sorted(items, key=lambda e: json.dumps(e, sort_keys=True))


def _generation(backend: NftablesBackend) -> int:
    return backend._open_session().generation()


def _service_chain(ns: str, svc: str, kind: str = "service") -> str:
    listing = _sh("ip", "netns", "exec", ns, "nft", "list", "table", "ip", "kube-proxy")
    return next(ln.split()[1] for ln in listing.splitlines()
                if ln.strip().startswith(f"chain {kind}-") and f"/{svc}/" in ln)


def _last_handle(ns: str, chain: str) -> int:
    listing = _sh("ip", "netns", "exec", ns, "nft", "-a", "list", "chain", "ip", "kube-proxy", chain)
    return [int(ln.rsplit("# handle ", 1)[1]) for ln in listing.splitlines() if "# handle" in ln][-1]


@pytest.mark.root
async def test_a_resync_over_an_intact_table_commits_nothing(netns: str) -> None:
    world = _world(40)
    b = NftablesBackend(netns, CFG)
    await b.apply(world, None)  # cold start
    before = _table(netns)
    gen = _generation(b)
    for _ in range(2):
        r = await b.apply(world, None)
        assert r.full and b.last_repairs == 0 and r.bytes == 0
        assert _generation(b) == gen  # no transaction at all, not even the skeleton's
    assert _table(netns) == before
    # a fresh backend (a restarted proxy) finds the same table intact too
    again = NftablesBackend(netns, CFG)
    await again.apply(world, None)
    assert again.last_repairs == 0 and _table(netns) == before


@pytest.mark.root
def test_the_table_is_asked_for_without_a_dump(netns: str) -> None:
    session = NetlinkSession(netns)
    try:
        assert not session.has_table("ip", "kube-proxy")
        _nft(netns, "add table ip kube-proxy\n")
        assert session.has_table("ip", "kube-proxy") and not session.has_table("ip6", "kube-proxy")
        assert session.generation() > 0  # (the socket goes on answering in order)
    finally:
        session.close()


@pytest.mark.root
async def test_a_resync_repairs_every_kind_of_drift(netns: str) -> None:
    world = _world(40)
    b = NftablesBackend(netns, CFG)
    await b.apply(world, None)
    await b.apply(world, None)
    want = _table(netns)
    t = "ip kube-proxy"
    s5, s6, s7 = _service_chain(netns, "s5"), _service_chain(netns, "s6"), _service_chain(netns, "s7")
    emap = next(m for m in b._blocks.maps)  # type: ignore[union-attr]
    ep11, ext3 = _service_chain(netns, "s11", "endpoint"), _service_chain(netns, "s3", "external")
    _nft(netns, "\n".join([
        f"delete rule {t} {ep11} handle {_last_handle(netns, ep11)}",  # the last of a chain's 3 rules
        f"delete rule {t} {ext3} handle {_last_handle(netns, ext3)}",  # (a rule with a comment)
        f'add rule {t} {ext3} fib saddr type local jump mark-for-masquerade comment "other"',
        f"delete element {t} service-ips {{ 172.30.1.6 . tcp . 80 }}",  # s5: its dispatch element and its chain
        f"flush chain {t} {s5}", f"delete chain {t} {s5}",
        f"flush chain {t} {s6}",  # s6: its rule
        f"flush chain {t} {s7}", f"add rule {t} {s7} meta l4proto tcp dnat to 10.9.9.9:80",  # s7: another rule
        f"add element {t} cluster-ips {{ 172.30.200.1 }}",  # stray elements
        f"add element {t} hairpin-connections {{ 10.9.9.9 . 10.9.9.9 }}",
        f"add element {t} {emap} {{ 4000 : 10.9.9.9 . 80 }}",
        f"add chain {t} service-AAAAAAAA-ns1/gone/tcp/http",  # a stale service chain
        f"add rule {t} service-AAAAAAAA-ns1/gone/tcp/http meta l4proto tcp dnat to 10.9.9.9:80",
        f"flush chain {t} services",  # a fixed chain
    ]) + "\n")
    # an endpoint map element gone and one changed (same key, another endpoint)
    listing = json.loads(_sh("ip", "netns", "exec", netns, "nft", "-j", "list", "map", "ip", "kube-proxy", emap))
    keys = [e[0] for it in listing["nftables"] if "map" in it for e in it["map"].get("elem", [])]
    assert len(keys) >= 2
    _nft(netns, f"delete element {t} {emap} {{ {keys[0]} }}\n"
                f"delete element {t} {emap} {{ {keys[1]} }}\nadd element {t} {emap} {{ {keys[1]} : 10.9.9.8 . 81 }}\n")
    assert _table(netns) != want
    await b.apply(world, None)
    assert b.last_repairs > 0
    assert _table(netns) == want
    await b.apply(world, None)  # and nothing is left to repair
    assert b.last_repairs == 0


@pytest.mark.root
async def test_a_resync_follows_a_changed_world_like_a_full_rewrite(netns: str) -> None:
    """More endpoints (a new sharding of the endpoint maps), fewer services, affinity gone: the
    repaired table equals a text full sync of the new world into a fresh table."""
    small, big = _world(30), _world(60, affinity=False, extra_eps=3)
    b = NftablesBackend(netns, CFG)
    await b.apply(small, None)
    assert nft.shards_for(big) != nft.shards_for(small)
    await b.apply(big, None)
    assert b.last_repairs > 0
    got = _table(netns)
    ref = f"sn-{uuid.uuid4().hex[:6]}-rf"
    _sh("ip", "netns", "add", ref)
    try:
        text = NftablesBackend(ref, CFG, netlink=False)
        await text.apply(big, None)
        assert got == _table(ref)
    finally:
        subprocess.run(["ip", "netns", "del", ref], check=False)


def test_the_flat_numgen_of_a_dnat_map_is_the_encoded_one_without_nested_flags() -> None:
    for e in (DnatMap(9, 123456, "service-endpoints-3"), DnatMap(2, 0, "m"), DnatMap(1 << 20, 0xFFFFFFF0, "x")):
        nested, flat = dnat_map_parts("ip", e), dnat_map_parts("ip", e, nested=False)
        assert flat[0] == strip_nested(nested[0]) != nested[0] and flat[1:] == nested[1:]


@pytest.mark.root
async def test_loadbalancer_source_ranges_are_rewritten_through_nft_and_stay_the_same(netns: str) -> None:
    """The firewall chain's anonymous interval set is left to nft: a resync cannot compare that
    rule, rewrites its chain (through ``nft -f``) and leaves the table as it was."""
    fw = h.service("ns1", "fw", "172.30.2.1", [h.port(80, "http", node_port=30500)], type_="LoadBalancer",
                   lb_ips=["5.6.7.9"], source_ranges=["203.0.113.0/25", "198.51.100.0/24"])
    es = h.eslice("ns1", "fw", [h.endpoint("10.181.0.1"), h.endpoint("10.181.0.2")], [{"name": "http", "port": 80}])
    world = compute([fw], [es], "node1", ["192.168.0.2"])
    b = NftablesBackend(netns, CFG)
    await b.apply(world, None)
    before = _table(netns)
    await b.apply(world, None)
    assert b.last_repairs == 2  # (flush the firewall chain, add its rule)
    assert _table(netns) == before
