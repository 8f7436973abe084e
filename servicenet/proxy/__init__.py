"""servicenet.proxy: the service proxy (kube-proxy) — userspace, iptables and nftables modes.

Pure cores: :mod:`model` (snapshot -> desired state), :mod:`render_iptables`,
:mod:`render_nftables`, :mod:`nft_skeleton`, :mod:`nft_commands`, :mod:`nft_encode`, :mod:`planner`,
:mod:`conntrack`, :mod:`balancer`, :mod:`lb_allocator` (``plan``).
Shells: :mod:`sync` (kernel backends + runner), :mod:`nft_socket`, :mod:`userspace`, :mod:`health`, :mod:`server`.
"""

from servicenet.proxy.model import DesiredState, Endpoint, ServicePort, ServicePortName, ServiceState, compute

__all__ = ["DesiredState", "Endpoint", "ServicePort", "ServicePortName", "ServiceState", "compute"]
