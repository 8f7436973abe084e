"""The multi-node topology as data (pure): names, addresses and pod CIDRs for cluster ``id``.

| Piece | Name / address |
|---|---|
| underlay ("LAN") | namespace ``sn-<id>-lan`` holding bridge ``sn-<id>-lanbr``; network 192.168.77.0/24 |
| node *k* (1..9) | namespace ``sn-<id>-node<k>``, ``eth0`` = 192.168.77.(10+k) (veth ``sn-<id>-u<k>`` on the LAN bridge); pod CIDR 10.244.k.0/24 on the agent's bridge ``sn-<id><k>-br``; pods ``sn-<id><k>-p<n>`` |
| client | namespace ``sn-<id>-client``, ``eth0`` = 192.168.77.2: an outside machine on the LAN |

Every name starts with ``sn-<id>`` followed by ``-`` or the node digit, and the id is three hex
digits, so teardown removes exactly this cluster's namespaces.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

UNDERLAY = "192.168.77.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
MAX_NODES = 9


@dataclass(frozen=True, slots=True)
class NodePlan:
    index: int
    name: str
    netns: str
    ip: str
    pod_cidr: str
    net_id: str  # the node agent's network id (prefix of its bridge, pod namespaces and veths)
    lan_veth: str


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    id: str
    lan_netns: str
    lan_bridge: str
    client_netns: str
    client_veth: str
    client_ip: str
    underlay: str
    nodes: tuple[NodePlan, ...]

    def owns(self, netns: str) -> bool:
        """Whether a namespace name belongs to this cluster (its own or one of its node agents')."""
        prefixes = (f"sn-{self.id}-", *(f"sn-{n.net_id}-" for n in self.nodes))
        return netns.startswith(prefixes)

    def node(self, name: str) -> NodePlan | None:
        return next((n for n in self.nodes if n.name == name), None)


def plan(cluster_id: str, n: int, underlay: str = UNDERLAY) -> ClusterPlan:
    if len(cluster_id) != 3 or any(c not in "0123456789abcdef" for c in cluster_id):
        raise ValueError(f"cluster id must be 3 hex digits, got {cluster_id!r}")
    if not 1 <= n <= MAX_NODES:
        raise ValueError(f"--nodes must be within 1..{MAX_NODES}")
    net = ipaddress.ip_network(underlay)
    base = int(net.network_address)
    nodes = tuple(NodePlan(index=k, name=f"node-{k}", netns=f"sn-{cluster_id}-node{k}",
                           ip=str(ipaddress.ip_address(base + 10 + k)), pod_cidr=f"10.244.{k}.0/24",
                           net_id=f"{cluster_id}{k}", lan_veth=f"sn-{cluster_id}-u{k}") for k in range(1, n + 1))
    return ClusterPlan(id=cluster_id, lan_netns=f"sn-{cluster_id}-lan", lan_bridge=f"sn-{cluster_id}-lanbr",
                       client_netns=f"sn-{cluster_id}-client", client_veth=f"sn-{cluster_id}-uc",
                       client_ip=str(ipaddress.ip_address(base + 2)), underlay=underlay, nodes=nodes)


def node_commands(p: ClusterPlan, node: NodePlan) -> list[list[str]]:
    """``ip`` argv that attach one node namespace to the LAN (after ``ip netns add``)."""
    plen = ipaddress.ip_network(p.underlay).prefixlen
    return [
        ["ip", "-n", p.lan_netns, "link", "add", node.lan_veth, "type", "veth", "peer", "name", "eth0",
         "netns", node.netns],
        ["ip", "-n", p.lan_netns, "link", "set", node.lan_veth, "master", p.lan_bridge, "up"],
        ["ip", "-n", node.netns, "link", "set", "lo", "up"],
        ["ip", "-n", node.netns, "addr", "add", f"{node.ip}/{plen}", "dev", "eth0"],
        ["ip", "-n", node.netns, "link", "set", "eth0", "up"],
        ["ip", "netns", "exec", node.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
    ]
