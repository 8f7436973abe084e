"""``servicenet up --etcd N --apiservers M --nodes K`` (netns mode, root): a whole cluster of
machines on one host, each machine a network namespace on the LAN bridge.

| Machine | Processes |
|---|---|
| ``sn-<id>-etcd<i>`` | etcd member *i* (TLS for clients and peers, client certificates required) |
| ``sn-<id>-api<j>`` | API server *j* (``servicenet.cluster.apiserver_proc``): same CA, service-account keys and encryption config (one config dir), an endpoint of the ``kubernetes`` Service |
| host | 2 controller-manager and 2 scheduler candidates (leader election on Leases ``kube-controller-manager`` / ``kube-scheduler``), each talking to one API server |
| ``sn-<id>-node<k>`` | node agent and service proxy of node *k* (host-gw routes between nodes) |
| pods | the cluster DNS: Deployment ``kube-system/coredns``, 2 replicas of ``servicenet/dns`` behind ``kube-dns`` |

:class:`Topology` is the library form (tests keep a handle to kill and restart any process);
:func:`run` is the command. A failed start, SIGTERM or SIGINT stops every process and removes
every namespace of the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from servicenet.api import rbac_policy as policy
from servicenet.api import wellknown as wk
from servicenet.apiserver.identities import component_kubeconfig
from servicenet.client import ApiClient
from servicenet.client.kubeconfig import with_failover
from servicenet.common import log
from servicenet.common.component import bounded
from servicenet.common.netns import netns_path
from servicenet.common.runner import wait_for_signal
from servicenet.common.tls import ca_issuer, serving_hosts, write_pair
from servicenet.controllers.manager import ALL_CONTROLLERS
from servicenet.store.etcdlaunch import etcd_binary, free_port, go_env

from . import addons, etcdpki, topology
from .cpplan import API_PORT, ControlPlane, Host, control_plane, etcd_argv, host_commands
from .plan import ClusterPlan, NodePlan, plan
from .processes import Processes
from .up_nodes import _cluster_id, _wait_nodes_ready, node_argv

_log = log.get("cluster")
PY = [sys.executable, "-m"]


@dataclass
class Options:
    data_dir: Path
    etcd: int = 3
    apiservers: int = 2
    nodes: int = 3
    controller_managers: int = 2  # candidates of each: controller manager and scheduler
    dns_replicas: int = 2
    service_cidrs: list[str] = field(default_factory=lambda: list(wk.address_plan("netns").service_cidrs))
    node_monitor_grace_period: float = 40.0
    leader_elect: tuple[float, float, float] = (15.0, 10.0, 2.0)  # lease duration, renew deadline, retry
    endpoint_reconciler: tuple[float, int] = (10.0, 15)  # interval, TTL
    extra_apiserver_args: list[str] = field(default_factory=list)  # e.g. --default-unreachable-toleration-seconds
    extra_controller_args: list[str] = field(default_factory=list)  # every controller-manager/scheduler
    extra_node_args: list[str] = field(default_factory=list)  # every node agent, e.g. --node-lease-duration-seconds
    log_level: str = "info"


class Topology:
    """The cluster's machines and processes; ``start()`` returns once every node is Ready and the
    DNS Deployment is available."""

    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.data_dir = Path(opts.data_dir)
        self.plan: ClusterPlan = plan(_cluster_id(self.data_dir), opts.nodes)
        self.cp: ControlPlane = control_plane(self.plan, opts.etcd, opts.apiservers)
        self.config_dir = self.data_dir / "apiserver"  # the API servers' shared config dir
        self.procs = Processes(self.data_dir / "logs")
        self.api_ports: dict[str, int] = {}
        self.dns_ip = ""
        self._etcd_client: dict[str, str] = {}
        self._made = False

    # -- where things are ----------------------------------------------------------------------------
    def api_url(self, h: Host | str) -> str:
        name = h if isinstance(h, str) else h.name
        return f"https://127.0.0.1:{self.api_ports[name]}"

    @property
    def api_urls(self) -> list[str]:
        return [self.api_url(h) for h in self.cp.apiservers]

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (first API server); ``kubeconfig_for`` names the others'."""
        return self.data_dir / "kubeconfig"

    def kubeconfig_for(self, h: Host | str) -> Path:
        name = h if isinstance(h, str) else h.name
        return self.data_dir / f"kubeconfig-{name}"

    def client(self, apiserver: Host | str | None = None) -> ApiClient:
        return ApiClient.from_kubeconfig(self.kubeconfig_for(apiserver or self.cp.apiservers[0]))

    # -- start / stop --------------------------------------------------------------------------------
    async def start(self, timeout: float = 180.0) -> Topology:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        await topology.destroy(self.plan)  # whatever a previous run of this data dir left
        try:
            await bounded(self._start(), timeout)
        except BaseException:
            await self.stop()
            raise
        write_pair_text(self.data_dir / "topology.json", json.dumps(describe_json(self), indent=1) + "\n")
        return self

    async def _start(self) -> None:
        self._made = True
        await topology.create(self.plan)
        for h in (*self.cp.etcd, *self.cp.apiservers):
            await topology._ip("ip", "netns", "add", h.netns)
            for argv in host_commands(self.plan, h):
                await topology._ip(*argv)
        await self._start_etcd()
        await self._start_apiservers()
        admin = self.client()
        try:
            svc = await admin.get("v1", "services", wk.KUBE_DNS_NAMESPACE, wk.KUBE_DNS_SERVICE)
            self.dns_ip = svc["spec"]["clusterIP"]
            await self._start_controllers()
            await self._start_nodes()
            await _wait_nodes_ready(admin, [n.name for n in self.plan.nodes], self.procs, 120.0)  # type: ignore[arg-type]
            await addons.install_dns(admin, self.opts.dns_replicas)
            await self._wait_dns(admin, 120.0)
        finally:
            await admin.close()

    async def _start_etcd(self) -> None:
        pki = self.data_dir / "pki-etcd"
        self._etcd_client = etcdpki.apiserver_client(pki)
        for h in self.cp.etcd:
            certs = etcdpki.member(pki, h.name, h.ip)
            data = self.data_dir / "etcd" / h.name
            data.mkdir(parents=True, exist_ok=True, mode=0o700)
            argv = ["nsenter", f"--net={netns_path(h.netns)}", "--",
                    *etcd_argv(etcd_binary(), self.cp, h, str(data), certs)]
            await self.procs.spawn(h.name, argv, env=go_env(len(self.cp.etcd)))  # all on this machine

    def _apiserver_argv(self, h: Host, port: int) -> list[str]:
        client = self._etcd_client
        interval, ttl = self.opts.endpoint_reconciler
        return [*PY, "servicenet.cluster.apiserver_proc", "--data-dir", str(self.config_dir),
                "--api-listen", f"127.0.0.1:{port}", "--storage", "etcd",
                "--etcd-servers", ",".join(self.cp.etcd_client_urls), "--etcd-cafile", client["ca"],
                "--etcd-certfile", client["cert"], "--etcd-keyfile", client["key"],
                *[a for c in self.opts.service_cidrs for a in ("--service-cidr", c)],
                "--netns", h.netns, "--lan-listen", f"{h.ip}:{API_PORT}",
                "--endpoint-reconciler-interval", str(interval), "--endpoint-reconciler-ttl", str(ttl),
                "--log-level", self.opts.log_level, *self.opts.extra_apiserver_args]

    async def _start_apiservers(self) -> None:
        first, *rest = self.cp.apiservers
        for group in ([first], rest):  # the first one alone: it writes the shared keys
            ports = await asyncio.gather(*(self._spawn_on_free_port(
                h.name, functools.partial(self._apiserver_argv, h),
                lambda port: f"listening on https://127.0.0.1:{port} ") for h in group))
            for h, port in zip(group, ports, strict=True):
                self.api_ports[h.name] = port
            await asyncio.gather(*(self.wait_api_ready(h.name, 90.0) for h in group))
        src = yaml.safe_load((self.config_dir / "kubeconfig").read_text())
        for h in self.cp.apiservers:
            doc = dict(src)
            doc["clusters"] = [{**c, "cluster": {**c["cluster"], "server": self.api_url(h)}} for c in src["clusters"]]
            for path in ((self.kubeconfig_for(h), self.kubeconfig) if h is first else (self.kubeconfig_for(h),)):
                write_pair_text(path, yaml.safe_dump(doc))

    async def readyz(self, name: str) -> int:
        """HTTP status of an API server's /readyz (0: no answer within 2 s)."""
        try:
            async with aiohttp.ClientSession() as s, s.get(self.api_url(name) + "/readyz", ssl=False,
                                                         timeout=aiohttp.ClientTimeout(total=2)) as r:
                return r.status
        except (aiohttp.ClientError, TimeoutError, OSError):
            return 0

    async def wait_api_ready(self, name: str, timeout: float = 60.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while await self.readyz(name) != 200 or not (self.config_dir / "kubeconfig").exists():
            if self.procs.failed():
                raise RuntimeError(f"exited: {', '.join(self.procs.failed())} (logs in {self.procs.logs})")
            if loop.time() > deadline:
                raise TimeoutError(f"{name} not ready within {timeout:.0f}s (log {self.procs.get(name).log_path})")
            await asyncio.sleep(0.1)

    def _component_kubeconfig(self, key: str, api: Host | str, identity: tuple[str, tuple[str, ...]]) -> str:
        url = api if isinstance(api, str) else self.api_url(api)
        return str(component_kubeconfig(self.config_dir, url, key, *identity))

    async def _spawn_relay(self, name: str, argv: list[str]) -> int:
        """Start a relay (``argv`` and ``--listen 127.0.0.1:PORT``) on a free loopback port; its port
        once it says it listens (``relay 127.0.0.1:PORT -> ...``)."""
        return await self._spawn_on_free_port(
            name, lambda port: [*argv, "--listen", f"127.0.0.1:{port}"], lambda port: f"relay 127.0.0.1:{port} ")

    async def _spawn_on_free_port(self, name: str, argv_for: Callable[[int], list[str]], says: Callable[[int], str],
                                  attempts: int = 5, timeout: float = 90.0) -> int:
        """Start ``argv_for(port)`` on a free loopback port; the port once the process's output
        holds ``says(port)`` (its own line that it listens).

        The port is chosen before the process binds it, so another process (a parallel test run,
        another cluster) may take it first: the process then exits with EADDRINUSE, and a new port
        is tried. Listening is read from the process's own line, not from a connect that another
        listener on the port could answer."""
        loop = asyncio.get_running_loop()
        for attempt in range(attempts):
            port = free_port()
            log_path = self.procs.log_path(name)
            seen = log_path.stat().st_size if log_path.exists() else 0
            p = await self.procs.spawn(name, argv_for(port))
            said = says(port).encode()
            deadline = loop.time() + timeout
            while True:
                with open(p.log_path, "rb") as f:
                    f.seek(seen)
                    out = f.read()
                if said in out:
                    return port
                if not p.running:
                    if b"address already in use" in out.lower() and attempt + 1 < attempts:
                        break  # taken between the choice and the bind: another port
                    raise RuntimeError(f"{name} exited before listening on 127.0.0.1:{port} (log {p.log_path})")
                if loop.time() > deadline:
                    raise RuntimeError(f"{name} does not listen on 127.0.0.1:{port} (log {p.log_path})")
                await asyncio.sleep(0.05)
        raise RuntimeError(f"{name}: no free port after {attempts} attempts")

    async def _start_controllers(self) -> None:
        duration, deadline, retry = self.opts.leader_elect
        le = ["--leader-elect", "--leader-elect-lease-duration", str(duration),
              "--leader-elect-renew-deadline", str(deadline), "--leader-elect-retry-period", str(retry)]
        others = ",".join(c for c in ALL_CONTROLLERS if c != "scheduler")
        n_api = len(self.cp.apiservers)
        for i in range(1, self.opts.controller_managers + 1):
            for what, controllers in (("controller-manager", others), ("scheduler", "scheduler")):
                api = self.cp.apiservers[(i - 1) % n_api]
                # the scheduler runs the manager's scheduling loop, with the manager's identity
                kc = self._component_kubeconfig(f"{what}-{i}", api, policy.CONTROLLER_MANAGER)
                # its own API server first, the others as failover servers (servicenet.client)
                urls = [self.api_url(api), *(self.api_url(h) for h in self.cp.apiservers if h is not api)]
                write_pair_text(Path(kc), with_failover(Path(kc).read_text(), urls))
                await self.procs.spawn(f"{what}-{i}", [
                    *PY, "servicenet.cli", "controller-manager", "--kubeconfig", kc, "--controllers", controllers,
                    "--health-listen", "127.0.0.1:0", "--node-monitor-grace-period",
                    str(self.opts.node_monitor_grace_period), "--log-level", self.opts.log_level, *le,
                    *self.opts.extra_controller_args])

    def api_candidates(self, node: NodePlan) -> list[Host]:
        """The API servers a node's relay tries, its preferred one first."""
        first = self.cp.apiserver_for(node)
        return [first, *(h for h in self.cp.apiservers if h is not first)]

    async def _start_nodes(self) -> None:
        nodes_dir = self.data_dir / "nodes"
        for node in self.plan.nodes:
            # a start is a reboot of every machine: the previous run's namespaces, and with them its
            # sandboxes, are gone (destroy killed what ran in them), so each agent starts from nothing
            # and recreates the pods the API binds to its node
            shutil.rmtree(nodes_dir / node.name, ignore_errors=True)
            # the node's way to the control plane: a relay on a loopback port that connects from the
            # node's namespace to the first API server that answers and passes its /readyz check
            # (as kubelets use an LB with health checks)
            port = await self._spawn_relay(f"{node.name}/apiserver-relay", [
                *PY, "servicenet.cluster.relay", "--netns", node.netns,
                *[a for h in self.api_candidates(node) for a in ("--to", f"{h.ip}:{API_PORT}")],
                "--check-readyz", "1", "--log-level", self.opts.log_level])
            self.api_ports[f"{node.name}/apiserver-relay"] = port
            url = f"https://127.0.0.1:{port}"
            node_kc = self._component_kubeconfig(f"node-{node.name}", url, policy.node_identity(node.name))
            proxy_kc = self._component_kubeconfig(f"proxy-{node.name}", url, policy.PROXY)
            issue = ca_issuer(self.config_dir / "pki", node.name)
            crt, key = write_pair(str(nodes_dir / node.name / "pki"), *issue(serving_hosts(node.ip, node.name)))
            agent = node_argv(self.plan, node, Path(node_kc), nodes_dir, self.dns_ip, self.opts.service_cidrs)["node"]
            proxy = node_argv(self.plan, node, Path(proxy_kc), nodes_dir, self.dns_ip, self.opts.service_cidrs)["proxy"]
            await self.procs.spawn(f"{node.name}/node", [*agent, "--tls-cert-file", crt, "--tls-private-key-file", key,
                                                        "--log-level", self.opts.log_level, *self.opts.extra_node_args])
            await self.procs.spawn(f"{node.name}/proxy", proxy)

    async def _wait_dns(self, client: ApiClient, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            d = await client.get("apps/v1", "deployments", wk.KUBE_DNS_NAMESPACE, "coredns")
            if (d.get("status") or {}).get("availableReplicas", 0) >= self.opts.dns_replicas:
                return
            if loop.time() > deadline:
                raise TimeoutError(f"DNS add-on not available within {timeout:.0f}s: {d.get('status')}")
            await asyncio.sleep(0.3)

    def node_names(self) -> list[str]:
        return [n.name for n in self.plan.nodes]

    def node(self, name: str) -> NodePlan:
        n = self.plan.node(name)
        assert n is not None, name
        return n

    async def stop(self) -> None:
        """Stop every process (nodes first: their agents stop their pods; etcd last) and remove
        every namespace of the cluster."""
        names = list(self.procs.procs)
        order = [[n for n in names if n.startswith("node-") and not n.endswith("/apiserver-relay")],
                 [n for n in names if n.endswith("/apiserver-relay")],
                 [n for n in names if n.startswith(("controller-manager", "scheduler"))],
                 [h.name for h in self.cp.apiservers], [h.name for h in self.cp.etcd]]
        for group in order:
            with contextlib.suppress(Exception):
                await self.procs.stop(group)
        if self._made:
            await topology.destroy(self.plan)

    def describe(self) -> list[str]:
        p, cp = self.plan, self.cp
        lines = [f"servicenet is up: {len(cp.etcd)} etcd, {len(cp.apiservers)} API servers, {len(p.nodes)} nodes "
                 f"(cluster id {p.id})"]
        for h in cp.etcd:
            lines.append(f"  {h.name:<22} https://{h.ip}:2379  netns {h.netns}")
        for h in cp.apiservers:
            lines.append(f"  {h.name:<22} {self.api_url(h)}  (LAN https://{h.ip}:{API_PORT}, netns {h.netns})  "
                         f"kubeconfig {self.kubeconfig_for(h)}")
        lines.append(f"  {'LAN':<22} {p.underlay} in {p.lan_netns}; an outside client: {p.client_netns} {p.client_ip}")
        for n in p.nodes:
            lines.append(f"  {n.name:<22} {n.ip}  podCIDR {n.pod_cidr}  netns {n.netns}  API via "
                         f"https://127.0.0.1:{self.api_ports[n.name + '/apiserver-relay']}")
        lines.append(f"  {'cluster DNS':<22} {self.dns_ip} (Deployment kube-system/coredns)")
        lines.append(f"  {'logs':<22} {self.procs.logs}")
        lines.append(f"\nexport KUBECONFIG={self.kubeconfig}\nservicenet ssh node-1 -- curl …\n")
        return lines


def write_pair_text(path: Path, text: str) -> None:
    """A kubeconfig (it holds the admin token): 0600."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


def options_from_args(args: argparse.Namespace) -> Options:
    return Options(data_dir=Path(args.data_dir), etcd=args.etcd, apiservers=args.apiservers or 1,
                   nodes=args.nodes or 1, service_cidrs=list(args.service_cidr or
                                                          wk.address_plan("netns").service_cidrs),
                   log_level=args.log_level)


async def run(args: argparse.Namespace) -> int:
    """The command: start, print where everything is, wait for SIGTERM/SIGINT, tear down."""
    topo = Topology(options_from_args(args))
    stop = asyncio.ensure_future(wait_for_signal())
    start = asyncio.ensure_future(topo.start())
    try:
        await asyncio.wait({start, stop}, return_when=asyncio.FIRST_COMPLETED)
        if stop.done():
            start.cancel()
            with contextlib.suppress(BaseException):
                await start
            return 0
        try:
            start.result()
        except Exception as exc:
            print(f"servicenet up: {exc}", file=sys.stderr)
            return 1
        print("\n".join(topo.describe()), flush=True)
        await stop
    finally:
        stop.cancel()
        await topo.stop()
    return 0


def describe_json(topo: Topology) -> dict[str, Any]:
    """Where everything is, as data (``<data-dir>/topology.json``, for tools)."""
    return {"id": topo.plan.id, "kubeconfig": str(topo.kubeconfig),
            "apiservers": {h.name: {"url": topo.api_url(h), "lan": f"https://{h.ip}:{API_PORT}", "netns": h.netns,
                                    "kubeconfig": str(topo.kubeconfig_for(h))} for h in topo.cp.apiservers},
            "etcd": {h.name: {"url": f"https://{h.ip}:2379", "netns": h.netns} for h in topo.cp.etcd},
            "nodes": {n.name: {"ip": n.ip, "netns": n.netns, "podCIDR": n.pod_cidr} for n in topo.plan.nodes},
            "client": {"ip": topo.plan.client_ip, "netns": topo.plan.client_netns}, "dns": topo.dns_ip,
            "processes": {n: {"pid": p.pid, "log": str(p.log_path)} for n, p in topo.procs.procs.items()}}
