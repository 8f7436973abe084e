"""Creates and removes the namespaces of a :class:`~servicenet.cluster.plan.ClusterPlan`.

Nothing is created in the host's root namespace: the LAN bridge lives in its own namespace and
every veth is made there with its peer moved straight into a node (or client) namespace.
Creation failing half-way removes what it made.
"""

from __future__ import annotations

import asyncio

from servicenet.common import log
from servicenet.common.netns import list_netns

from .plan import ClusterPlan, NodePlan, node_commands

_log = log.get("cluster")


class TopologyError(Exception):
    pass


async def _ip(*argv: str, check: bool = True) -> None:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    if check and proc.returncode != 0:
        raise TopologyError(f"{' '.join(argv)}: {err.decode().strip()}")


async def create(p: ClusterPlan) -> None:
    """The LAN, every node namespace attached to it, and the client namespace."""
    try:
        await _ip("ip", "netns", "add", p.lan_netns)
        await _ip("ip", "-n", p.lan_netns, "link", "set", "lo", "up")
        await _ip("ip", "-n", p.lan_netns, "link", "add", p.lan_bridge, "type", "bridge")
        await _ip("ip", "-n", p.lan_netns, "link", "set", p.lan_bridge, "up")
        for node in p.nodes:
            await _ip("ip", "netns", "add", node.netns)
            for argv in node_commands(p, node):
                await _ip(*argv)
        client = NodePlan(index=0, name="client", netns=p.client_netns, ip=p.client_ip, pod_cidr="",
                          net_id="", lan_veth=p.client_veth)
        await _ip("ip", "netns", "add", p.client_netns)
        for argv in node_commands(p, client)[:-1]:  # (no forwarding on the client)
            await _ip(*argv)
    except BaseException:
        await destroy(p)
        raise


async def destroy(p: ClusterPlan) -> list[str]:
    """Remove every namespace of this cluster (the node agents' pod namespaces too); returns them."""
    gone = [ns for ns in list_netns() if p.owns(ns)]
    # pods first, then nodes (their veths vanish with them), the LAN last
    order = sorted(gone, key=lambda ns: (ns == p.lan_netns, ns.startswith(f"sn-{p.id}-")))
    for ns in order:
        await _ip("ip", "netns", "del", ns, check=False)
    left = [ns for ns in list_netns() if p.owns(ns)]
    if left:
        _log.warning("namespaces left behind", netns=",".join(left))
    return gone
