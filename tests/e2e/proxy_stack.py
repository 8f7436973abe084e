"""The whole netns stack for proxy acceptance: API server + controllers + node agent (netns) +
cluster DNS bound on the kube-dns ClusterIP inside the node namespace + the service proxy in a
kernel mode, composed the way ``servicenet up`` does it (kube-dns Endpoints included)."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servicenet.dns.model import DnsConfig
from servicenet.dns.server import DnsServer
from servicenet.proxy.server import ProxyConfig, ProxyServer
from servicenet.up import KubeDnsEndpoints

from .cluster import Cluster, ready, running_cluster, until

MANIFESTS = Path(__file__).parent.parent / "apiserver" / "manifests"
DNS_IP = "10.96.0.10"
LB_POOL = "10.255.255.0/24"

Obj = dict[str, Any]


@dataclass
class ProxyStack:
    c: Cluster
    proxy: ProxyServer
    dns: DnsServer
    mode: str

    @property
    def node_ip(self) -> str:
        return self.c.agent.network.node_ip

    async def pod_ready(self, name: str) -> bool:
        try:
            return ready(await self.c.client.get("v1", "pods", "default", name))
        except Exception:
            return False

    async def ready_pods(self, selector: str) -> list[Obj]:
        ps = (await self.c.client.list("v1", "pods", "default", label_selector=selector))["items"]
        return [p for p in ps if ready(p) and p["status"].get("podIP")
                and not p["metadata"].get("deletionTimestamp")]

    async def run_pod(self, name: str, labels: dict[str, str] | None = None, image: str = "busybox",
                      command: list[str] | None = None, **spec: Any) -> Obj:
        container: Obj = {"name": "c", "image": image}
        if command is not None:
            container["command"] = command
        await self.c.client.create("v1", "pods", "default", {
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [container], **spec}})
        await until(lambda: self.pod_ready(name), 30, what=f"pod {name} ready")
        return await self.c.client.get("v1", "pods", "default", name)

    async def client_pod(self, name: str = "client") -> Obj:
        # tests exec load scripts in it that log into the test's own (root-only) tmp_path
        return await self.run_pod(name, command=["sleep", "600"], securityContext={"runAsUser": 0})

    async def hostnames(self) -> tuple[Obj, dict[str, str]]:
        """The walkthrough Deployment + Service; returns (service, {podName: podIP}) once all 3 are
        ready and the proxy has them programmed (as seen through the ClusterIP)."""
        await self.c.kubectl("apply", "-f", str(MANIFESTS / "hostnames.yaml"))

        async def three() -> dict[str, str] | None:
            ps = await self.ready_pods("app=hostnames")
            return {p["metadata"]["name"]: p["status"]["podIP"] for p in ps} if len(ps) == 3 else None

        pods = await until(three, 40, what="3 ready hostnames pods")
        svc = await self.c.client.get("v1", "services", "default", "hostnames")
        return svc, pods

    async def exec(self, pod: str, script: str, timeout: float = 60.0) -> tuple[int, str]:
        """``kubectl exec <pod> -- sh -c <script>``: stdout, whatever the exit status."""
        rc, out, err = await self.c.kubectl("exec", pod, "--", "sh", "-c", script, check=False, timeout=timeout)
        return rc, out + err if rc else out

    async def curl_loop(self, pod: str | None, url: str, n: int, max_time: float = 2.0,
                        total: float = 90.0) -> Counter[str]:
        """``n`` sequential new connections to ``url`` from ``pod`` (None: the node namespace), in one
        shell loop; failed requests count under the key ``"<fail rc>"``."""
        script = (f"i=0; while [ $i -lt {n} ]; do i=$((i+1)); "
                  f"curl -s --max-time {max_time} {url} || echo '<fail' $?'>'; echo; done")
        if pod is None:
            rc, out = await self.c.exec_in_node("sh", "-c", script, timeout=total)
        else:
            rc, out = await self.exec(pod, script, timeout=total)
        assert rc == 0, out[-2000:]
        counts: Counter[str] = Counter()
        for line in out.splitlines():
            line = line.strip()
            if line.startswith("<fail"):
                counts["<fail " + line[5:].strip(" >") + ">"] += 1
            elif line:
                counts[line] += 1
        return counts

    async def iptables_nat(self) -> str:
        rc, out = await self.c.exec_in_node("iptables-save", "-t", "nat")
        assert rc == 0, out
        return out


@contextlib.asynccontextmanager
async def proxy_stack(tmp: Path, mode: str, *, min_sync_period: float = 0.0,
                      **agent_kw: Any) -> AsyncIterator[ProxyStack]:
    async with running_cluster(tmp, "netns", cluster_dns_ip=DNS_IP, **agent_kw) as c:
        assert c.netns, "netns mode without a node namespace"
        dns_client = c.api.new_client()
        proxy_client = c.api.new_client()
        dns = DnsServer(dns_client, config=DnsConfig(pods="insecure"), listen=[("127.0.0.1", 0)],
                        netns=c.netns, dns_ip=DNS_IP)
        kube_dns = KubeDnsEndpoints(c.api.new_client(), DNS_IP, 53)
        proxy = ProxyServer(ProxyConfig(mode=mode, node_name=c.node, cluster_cidr="10.244.0.0/16",
                                        service_cidrs=("10.96.0.0/12",), lb_pool=LB_POOL,
                                        min_sync_period=min_sync_period), client=proxy_client)
        started: list[Any] = []
        try:
            for comp in (dns, kube_dns, proxy):
                await comp.start()
                started.append(comp)
            assert proxy.synced.is_set(), "proxy never finished its first sync"
            yield ProxyStack(c, proxy, dns, mode)
        finally:
            for comp in reversed(started):
                with contextlib.suppress(Exception):
                    await comp.stop()
            for cl in (dns_client, proxy_client, kube_dns.client):
                with contextlib.suppress(Exception):
                    await cl.close()


__all__ = ["DNS_IP", "LB_POOL", "ProxyStack", "proxy_stack"]
