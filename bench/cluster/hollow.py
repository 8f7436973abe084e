"""Hollow nodes: many virtual nodes in one process, as kubemark's hollow kubelets.

Each node is a Node object with a podCIDR, a ``kube-node-lease`` Lease renewed by
:class:`servicenet.node.lease.NodeLease` (the node agent's own heartbeat code), and the status of
the pods bound to it: the agent writes Running/Ready with a pod IP from the node's CIDR, as a
kubelet would after starting the containers (nothing runs). The benchmark creates the pods already
bound (``spec.nodeName``), standing in for the scheduler, so the API's write load is what nodes and
the endpoint machinery cause.

The builders are pure (tested in tests/bench/test_cluster_hollow.py); :class:`HollowNodes` is the I/O.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from servicenet.client import ApiClient
from servicenet.common.component import cancel_all
from servicenet.node.lease import NodeLease

POD_BASE = ipaddress.ip_network("10.64.0.0/10")  # /24 per node: room for 16,384 nodes
NODE_BASE = ipaddress.ip_network("172.31.0.0/16")  # InternalIPs: data only, nothing is sent there


@dataclass(frozen=True)
class HollowNode:
    name: str
    index: int

    @property
    def pod_cidr(self) -> str:
        return str(ipaddress.ip_network((int(POD_BASE.network_address) + (self.index << 8), 24)))

    @property
    def ip(self) -> str:
        return str(NODE_BASE.network_address + 1 + self.index)

    def pod_ip(self, slot: int) -> str:
        """The IP of the node's ``slot``-th pod (slots 0..252: .2 to .254)."""
        if not 0 <= slot < 253:
            raise ValueError(f"a /24 holds 253 pods, slot {slot} asked")
        return str(ipaddress.ip_address(int(POD_BASE.network_address) + (self.index << 8) + 2 + slot))


def nodes(n: int, prefix: str = "hollow") -> list[HollowNode]:
    return [HollowNode(f"{prefix}-{i:04d}", i) for i in range(n)]


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_object(node: HollowNode) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name, "servicenet.dev/hollow": "true"}},
            "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]}}


def node_status(node: HollowNode, now: str) -> dict[str, Any]:
    return {"addresses": [{"type": "InternalIP", "address": node.ip}, {"type": "Hostname", "address": node.name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "hollow node", "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "capacity": {"cpu": "64", "memory": "256Gi", "pods": "250"},
            "allocatable": {"cpu": "64", "memory": "256Gi", "pods": "250"}}


def pod_object(name: str, node: HollowNode, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": dict(labels)},
            "spec": {"nodeName": node.name, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9"}]}}


def pod_status(pod_ip: str, ready: bool, now: str) -> dict[str, Any]:
    """What a kubelet reports for a started pod whose readiness is ``ready``."""
    r = "True" if ready else "False"
    return {"phase": "Running", "podIP": pod_ip, "podIPs": [{"ip": pod_ip}], "hostIP": None, "startTime": now,
            "conditions": [{"type": "Initialized", "status": "True", "lastTransitionTime": now},
                           {"type": "ContainersReady", "status": r, "lastTransitionTime": now},
                           {"type": "Ready", "status": r, "lastTransitionTime": now},
                           {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
            "containerStatuses": [{"name": "c", "ready": ready, "restartCount": 0, "started": True,
                                   "image": "registry.k8s.io/pause:3.9", "imageID": "", "containerID": "hollow://c",
                                   "state": {"running": {"startedAt": now}}}]}


def spread(n_pods: int, n_nodes: int) -> list[tuple[int, int]]:
    """(node index, slot) of each of ``n_pods`` pods, round-robin over the nodes."""
    if n_pods > n_nodes * 253:
        raise ValueError(f"{n_pods} pods do not fit on {n_nodes} nodes of 253")
    return [(i % n_nodes, i // n_nodes) for i in range(n_pods)]


def stagger(i: int, n: int, interval: float) -> float:
    """Node ``i`` of ``n``'s first heartbeat delay: evenly spread over one renew ``interval``."""
    return interval * i / max(1, n)


class HollowNodes:
    """The nodes' objects, heartbeats and pod status writes; ``clients`` are used in turn (one per API server)."""

    def __init__(self, clients: list[ApiClient], members: list[HollowNode], lease_seconds: int = 40) -> None:
        self.clients = clients
        self.members = members
        self.lease_seconds = lease_seconds
        self._leases: list[asyncio.Task[None]] = []
        self.leases: list[NodeLease] = []
        self._next = 0

    def client(self) -> ApiClient:
        self._next += 1
        return self.clients[self._next % len(self.clients)]

    async def register(self, concurrency: int = 16) -> None:
        sem = asyncio.Semaphore(concurrency)
        now = now_rfc3339()

        async def one(node: HollowNode) -> None:
            async with sem:
                c = self.client()
                obj = await c.create("v1", "nodes", None, node_object(node))
                obj["status"] = node_status(node, now)
                for cond in obj["status"]["conditions"]:
                    cond["lastHeartbeatTime"] = now
                await c.update_status("v1", "nodes", None, node.name, obj)
                await NodeLease(c, node.name, duration=self.lease_seconds).renew_once()

        await asyncio.gather(*(one(n) for n in self.members))

    def start_heartbeats(self) -> None:
        """Every node's Lease loop. Real kubelets start at different moments, so their renews are
        spread over the interval; started together here they would renew in one burst every
        interval (1,000 writes within about a second), a load no cluster sees in steady state."""
        for i, node in enumerate(self.members):
            lease = NodeLease(self.clients[i % len(self.clients)], node.name, duration=self.lease_seconds)
            self.leases.append(lease)
            offset = stagger(i, len(self.members), lease.interval)
            self._leases.append(asyncio.create_task(lease.run(offset), name=f"lease-{node.name}"))

    async def restagger(self) -> None:
        """Spread the heartbeats over the interval again. A long overload bunches them: renews held up
        by a busy API server finish together and then keep renewing together (at 1,000 nodes,
        after loading 30,000 pods, every renew fell within half the interval); a cluster that has
        run for a while has its nodes' renews spread like their start-up times."""
        await cancel_all(self._leases)
        self._leases = []
        for i, (node, lease) in enumerate(zip(self.members, self.leases, strict=True)):
            offset = stagger(i, len(self.members), lease.interval)
            self._leases.append(asyncio.create_task(lease.run(offset), name=f"lease-{node.name}"))

    def renewals(self) -> int:
        """Lease renewals done so far by every node."""
        return sum(lease.renewals for lease in self.leases)

    async def stop(self) -> None:
        await cancel_all(self._leases)
        self._leases = []

    async def set_ready(self, namespace: str, name: str, pod_ip: str, ready: bool,
                        client: ApiClient | None = None) -> dict[str, Any]:
        """The kubelet's status write: Running with ``pod_ip``, Ready as ``ready``."""
        c = client or self.client()
        pod = await c.get("v1", "pods", namespace, name)
        pod["status"] = pod_status(pod_ip, ready, now_rfc3339())
        node = next((n for n in self.members if n.name == pod["spec"]["nodeName"]), None)
        pod["status"]["hostIP"] = node.ip if node else None
        return await c.update_status("v1", "pods", namespace, name, pod)

    async def start_pods(self, namespace: str, pods: list[tuple[str, HollowNode, int, dict[str, str]]],
                         concurrency: int = 8) -> int:
        """Create each (name, node, slot, labels) pod bound to its node and report it Running and Ready."""
        sem = asyncio.Semaphore(concurrency)
        done = 0

        async def one(name: str, node: HollowNode, slot: int, labels: dict[str, str]) -> None:
            nonlocal done
            async with sem:
                c = self.client()
                pod = await c.create("v1", "pods", namespace, pod_object(name, node, labels))
                pod["status"] = pod_status(node.pod_ip(slot), True, now_rfc3339())
                pod["status"]["hostIP"] = node.ip
                await c.update_status("v1", "pods", namespace, name, pod)
                done += 1

        await asyncio.gather(*(one(*p) for p in pods))
        return done
