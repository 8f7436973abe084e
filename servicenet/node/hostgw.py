"""Host-gateway routes between nodes (flannel ``host-gw`` style), pure planning + a small applier.

Every node on the same underlay reaches another node's pods by a route
``<that node's podCIDR> via <that node's InternalIP>`` in its own node namespace. The routes
come from the Node objects (``spec.podCIDR``, ``status.addresses``). Only routes inside the node
namespace are ever written, never in the host's root namespace.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from servicenet.api.views import Obj


def _internal_ip(node: Obj) -> str | None:
    for a in (node.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP" and a.get("address"):
            return str(a["address"])
    return None


def plan_routes(nodes: Iterable[Obj], me: str, underlay: str) -> dict[str, str]:
    """``podCIDR -> via`` for every other node whose InternalIP is on ``underlay`` (pure)."""
    net = ipaddress.ip_network(underlay, strict=False)
    out: dict[str, str] = {}
    for n in nodes:
        name = (n.get("metadata") or {}).get("name")
        cidr = (n.get("spec") or {}).get("podCIDR")
        ip = _internal_ip(n)
        if name == me or not cidr or not ip:
            continue
        try:
            if ipaddress.ip_address(ip) not in net:
                continue
            cidr = str(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
        out[cidr] = ip
    return out


def route_diff(have: dict[str, str], want: dict[str, str]) -> tuple[list[list[str]], list[list[str]]]:
    """``ip route`` argv (without ``ip -n NS``) to go from ``have`` to ``want``: (replace, delete)."""
    put = [["route", "replace", c, "via", v] for c, v in sorted(want.items()) if have.get(c) != v]
    drop = [["route", "del", c] for c in sorted(have) if c not in want]
    return put, drop
