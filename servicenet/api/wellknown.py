"""Well-known names and the address plan, written down once (pure constants, no I/O).

Every label, annotation and finalizer that more than one module reads lives here, as does the
address plan of the three network modes (service CIDRs, the pod CIDRs, the kube-dns ClusterIP).
Components import these names instead of typing the strings; ``tests/test_structure.py`` greps
for stray copies of the most error-prone ones.

Usage::

    from servicenet.api import wellknown as wk
    wk.SERVICE_NAME_LABEL                 # "kubernetes.io/service-name"
    wk.address_plan("netns").dns_ip       # "10.96.0.10"
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ADDRESS_PLANS", "AddressPlan", "NetworkMode", "NODE_PORT_RANGE", "address_plan",
]

# -- labels ------------------------------------------------------------------------------------
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # EndpointSlice -> its Service
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
HEADLESS_LABEL = "service.kubernetes.io/headless"
ZONE_LABEL = "topology.kubernetes.io/zone"
HOSTNAME_LABEL = "kubernetes.io/hostname"
POD_TEMPLATE_HASH_LABEL = "pod-template-hash"
STATEFULSET_POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name"
POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"

# EndpointSlice managers (values of MANAGED_BY_LABEL)
ENDPOINTSLICE_CONTROLLER = "endpointslice-controller.k8s.io"
ENDPOINTSLICE_MIRRORING_CONTROLLER = "endpointslicemirroring-controller.k8s.io"

# -- annotations -------------------------------------------------------------------------------
TRIGGER_TIME_ANNOTATION = "endpoints.kubernetes.io/last-change-trigger-time"
OVER_CAPACITY_ANNOTATION = "endpoints.kubernetes.io/over-capacity"
SKIP_MIRROR_LABEL = "endpointslice.kubernetes.io/skip-mirror"
LAST_APPLIED_ANNOTATION = "kubectl.kubernetes.io/last-applied-configuration"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
NETNS_ANNOTATION = "servicenet.dev/netns"  # Node: the network namespace of the node agent

# -- finalizers --------------------------------------------------------------------------------
FINALIZER_ORPHAN = "orphan"
FINALIZER_FOREGROUND = "foregroundDeletion"
FINALIZER_NAMESPACE = "kubernetes"  # Namespace spec.finalizers

# -- well-known objects ------------------------------------------------------------------------
KUBE_DNS_NAMESPACE = "kube-system"
KUBE_DNS_SERVICE = "kube-dns"
KUBE_DNS_INDEX = 10  # kube-dns takes the 10th address of the primary service CIDR
CLUSTER_DOMAIN = "cluster.local"
DEFAULT_SESSION_AFFINITY_TIMEOUT = 10800  # seconds, upstream DefaultClientIPServiceAffinitySeconds

# -- address plan ------------------------------------------------------------------------------
NetworkMode = Literal["netns", "loopback", "virtual"]
NODE_PORT_RANGE = (30000, 32767)  # inclusive, upstream --service-node-port-range default


@dataclass(frozen=True, slots=True)
class AddressPlan:
    """The addresses one network mode uses.

    ``service_cidrs`` feed the API server's ClusterIP allocator; ``dns_ip`` is the kube-dns
    ClusterIP (index :data:`KUBE_DNS_INDEX` of the first service CIDR); ``pod_cidr`` is the range
    the node agent hands to pods of its one node; ``cluster_cidr`` covers every pod (the proxy
    masquerades traffic from outside it).
    """

    mode: NetworkMode
    service_cidrs: tuple[str, ...]
    dns_ip: str
    pod_cidr: str
    cluster_cidr: str


ADDRESS_PLANS: dict[str, AddressPlan] = {
    "netns": AddressPlan("netns", ("10.96.0.0/12",), "10.96.0.10", "10.244.0.0/24", "10.244.0.0/16"),
    "loopback": AddressPlan("loopback", ("127.96.0.0/16",), "127.96.0.10", "127.64.0.0/24", "127.64.0.0/16"),
    "virtual": AddressPlan("virtual", ("10.96.0.0/12",), "10.96.0.10", "10.244.0.0/20", "10.244.0.0/16"),
}
DEFAULT_SERVICE_CIDRS = ADDRESS_PLANS["netns"].service_cidrs


def address_plan(mode: str) -> AddressPlan:
    """The plan of ``mode``; a ``KeyError`` names the valid modes."""
    try:
        return ADDRESS_PLANS[mode]
    except KeyError:
        raise KeyError(f"network mode {mode!r} (want one of {', '.join(ADDRESS_PLANS)})") from None
