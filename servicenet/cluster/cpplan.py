"""The control plane of ``servicenet up --etcd N --apiservers M --nodes K`` as data (pure).

Every etcd member and every API server is a "machine" of its own: a network namespace on the
cluster's LAN (``servicenet.cluster.plan``), exactly as the nodes are.

| Piece | Name / address |
|---|---|
| etcd member *i* (1..7) | namespace ``sn-<id>-etcd<i>``, ``eth0`` = LAN .(30+i) (veth ``sn-<id>-e<i>``); clients ``https://IP:2379``, peers ``https://IP:2380`` (TLS both ways, client certificates required) |
| API server *j* (1..5) | namespace ``sn-<id>-api<j>``, ``eth0`` = LAN .(20+j) (veth ``sn-<id>-a<j>``); serves ``https://IP:6443`` there (the ``kubernetes`` Service's endpoint) and ``https://127.0.0.1:<port>`` in the host namespace (kubectl, node agents, controllers) |

The API server and etcd namespaces route every node's pod CIDR via that node's IP (host-gw, as
the nodes do), so pods reach the API through the ``kubernetes`` ClusterIP and the replies find
their way back.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from .plan import ClusterPlan, NodePlan, node_commands

MAX_ETCD = 7
MAX_APISERVERS = 5
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
API_PORT = 6443


@dataclass(frozen=True, slots=True)
class Host:
    """One control-plane machine: an etcd member or an API server."""
    index: int
    name: str  # etcd-1, apiserver-1
    netns: str
    ip: str
    lan_veth: str


@dataclass(frozen=True, slots=True)
class ControlPlane:
    etcd: tuple[Host, ...]
    apiservers: tuple[Host, ...]

    @property
    def etcd_client_urls(self) -> list[str]:
        return [etcd_client_url(h) for h in self.etcd]

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{h.name}=https://{h.ip}:{ETCD_PEER_PORT}" for h in self.etcd)

    def apiserver_for(self, node: NodePlan) -> Host:
        """Which API server a node's components talk to (round robin over the nodes)."""
        return self.apiservers[(node.index - 1) % len(self.apiservers)]

    def host(self, name: str) -> Host | None:
        return next((h for h in (*self.etcd, *self.apiservers) if h.name == name), None)


def etcd_client_url(h: Host) -> str:
    return f"https://{h.ip}:{ETCD_CLIENT_PORT}"


def control_plane(p: ClusterPlan, n_etcd: int, n_api: int) -> ControlPlane:
    if not 1 <= n_etcd <= MAX_ETCD:
        raise ValueError(f"--etcd must be within 1..{MAX_ETCD}")
    if not 1 <= n_api <= MAX_APISERVERS:
        raise ValueError(f"--apiservers must be within 1..{MAX_APISERVERS}")
    base = int(ipaddress.ip_network(p.underlay).network_address)

    def host(kind: str, short: str, i: int, offset: int) -> Host:
        return Host(index=i, name=f"{kind}-{i}", netns=f"sn-{p.id}-{kind.replace('apiserver', 'api')}{i}",
                    ip=str(ipaddress.ip_address(base + offset + i)), lan_veth=f"sn-{p.id}-{short}{i}")

    return ControlPlane(etcd=tuple(host("etcd", "e", i, 30) for i in range(1, n_etcd + 1)),
                        apiservers=tuple(host("apiserver", "a", j, 20) for j in range(1, n_api + 1)))


def host_commands(p: ClusterPlan, h: Host) -> list[list[str]]:
    """``ip`` argv that attach a control-plane namespace to the LAN and route the pod CIDRs
    (after ``ip netns add``)."""
    as_node = NodePlan(index=0, name=h.name, netns=h.netns, ip=h.ip, pod_cidr="", net_id="", lan_veth=h.lan_veth)
    attach = node_commands(p, as_node)[:-1]  # (no forwarding: these machines route nothing)
    routes = [["ip", "-n", h.netns, "route", "replace", n.pod_cidr, "via", n.ip] for n in p.nodes]
    return attach + routes


def etcd_argv(binary: str, cp: ControlPlane, h: Host, data_dir: str, pki: dict[str, str]) -> list[str]:
    """One member's command line (run inside its namespace). ``pki``: ca, cert, key (the member's
    certificate serves clients and peers and is its client certificate towards peers)."""
    client, peer = etcd_client_url(h), f"https://{h.ip}:{ETCD_PEER_PORT}"
    return [binary, "--name", h.name, "--data-dir", data_dir,
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", cp.initial_cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", "servicenet", "--heartbeat-interval", "100", "--election-timeout", "1000",
            "--cert-file", pki["cert"], "--key-file", pki["key"], "--trusted-ca-file", pki["ca"],
            "--client-cert-auth", "--peer-cert-file", pki["cert"], "--peer-key-file", pki["key"],
            "--peer-trusted-ca-file", pki["ca"], "--peer-client-cert-auth"]
