"""The netlink writer: pure encoding checks, and (root) the kernel ends up with exactly what
``nft -f`` would have programmed for the same transaction text."""

from __future__ import annotations

import os
import re
import struct
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from servicenet.proxy import nftnl
from servicenet.proxy import render_nftables as nft
from servicenet.proxy.model import changed_services, compute

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
    batch, seqs = nftnl.encode("add chain ip kube-proxy a\nflush chain ip kube-proxy a\n"
                               "add element ip kube-proxy cluster-ips { 172.30.0.1 }\n", seq=7)
    msgs = _messages(batch)
    assert [m[0] for m in msgs] == [0x10, (10 << 8) | 3, (10 << 8) | 8, (10 << 8) | 12, 0x11]
    assert [m[2] for m in msgs] == [7, 8, 9, 10, 11] and seqs == [8, 9, 10]
    assert not any(m[1] & nftnl.F_ACK for m in msgs)  # errors only: the session sends a barrier instead
    # the ClusterIP is carried in network byte order
    assert bytes([172, 30, 0, 1]) in batch


def test_numgen_vmap_creates_its_anonymous_map_first() -> None:
    for _ in range(2):  # every time: an encoded rule may be reused, its anonymous map may not
        batch, seqs = nftnl.encode("add rule ip kube-proxy svc numgen random mod 2 vmap "
                                   "{ 0 : goto ep-a , 1 : goto ep-b }\n")
        kinds = [m[0] & 0xFF for m in _messages(batch)[1:-1]]
        assert kinds == [nftnl.NEWSET, nftnl.NEWSETELEM, nftnl.NEWRULE] and len(seqs) == 3
    assert b"ep-a\0" in batch and b"ep-b\0" in batch and b"numgen\0" in batch


@pytest.mark.parametrize("family,items", [
    ("ip", ["172.30.0.1 . tcp . 443 : goto service-ABC-default/kubernetes/tcp/https",
            "172.30.0.10 . udp . 53 : goto service-X", "172.30.0.1 . tcp . 80 : jump j",
            "172.30.0.1 . tcp . 81 : drop", "172.30.0.1 . sctp . 9 : goto reject-chain"]),
    ("ip", ["tcp . 30080 : goto external-Y", "udp . 1 : accept"]),
    ("ip6", ["fd00::1 . tcp . 443 : goto service-ABC", "fd00::2 . udp . 53 : drop"]),
])
def test_verdict_map_fast_path_equals_the_general_encoder(family: str, items: list[str]) -> None:
    ctx = nftnl._Ctx(family, "kube-proxy")
    assert nftnl._encoded_elements(ctx, "service-ips", items, True) == [nftnl._elem(ctx, i, True) for i in items]
    assert nftnl._verdict_elems(ctx, items) == [nftnl._elem(ctx, i, True) for i in items]


@pytest.mark.parametrize("line", [
    "add chain ip kube-proxy nat-output { type nat hook output priority -100 ; }",
    'add set ip kube-proxy affinity-x { type ipv4_addr ; flags dynamic,timeout ; timeout 60s ; }',
    "add rule ip kube-proxy firewall-x ip saddr != { 1.2.3.0/24 } drop",
    "add rule ip kube-proxy svc ip saddr != 10.96.0.0/12 jump mark-for-masquerade",
    "add table ip kube-proxy",
])
def test_unsupported_statements_are_left_to_nft(line: str) -> None:
    with pytest.raises(nftnl.Unsupported):
        nftnl.encode(line + "\n")


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
    """"web" changes between worlds; "lb" (eTP=Local: fib rules, left to nft) never does."""
    svcs = [h.service("ns1", "web", "172.30.0.41", [h.port(80, "http", node_port=node_port)],
                      type_="NodePort" if node_port else "ClusterIP", affinity=60 if affinity else None),
            h.service("ns1", "lb", "172.30.0.42", [h.port(80, "http", node_port=30002)], type_="LoadBalancer",
                      lb_ips=["5.6.7.8"], etp="Local", hcnp=30100)]
    eps = [h.endpoint(f"10.180.0.{i}") for i in range(1, n_eps + 1)]
    slices = [h.eslice("ns1", "web", eps, [{"name": "http", "port": 80}]),
              h.eslice("ns1", "lb", [h.endpoint("10.180.0.1")], [{"name": "http", "port": 80}])]
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
    _sh("ip", "netns", "exec", b, "nft", "-f", "-", stdin=nft.skeleton_transaction(CFG, rs.endpoint_maps, fresh=True))
    session = nftnl.NetlinkSession(b)
    try:
        lean = nft.build(s1, CFG, cache, blocks, text=False)
        emaps, hairpin = lean.bulk()
        extra = nftnl.bulk_messages("ip", "kube-proxy", emaps, nft.HAIRPIN_SET, hairpin)
        content = nft.content_transaction(lean, CFG, bulk=False)
        assert "fib saddr type local" in content  # eTP=Local: encoded too
        session.send(*nftnl.encode(content, seq=session.next_seq(), extra=extra))
        assert _listing(a) == _listing(b)
        prog = nft.Programmed.of(s1, CFG, cache)
        for nxt in (_world(2, node_port=30001), _world(4), _world(0), _world(1, node_port=30005), _world(5)):
            tx, prog = nft.partial_transaction(prog, nxt, changed_services(s1, nxt), CFG, blocks)
            s1 = nxt
            assert tx
            _sh("ip", "netns", "exec", a, "nft", "-f", "-", stdin=tx)
            assert session.apply(tx) > 0
            assert _listing(a) == _listing(b)
        # anonymous maps of separate transactions never collide
        for i in range(2):
            assert session.apply(f"add chain ip kube-proxy sn-ep{i}\nadd chain ip kube-proxy sn-svc{i}\n"
                                 f"add rule ip kube-proxy sn-svc{i} numgen random mod 1 vmap {{ 0 : goto sn-ep{i} }}\n")
        assert "0 : goto sn-ep1" in _sh("ip", "netns", "exec", b, "nft", "list", "chain", "ip", "kube-proxy", "sn-svc1")
        # a rejected batch changes nothing and says why
        before = _listing(b)
        with pytest.raises(nftnl.NetlinkError):
            session.apply("add chain ip kube-proxy sn-new\nadd rule ip kube-proxy sn-new goto no-such-chain\n")
        assert _listing(b) == before
        # the session still works afterwards
        assert session.apply("add element ip kube-proxy cluster-ips { 172.30.9.9 }\n") == 1
        assert "172.30.9.9" in _sh("ip", "netns", "exec", b, "nft", "list", "set", "ip", "kube-proxy", "cluster-ips")
    finally:
        session.close()


@pytest.mark.root
def test_a_batch_with_many_errors_is_rejected_cleanly(two_netns: tuple[str, str]) -> None:
    """Thousands of failing messages (no ACKs asked, every error reported) end in one NetlinkError."""
    _, b = two_netns
    _sh("ip", "netns", "exec", b, "nft", "-f", "-", stdin=nft.skeleton_transaction(CFG, fresh=True))
    session = nftnl.NetlinkSession(b)
    try:
        bad = "".join(f"add rule ip kube-proxy no-such-chain-{i} goto services\n" for i in range(20000))
        with pytest.raises(nftnl.NetlinkError):
            session.apply(bad)
        assert session.apply("add element ip kube-proxy cluster-ips { 172.30.9.9 }\n") == 1
    finally:
        session.close()


_WORLD_OBJECTS: dict[int, tuple[list[dict], list[dict]]] = {}


def _services_of(state) -> list[dict]:
    return _WORLD_OBJECTS[id(state)][0]


def _slices_of(state) -> list[dict]:
    return _WORLD_OBJECTS[id(state)][1]


def _big_world(n: int):
    """n services: most with 3 endpoints, some with affinity, one NodePort, one eTP=Local LoadBalancer."""
    svcs, slices = [], []
    for i in range(n):
        kw: dict = {}
        if i % 5 == 1:
            kw = {"affinity": 60}
        if i == 2:
            kw = {"type_": "NodePort"}
        if i == 3:
            kw = {"type_": "LoadBalancer", "lb_ips": ["5.6.7.8"], "etp": "Local", "hcnp": 30100}
        port = h.port(80, "http", node_port=30000 + i if "type_" in kw else None)
        svcs.append(h.service("ns1", f"s{i}", f"172.30.1.{i + 1}", [port], **kw))
        eps = [h.endpoint(f"10.180.{i}.{j}", node="node1" if j else "node2") for j in range(1 + i % 4)]
        slices.append(h.eslice("ns1", f"s{i}", eps, [{"name": "http", "port": 80}]))
    state = compute(svcs, slices, "node1", ["192.168.0.2"])
    _WORLD_OBJECTS[id(state)] = (svcs, slices)
    return state


@pytest.mark.root
async def test_cold_start_in_pieces_equals_one_nft_transaction(two_netns: tuple[str, str]) -> None:
    from servicenet.proxy.sync import NftablesBackend
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
    from servicenet.proxy.sync import NftablesBackend
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
