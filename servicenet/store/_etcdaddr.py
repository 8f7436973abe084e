"""Addressing etcd (pure): the key range of a prefix, the gRPC target for a list of client URLs, and
which of them to try first."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from urllib.parse import urlsplit


def prefix_end(prefix: bytes) -> bytes:
    """The first key after every key starting with ``prefix`` (etcd's range_end for a prefix)."""
    b = bytearray(prefix)
    while b:
        if b[-1] < 0xFF:
            b[-1] += 1
            return bytes(b)
        b.pop()
    return b"\0"


def grpc_target(endpoints: Sequence[str]) -> tuple[str, bool, str]:
    """(gRPC target, tls?, authority) for etcd client URLs. IP literals become one multi-address
    target (pick_first fails over between members); a host name is used alone."""
    hosts: list[tuple[str, int]] = []
    tls = False
    for url in endpoints:
        u = urlsplit(url if "://" in url else "http://" + url)
        tls = tls or u.scheme == "https"
        hosts.append((u.hostname or "127.0.0.1", u.port or 2379))
    first = hosts[0][0]
    try:
        fam = ipaddress.ip_address(first).version
    except ValueError:
        return f"{first}:{hosts[0][1]}", tls, first
    scheme = "ipv4" if fam == 4 else "ipv6"
    addrs = ",".join(f"{h}:{p}" if fam == 4 else f"[{h}]:{p}" for h, p in hosts)
    return f"{scheme}:{addrs}", tls, first


def leads(status: tuple[int, int] | None) -> bool:
    """Whether a member's (member id, leader id) answer says it is the raft leader."""
    return status is not None and bool(status[1]) and status[0] == status[1]


def leader_first(endpoints: Sequence[str], statuses: Sequence[tuple[int, int] | None]) -> list[str]:
    """``endpoints`` with the raft leader's first, the others in their order. ``statuses[i]`` is
    (member id, leader id) as ``endpoints[i]``'s member answered a status request, ``None`` if it
    did not; with no member answering that it is the leader, the order is kept."""
    for ep, st in zip(endpoints, statuses, strict=True):
        if leads(st):
            return [ep, *(e for e in endpoints if e != ep)]
    return list(endpoints)
