"""Typed nftables commands: their text, their netlink encoding (pure checks), and (root) the
kernel ends up with exactly the same table whether the commands go in as ``nft -f`` text or as
a netlink batch."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from servicenet.proxy import nft_encode, nft_skeleton
from servicenet.proxy import render_nftables as nft
from servicenet.proxy.model import changed_services, compute
from servicenet.proxy.nft_commands import (
    L4,
    AddAffinitySet,
    AddChain,
    AddElements,
    Addr,
    AddrInSet,
    AddrNotInRanges,
    AddrPair,
    AddRule,
    Command,
    DeleteChain,
    DeleteElements,
    DeleteSet,
    Dnat,
    DnatMap,
    FibLocal,
    FlushChain,
    FlushSet,
    L4Proto,
    NumgenVmap,
    PortKey,
    Rule,
    Target,
    UpdateSet,
    Verdict,
    render,
)
from servicenet.proxy.nft_socket import NetlinkError, NetlinkSession
from servicenet.proxy.sync import NftablesBackend

from . import helpers as h

CFG = nft.NftConfig(cluster_cidr="10.0.0.0/8", service_cidrs=("172.30.0.0/16",))


def _messages(batch: bytes) -> list[tuple[int, int, int]]:
    out, off = [], 0
    while off < len(batch):
        ln, kind, flags, seq, _ = struct.unpack_from("=IHHII", batch, off)
        out.append((kind, flags, seq))
        off += ln
    return out


def test_encode_batch_framing() -> None:
    batch, seqs = nft_encode.encode([AddChain("a"), FlushChain("a"), AddElements("cluster-ips", ("172.30.0.1",))],
                                    seq=7)
    msgs = _messages(batch)
    assert [m[0] for m in msgs] == [0x10, (10 << 8) | 3, (10 << 8) | 8, (10 << 8) | 12, 0x11]
    assert [m[2] for m in msgs] == [7, 8, 9, 10, 11] and seqs == [8, 9, 10]
    assert not any(m[1] & nft_encode.F_ACK for m in msgs)  # errors only: the session sends a barrier instead
    # the ClusterIP is carried in network byte order
    assert bytes([172, 30, 0, 1]) in batch


def test_numgen_vmap_creates_its_anonymous_map_first() -> None:
    rule = AddRule("svc", Rule((NumgenVmap((Verdict("goto", "ep-a"), Verdict("goto", "ep-b"))),)))
    for _ in range(2):  # every time: an encoded rule may be reused, its anonymous map may not
        batch, seqs = nft_encode.encode([rule])
        kinds = [m[0] & 0xFF for m in _messages(batch)[1:-1]]
        assert kinds == [nft_encode.NEWSET, nft_encode.NEWSETELEM, nft_encode.NEWRULE] and len(seqs) == 3
    assert b"ep-a\0" in batch and b"ep-b\0" in batch and b"numgen\0" in batch


@pytest.mark.parametrize("family,items", [
    ("ip", [(PortKey("172.30.0.1", "tcp", 443), Verdict("goto", "service-ABC-default/kubernetes/tcp/https")),
            (PortKey("172.30.0.10", "udp", 53), Verdict("goto", "service-X")),
            (PortKey("172.30.0.1", "tcp", 80), Verdict("jump", "j")), (PortKey("172.30.0.1", "tcp", 81), Verdict("drop")),
            (PortKey("172.30.0.1", "sctp", 9), Verdict("goto", "reject-chain"))]),
    ("ip", [(PortKey(None, "tcp", 30080), Verdict("goto", "external-Y")), (PortKey(None, "udp", 1), Verdict("accept"))]),
    ("ip6", [(PortKey("fd00::1", "tcp", 443), Verdict("goto", "service-ABC")),
             (PortKey("fd00::2", "udp", 53), Verdict("drop"))]),
    ("ip", [(0, Target("10.180.0.1", 80)), (7, Target("10.180.0.2", 8080)), (2**32 - 1, Target("10.1.2.3", 65535))]),
    ("ip6", [(3, Target("fd00::7", 80))]),
    ("ip", [("172.30.0.1", None), ("10.0.0.255", None)]),
    ("ip6", [("fd00::1", None)]),
    ("ip", [(AddrPair("10.0.0.1", "10.0.0.1"), None)]),
])
def test_element_fast_paths_equal_the_general_encoder(family: str, items: list) -> None:
    ctx = nft_encode._Ctx(family, "kube-proxy")
    keys = tuple(k for k, _ in items)
    values = None if items[0][1] is None else tuple(v for _, v in items)
    general = [nft_encode.element(ctx, k, v) for k, v in items]
    assert nft_encode.encoded_elements(ctx, keys, values) == general
    if isinstance(keys[0], PortKey):
        assert nft_encode._verdict_elems(ctx, keys, values) == general  # type: ignore[arg-type]


def test_bulk_elements_equal_the_commands() -> None:
    """The endpoint map and hairpin elements encoded from data are what AddElements encodes."""
    eps = [Target("10.180.0.1", 80), Target("10.180.0.2", 80), Target("10.180.0.3", 81)]
    bulk = nft_encode.bulk_messages("ip", "kube-proxy", {"service-endpoints-0": [(4, eps[:2]), (9, eps[2:])]},
                                    "hairpin-connections", ["10.180.0.1", "10.180.0.3"])
    ctx = nft_encode._Ctx("ip", "kube-proxy")
    nft_encode._c_add_elements(ctx, AddElements("service-endpoints-0", (4, 5, 9), tuple(eps)))
    nft_encode._c_add_elements(ctx, AddElements("hairpin-connections", (AddrPair("10.180.0.1", "10.180.0.1"),
                                                                         AddrPair("10.180.0.3", "10.180.0.3"))))
    assert bulk == ctx.msgs
    # kept in the dump's form: the same messages without nested flags, and the elements one by one
    kept: dict[str, list[bytes]] = {}
    flat = nft_encode.bulk_messages("ip", "kube-proxy", {"service-endpoints-0": [(4, eps[:2]), (9, eps[2:])]},
                                    "hairpin-connections", ["10.180.0.1", "10.180.0.3"], kept)
    assert [(k, f) for k, f, _ in flat] == [(k, f) for k, f, _ in bulk]
    assert [body for _, _, body in flat] != [body for _, _, body in bulk]
    assert kept == {"service-endpoints-0": [nft_encode.strip_nested(e) for e in nft_encode.encoded_elements(ctx, (4, 5, 9), tuple(eps))],
                    "hairpin-connections": [nft_encode.strip_nested(e) for e in nft_encode.encoded_elements(
                        ctx, (AddrPair("10.180.0.1", "10.180.0.1"), AddrPair("10.180.0.3", "10.180.0.3")), None)]}


def test_text_of_every_command() -> None:
    """What ``nft -f`` gets for each typed command (the netlink writer encodes the same values)."""
    cmds = [
        AddChain("c"), FlushChain("c"), DeleteChain("c"), FlushSet("s"), FlushSet("m", is_map=True),
        DeleteSet("s"), DeleteSet("m", is_map=True), AddAffinitySet("a", 60),
        AddRule("c", Rule((Addr("saddr", "10.0.0.0/8"), Verdict("goto", "x")), "pods")),
        AddRule("c", Rule((Addr("daddr", "10.0.0.1", neq=True), FibLocal("saddr"), Verdict("jump", "y")))),
        AddRule("c", Rule((AddrInSet("saddr", "a"), UpdateSet("a"), L4["udp"], Dnat("10.1.1.1", 53)))),
        AddRule("c", Rule((L4["tcp"], DnatMap(3, 8, "m")))),
        AddRule("c", Rule((AddrNotInRanges("saddr", ("1.2.3.0/24", "5.6.0.0/16")), Verdict("drop")))),
        AddRule("c", Rule((NumgenVmap((Verdict("goto", "e0"), Verdict("goto", "e1"))),))),
        AddElements("m", (PortKey("10.96.0.1", "tcp", 80), PortKey(None, "udp", 53)),
                    (Verdict("goto", "c"), Verdict("drop"))),
        AddElements("m", (1, 2), (Target("10.1.1.1", 80), Target("10.1.1.2", 80))),
        AddElements("h", (AddrPair("10.1.1.1", "10.1.1.1"),)), DeleteElements("s", ("10.96.0.1", "10.96.0.2")),
    ]
    t = "ip kube-proxy"
    assert render(cmds).splitlines() == [
        f"add chain {t} c", f"flush chain {t} c", f"delete chain {t} c", f"flush set {t} s", f"flush map {t} m",
        f"delete set {t} s", f"delete map {t} m",
        f"add set {t} a {{ type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }}",
        f'add rule {t} c ip saddr 10.0.0.0/8 goto x comment "pods"',
        f"add rule {t} c ip daddr != 10.0.0.1 fib saddr type local jump y",
        f"add rule {t} c ip saddr @a update @a {{ ip saddr }} meta l4proto udp dnat to 10.1.1.1:53",
        f"add rule {t} c meta l4proto tcp dnat ip addr . port to numgen random mod 3 offset 8 map @m",
        f"add rule {t} c ip saddr != {{ 1.2.3.0/24, 5.6.0.0/16 }} drop",
        f"add rule {t} c numgen random mod 2 vmap {{ 0 : goto e0 , 1 : goto e1 }}",
        f"add element {t} m {{ 10.96.0.1 . tcp . 80 : goto c, udp . 53 : drop }}",
        f"add element {t} m {{ 1 : 10.1.1.1 . 80, 2 : 10.1.1.2 . 80 }}",
        f"add element {t} h {{ 10.1.1.1 . 10.1.1.1 }}",
        f"delete element {t} s {{ 10.96.0.1, 10.96.0.2 }}",
    ]
    assert render([AddRule("c", Rule((L4["tcp"], Dnat("fd00::1", 80))))], "ip6") == \
        "add rule ip6 kube-proxy c meta l4proto tcp dnat to [fd00::1]:80\n"
    assert render([]) == ""


def test_values_are_checked_when_built() -> None:
    with pytest.raises(ValueError):
        Verdict("goto")  # a chain is needed
    with pytest.raises(ValueError):
        Verdict("drop", "x")
    with pytest.raises(ValueError):
        L4Proto("icmp")
    with pytest.raises(ValueError):
        AddElements("m", (1, 2), (Target("10.0.0.1", 1),))


@pytest.mark.parametrize("cmd", [
    AddAffinitySet("affinity-x", 60),  # set declarations: left to nft
    AddRule("firewall-x", Rule((AddrNotInRanges("saddr", ("1.2.3.0/24",)), Verdict("drop")))),  # interval set
    AddRule("svc", Rule((Addr("saddr", "10.96.0.0/12", neq=True), Verdict("jump", "mark-for-masquerade")))),
    AddRule("svc", Rule((Addr("saddr", "fd00::1"), Verdict("drop")))),  # IPv6 address in an ip table
])
def test_unsupported_commands_are_left_to_nft(cmd: Command) -> None:
    with pytest.raises(nft_encode.Unsupported):
        nft_encode.encode([cmd])


# --- kernel --------------------------------------------------------------------------------------

def _sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=True, timeout=60).stdout


@pytest.fixture
def two_netns() -> Iterator[tuple[str, str]]:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("kernel tests need root in CI")
        pytest.skip("needs root")
    tag = uuid.uuid4().hex[:6]
    names = (f"sn-{tag}-a", f"sn-{tag}-b")
    for n in names:
        _sh("ip", "netns", "add", n)
    try:
        yield names
    finally:
        for n in names:
            subprocess.run(["ip", "netns", "del", n], check=False)


def _world(n_eps: int, affinity: bool = False, node_port: int | None = None):
    """"web" changes between worlds; "lb" (eTP=Local: fib rules, comments) and "sticky" (ClientIP
    affinity: endpoint chains, affinity sets, an anonymous vmap) never do."""
    svcs = [h.service("ns1", "web", "172.30.0.41", [h.port(80, "http", node_port=node_port)],
                      type_="NodePort" if node_port else "ClusterIP", affinity=60 if affinity else None),
            h.service("ns1", "lb", "172.30.0.42", [h.port(80, "http", node_port=30002)], type_="LoadBalancer",
                      lb_ips=["5.6.7.8"], etp="Local", hcnp=30100),
            h.service("ns1", "sticky", "172.30.0.43", [h.port(53, "dns", protocol="UDP")], affinity=30)]
    eps = [h.endpoint(f"10.180.0.{i}") for i in range(1, n_eps + 1)]
    slices = [h.eslice("ns1", "web", eps, [{"name": "http", "port": 80}]),
              h.eslice("ns1", "lb", [h.endpoint("10.180.0.1")], [{"name": "http", "port": 80}]),
              h.eslice("ns1", "sticky", [h.endpoint("10.180.1.1"), h.endpoint("10.180.1.2")],
                       [{"name": "dns", "port": 53, "protocol": "UDP"}])]
    return compute(svcs, slices, "node1", ["192.168.0.2"])


def _listing(ns: str) -> str:
    return _sh("ip", "netns", "exec", ns, "nft", "list", "table", "ip", "kube-proxy")


@pytest.mark.root
def test_netlink_writes_what_nft_writes(two_netns: tuple[str, str]) -> None:
    a, b = two_netns
    s1 = _world(3, node_port=30001)
    blocks, cache = nft.Blocks(), {}
    rs = nft.build(s1, CFG, cache, blocks)
    # full sync: nft -f of the whole text in a; skeleton by nft, content by netlink (bulk from data) in b
    _sh("ip", "netns", "exec", a, "nft", "-f", "-", stdin=nft.full_transaction(rs, CFG))
    _sh("ip", "netns", "exec", b, "nft", "-f", "-",
        stdin=nft_skeleton.skeleton_transaction(CFG, rs.endpoint_maps, rs.affinity_sets, fresh=True))
    session = NetlinkSession(b)
    try:
        lean = nft.build(s1, CFG, cache, blocks, endpoints=False)
        emaps, hairpin = lean.bulk()
        extra = nft_encode.bulk_messages("ip", "kube-proxy", emaps, nft.HAIRPIN_SET, hairpin)
        content = nft.content_transaction(lean, CFG, bulk=False)
        kinds = {type(e) for c in content if isinstance(c, AddRule) for e in c.rule.exprs}
        assert {FibLocal, Addr, AddrInSet, UpdateSet, NumgenVmap, Dnat, DnatMap} <= kinds  # all encoded too
        session.send(*nft_encode.encode(content, seq=session.next_seq(), extra=extra))
        assert _listing(a) == _listing(b)
        prog = nft.Programmed.of(s1, CFG, cache)
        for nxt in (_world(2, node_port=30001), _world(4), _world(0), _world(1, node_port=30005), _world(5)):
            tx, prog = nft.partial_transaction(prog, nxt, changed_services(s1, nxt), CFG, blocks)
            s1 = nxt
            assert tx
            _sh("ip", "netns", "exec", a, "nft", "-f", "-", stdin=render(tx))
            assert session.apply(tx) > 0
            assert _listing(a) == _listing(b)
        # anonymous maps of separate transactions never collide
        for i in range(2):
            assert session.apply([AddChain(f"sn-ep{i}"), AddChain(f"sn-svc{i}"),
                                  AddRule(f"sn-svc{i}", Rule((NumgenVmap((Verdict("goto", f"sn-ep{i}"),)),)))])
        assert "0 : goto sn-ep1" in _sh("ip", "netns", "exec", b, "nft", "list", "chain", "ip", "kube-proxy", "sn-svc1")
        # a rejected batch changes nothing and says why
        before = _listing(b)
        with pytest.raises(NetlinkError):
            session.apply([AddChain("sn-new"), AddRule("sn-new", Rule((Verdict("goto", "no-such-chain"),)))])
        assert _listing(b) == before
        # the session still works afterwards
        assert session.apply([AddElements("cluster-ips", ("172.30.9.9",))]) == 1
        assert "172.30.9.9" in _sh("ip", "netns", "exec", b, "nft", "list", "set", "ip", "kube-proxy", "cluster-ips")
    finally:
        session.close()


@pytest.mark.root
def test_a_batch_with_many_errors_is_rejected_cleanly(two_netns: tuple[str, str]) -> None:
    """Thousands of failing messages (no ACKs asked, every error reported) end in one NetlinkError."""
    _, b = two_netns
    _sh("ip", "netns", "exec", b, "nft", "-f", "-", stdin=nft_skeleton.skeleton_transaction(CFG, fresh=True))
    session = NetlinkSession(b)
    try:
        bad = [AddRule(f"no-such-chain-{i}", Rule((Verdict("goto", "services"),))) for i in range(20000)]
        with pytest.raises(NetlinkError):
            session.apply(bad)
        assert session.apply([AddElements("cluster-ips", ("172.30.9.9",))]) == 1
    finally:
        session.close()


_WORLD_OBJECTS: dict[int, tuple[list[dict], list[dict]]] = {}


def _services_of(state) -> list[dict]:
    return _WORLD_OBJECTS[id(state)][0]


def _slices_of(state) -> list[dict]:
    return _WORLD_OBJECTS[id(state)][1]


def _big_world(n: int):
    """n services: most with 3 endpoints, some with affinity, one NodePort, one eTP=Local LoadBalancer."""
    svcs, slices = h.big_world_objects(n)
    state = compute(svcs, slices, "node1", ["192.168.0.2"])
    _WORLD_OBJECTS[id(state)] = (svcs, slices)
    return state


@pytest.mark.root
async def test_cold_start_in_pieces_equals_one_nft_transaction(two_netns: tuple[str, str]) -> None:
    a, b = two_netns
    world = _big_world(23)
    text = NftablesBackend(a, CFG, netlink=False)
    pieces = NftablesBackend(b, CFG, cold_piece=4)  # 6 pieces, then the switch
    await text.apply(world, None)
    await pieces.apply(world, None)
    assert pieces.netlink_syncs == 7
    assert _listing(a) == _listing(b)
    # both go on the same way: a partial sync, then a resync over the populated table (in a fresh backend)
    smaller = _big_world(17)
    for backend in (text, pieces):
        await backend.apply(smaller, changed_services(world, smaller))
    assert _listing(a) == _listing(b)
    # (fresh backends: key ranges are handed out in the same order, so the listings compare)
    again, text = NftablesBackend(b, CFG), NftablesBackend(a, CFG, netlink=False)
    await again.apply(world, None)
    await text.apply(world, None)
    assert _listing(a) == _listing(b)
    # enough endpoints for 16 endpoint maps: the next full sync re-shards and drops the old map
    big = _big_world(100)
    assert nft.shards_for(big) == 16
    for backend in (text, again):
        await backend.apply(big, None)
    listing = _listing(b)
    assert listing == _listing(a)
    assert listing.count("map service-endpoints-") == 16 and "map service-endpoints-15 {" in listing


@pytest.mark.root
async def test_rules_left_to_nft_still_give_one_consistent_table(two_netns: tuple[str, str]) -> None:
    """LoadBalancer source ranges (an anonymous interval set) are not netlink-encoded: the
    netlink backend then writes those transactions with nft -f, with the same result."""
    a, b = two_netns
    fw = h.service("ns1", "fw", "172.30.2.1", [h.port(80, "http", node_port=30500)], type_="LoadBalancer",
                   lb_ips=["5.6.7.9"], source_ranges=["203.0.113.0/25", "198.51.100.0/24"])
    es = h.eslice("ns1", "fw", [h.endpoint("10.181.0.1"), h.endpoint("10.181.0.2")], [{"name": "http", "port": 80}])
    base = _big_world(6)
    world = compute([*_services_of(base), fw], [*_slices_of(base), es], "node1", ["192.168.0.2"])
    text, ours = NftablesBackend(a, CFG, netlink=False), NftablesBackend(b, CFG)
    for backend in (text, ours):
        await backend.apply(world, None)
    assert _listing(a) == _listing(b) and "ip saddr != { 198.51.100.0/24, 203.0.113.0/25 } drop" in _listing(b)
    for backend in (text, ours):
        await backend.apply(base, changed_services(world, base))
    assert _listing(a) == _listing(b) and not re.search(r"firewall-[A-Z2-7]{8}-", _listing(b))
