"""Prometheus metrics of the proxy, with kube-proxy's names and buckets."""

from __future__ import annotations

import prometheus_client as pc

_SYNC_BUCKETS = tuple(0.001 * 2**i for i in range(15))
_NPL_BUCKETS = (0.25, 0.5, *range(1, 60), *range(60, 120, 5), *range(120, 301, 30))


class ProxyMetrics:
    """One set of collectors on a private registry (several proxies may share a process)."""

    def __init__(self, registry: pc.CollectorRegistry | None = None) -> None:
        r = self.registry = registry or pc.CollectorRegistry()
        self.sync_duration = pc.Histogram(
            "kubeproxy_sync_proxy_rules_duration_seconds", "SyncProxyRules latency in seconds",
            buckets=_SYNC_BUCKETS, registry=r)
        self.full_sync_duration = pc.Histogram(
            "kubeproxy_sync_full_proxy_rules_duration_seconds", "SyncProxyRules latency of full syncs",
            buckets=_SYNC_BUCKETS, registry=r)
        self.partial_sync_duration = pc.Histogram(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds", "SyncProxyRules latency of partial syncs",
            buckets=_SYNC_BUCKETS, registry=r)
        self.network_programming = pc.Histogram(
            "kubeproxy_network_programming_duration_seconds",
            "In-cluster network programming latency in seconds", buckets=_NPL_BUCKETS, registry=r)
        self.last_timestamp = pc.Gauge(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced", registry=r)
        self.last_queued = pc.Gauge(
            "kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
            "The last time a sync of proxy rules was queued", registry=r)
        self.endpoint_changes_pending = pc.Gauge(
            "kubeproxy_sync_proxy_rules_endpoint_changes_pending", "Pending proxy rules Endpoint changes",
            registry=r)
        self.endpoint_changes_total = pc.Counter(
            "kubeproxy_sync_proxy_rules_endpoint_changes", "Cumulative proxy rules Endpoint changes",
            registry=r)
        self.service_changes_pending = pc.Gauge(
            "kubeproxy_sync_proxy_rules_service_changes_pending", "Pending proxy rules Service changes",
            registry=r)
        self.service_changes_total = pc.Counter(
            "kubeproxy_sync_proxy_rules_service_changes", "Cumulative proxy rules Service changes",
            registry=r)
        self.no_local_endpoints = pc.Gauge(
            "kubeproxy_sync_proxy_rules_no_local_endpoints_total",
            "Number of services with a Local traffic policy and no endpoints", ["traffic_policy"], registry=r)
        self.iptables_total = pc.Gauge(
            "kubeproxy_sync_proxy_rules_iptables_total", "Total number of iptables rules owned by kube-proxy",
            ["table"], registry=r)
        self.iptables_last = pc.Gauge(
            "kubeproxy_sync_proxy_rules_iptables_last", "Number of iptables rules written in the last sync",
            ["table"], registry=r)
        self.iptables_restore_failures = pc.Counter(
            "kubeproxy_sync_proxy_rules_iptables_restore_failures", "Cumulative proxy iptables restore failures",
            registry=r)
        self.iptables_partial_restore_failures = pc.Counter(
            "kubeproxy_sync_proxy_rules_iptables_partial_restore_failures",
            "Cumulative proxy iptables partial restore failures", registry=r)
        self.nftables_sync_failures = pc.Counter(
            "kubeproxy_sync_proxy_rules_nftables_sync_failures", "Cumulative proxy nftables sync failures",
            registry=r)
        self.healthz_total = pc.Counter("kubeproxy_proxy_healthz", "Cumulative proxy healthz HTTP status",
                                        ["code"], registry=r)
        self.livez_total = pc.Counter("kubeproxy_proxy_livez", "Cumulative proxy livez HTTP status",
                                      ["code"], registry=r)
        self.userspace_listeners = pc.Gauge(
            "servicenet_proxy_userspace_listeners", "Listening sockets of the userspace proxy", registry=r)
        self.userspace_connections = pc.Gauge(
            "servicenet_proxy_userspace_connections", "Open proxied TCP connections", registry=r)
        self.conntrack_deleted = pc.Counter(
            "servicenet_proxy_conntrack_cleanup_invocations", "conntrack -D invocations that deleted flows",
            registry=r)

    def text(self) -> bytes:
        return pc.generate_latest(self.registry)
