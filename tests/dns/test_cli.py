"""Command-line wiring of `servicenet dns` and the `servicenet up` builder."""

from __future__ import annotations

import argparse

from servicenet.common.component import Component
from servicenet.dns.forwarder import parse_upstream, resolv_conf_nameservers
from servicenet.dns.server import DnsServer, build_for_up, build_parser, parse_listen


def test_parser_defaults_and_repeatable_listen() -> None:
    a = build_parser().parse_args(["--kubeconfig", "k", "--dns-listen", "127.0.0.1:5353", "--dns-listen",
                                   "[::1]:5353", "--ttl", "30", "--pods", "verified", "--no-forward",
                                   "--upstream", "127.0.0.53", "--workers", "2"])
    assert [parse_listen(x) for x in a.dns_listen] == [("127.0.0.1", 5353), ("::1", 5353)]
    assert a.zone == "cluster.local" and a.ttl == 30 and a.pods == "verified" and a.no_forward and a.workers == 2
    assert parse_upstream(a.upstream[0]) == ("127.0.0.53", 53)


def test_resolv_conf(tmp_path) -> None:  # type: ignore[no-untyped-def]
    p = tmp_path / "resolv.conf"
    p.write_text("search x\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver ::1\noptions ndots:5\n")
    # off-machine resolvers are used only when explicitly allowed
    assert resolv_conf_nameservers(str(p), allow_external=False) == [("127.0.0.53", 53), ("::1", 53)]
    assert resolv_conf_nameservers(str(p), allow_external=True) == [
        ("127.0.0.53", 53), ("10.255.255.53", 53), ("::1", 53)]
    assert resolv_conf_nameservers(str(tmp_path / "missing")) == []


def test_build_for_up_is_a_component() -> None:
    args = argparse.Namespace(dns_listen=[("127.0.0.1", 1053)])
    s = build_for_up(client=object(), args=args, network="netns")
    assert isinstance(s, DnsServer) and isinstance(s, Component)
    assert s.listen == [("127.0.0.1", 1053)] and s.netns_from_node and s.dns_ip == "10.96.0.10"
