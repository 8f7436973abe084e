"""Pod networking for the three modes.

* **netns** (root): a node namespace ``sn-<id>-node`` holding bridge ``sn-<id>-br`` with the
  gateway (``.1``) of the node's pod /24; every pod gets namespace ``sn-<id>-p<n>`` with a veth
  pair (``sn-<id>-v<n>`` on the bridge, hairpin on; ``eth0`` in the pod).  Nothing is created in
  the root namespace, and traffic to pod IPs is only ever sent from inside the node namespace.
* **loopback**: pod IPs come from a 127/8 range; no kernel change is needed (127/8 is local).
* **virtual**: IPs only.

:class:`IPAM` is the pure address allocator.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import ipaddress
import os
import socket
from dataclasses import dataclass

from servicenet.common import log
from servicenet.common.netns import _setns, list_netns, netns_path
from servicenet.common.userns import netns_add_argv

__all__ = ["IPAM", "NetworkError", "PodNetwork", "PodSandbox", "make_network"]

_log = log.get("node.network")


class NetworkError(Exception):
    """Setting up or tearing down pod networking failed."""


class IPAM:
    """Addresses of one pod CIDR: skips network, ``.1`` (gateway) and broadcast; lowest free first."""

    def __init__(self, cidr: str) -> None:
        self.net = ipaddress.ip_network(cidr, strict=False)
        self.gateway = str(self.net.network_address + 1)
        self._used: dict[str, str] = {}  # ip -> owner key
        self._cursor = 0

    def allocate(self, owner: str) -> str:
        """The owner's address (allocated round-robin after the last one handed out)."""
        for ip, key in self._used.items():
            if key == owner:
                return ip
        first = int(self.net.network_address) + 2
        span = int(self.net.broadcast_address) - 1 - first + 1
        for i in range(max(span, 0)):
            cand = first + (self._cursor + i) % span
            ip = str(ipaddress.ip_address(cand))
            if ip not in self._used:
                self._used[ip] = owner
                self._cursor = (cand - first + 1) % span
                return ip
        raise NetworkError(f"pod CIDR {self.net} exhausted")

    def reserve(self, ip: str, owner: str) -> None:
        self._used[ip] = owner

    def release(self, ip: str) -> None:
        self._used.pop(ip, None)

    def in_use(self) -> dict[str, str]:
        return dict(self._used)


@dataclass(frozen=True, slots=True)
class PodSandbox:
    """A pod's network identity: its IP and (netns mode) its namespace name."""

    key: str
    ip: str
    netns: str | None = None
    index: int = 0


async def _run(*argv: str, stdin: str | None = None, check: bool = True) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    if check and proc.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {err.decode().strip()}")
    return out.decode()


class PodNetwork:
    """Loopback / virtual networking (and the base of :class:`NetnsNetwork`)."""

    mode = "loopback"

    def __init__(self, pod_cidr: str, mode: str = "loopback") -> None:
        self.mode = mode
        self.ipam = IPAM(pod_cidr)
        self.pod_cidr = str(self.ipam.net)
        self.node_ip = "127.0.0.1"
        self.node_netns: str | None = None
        self._counter = 0

    async def setup(self) -> None:
        return None

    async def teardown(self) -> None:
        return None

    def adopt(self, sb: PodSandbox) -> None:
        self.ipam.reserve(sb.ip, sb.key)
        self._counter = max(self._counter, sb.index)

    async def add_pod(self, key: str) -> PodSandbox:
        self._counter += 1
        return PodSandbox(key=key, ip=self.ipam.allocate(key), index=self._counter)

    async def remove_pod(self, sb: PodSandbox) -> None:
        self.ipam.release(sb.ip)

    async def connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Open a TCP connection the way the node sees the pod network."""
        return await asyncio.open_connection(host, port)

    def owned_namespaces(self) -> list[str]:
        return []


class NetnsNetwork(PodNetwork):
    mode = "netns"

    def __init__(self, pod_cidr: str, net_id: str, node_netns: str | None = None, node_ip: str | None = None) -> None:
        """``node_netns``/``node_ip``: a node namespace made by someone else (``servicenet up --nodes``:
        it holds the node's underlay ``eth0`` with ``node_ip``); the agent adds its bridge to it."""
        super().__init__(pod_cidr, "netns")
        if len(f"sn-{net_id}-v") > 9:
            raise NetworkError(f"network id {net_id!r} too long for interface names")
        self.net_id = net_id
        self.prefix = f"sn-{net_id}-"
        self.node_netns = node_netns or f"sn-{net_id}-node"
        self.bridge = f"sn-{net_id}-br"
        self.node_ip = node_ip or self.ipam.gateway
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None

    def _enter_node_ns(self) -> None:
        assert self.node_netns is not None
        fd = os.open(netns_path(self.node_netns), os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)

    async def setup(self) -> None:
        ns = self.node_netns
        assert ns is not None
        if ns not in list_netns():
            await _run(*netns_add_argv(ns))
        if self.bridge not in await _run("ip", "-n", ns, "-o", "link", "show"):
            plen = self.ipam.net.prefixlen
            await _run("ip", "-n", ns, "-batch", "-", stdin="\n".join([
                "link set lo up",
                # a fixed MAC: a bridge otherwise takes its lowest port's, which changes as pods come,
                # and pods' ARP entries for the gateway go stale (pod -> node traffic lost for seconds)
                f"link add {self.bridge} address {bridge_mac(self.net_id)} type bridge",
                f"addr add {self.ipam.gateway}/{plen} dev {self.bridge}",
                f"link set {self.bridge} up",
            ]) + "\n")
            await _run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix=f"{ns}-dial", initializer=self._enter_node_ns)

    async def add_pod(self, key: str) -> PodSandbox:
        self._counter += 1
        n = self._counter
        ip = self.ipam.allocate(key)
        pod_ns, veth = f"{self.prefix}p{n}", f"{self.prefix}v{n}"
        if len(veth) > 15:
            raise NetworkError(f"interface name {veth} too long")
        try:
            await _run(*netns_add_argv(pod_ns))
            await _run("ip", "-n", str(self.node_netns), "-batch", "-", stdin="\n".join([
                f"link add {veth} type veth peer name eth0 netns {pod_ns}",
                f"link set {veth} master {self.bridge}",
                f"link set dev {veth} type bridge_slave hairpin on",
                f"link set {veth} up",
            ]) + "\n")
            await _run("ip", "-n", pod_ns, "-batch", "-", stdin="\n".join([
                "link set lo up",
                "link set eth0 up",
                f"addr add {ip}/{self.ipam.net.prefixlen} dev eth0",
                f"route add default via {self.ipam.gateway}",
            ]) + "\n")
        except BaseException:
            await _run("ip", "netns", "del", pod_ns, check=False)
            self.ipam.release(ip)
            raise
        return PodSandbox(key=key, ip=ip, netns=pod_ns, index=n)

    async def remove_pod(self, sb: PodSandbox) -> None:
        if sb.netns and sb.netns.startswith(self.prefix):
            await _run("ip", "netns", "del", sb.netns, check=False)
        self.ipam.release(sb.ip)

    async def connect(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._executor is None:
            raise NetworkError("network not set up")
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = await loop.run_in_executor(self._executor, socket.socket, family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return await asyncio.open_connection(sock=sock)

    def owned_namespaces(self) -> list[str]:
        return [n for n in list_netns() if n.startswith(self.prefix)]

    async def teardown(self) -> None:
        """Remove every namespace this network created (pod namespaces first, then the node's)."""
        names = self.owned_namespaces()
        for name in sorted(names, key=lambda n: n == self.node_netns):
            await _run("ip", "netns", "del", name, check=False)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None


def make_network(mode: str, pod_cidr: str, net_id: str, node_netns: str | None = None,
                 node_ip: str | None = None) -> PodNetwork:
    if mode == "netns":
        return NetnsNetwork(pod_cidr, net_id, node_netns, node_ip)
    if mode in ("loopback", "virtual"):
        return PodNetwork(pod_cidr, mode)
    raise NetworkError(f"unknown network mode {mode!r}")


def bridge_mac(net_id: str) -> str:
    """A stable, locally administered unicast MAC for the node bridge of network ``net_id``."""
    d = hashlib.sha256(net_id.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in d[:5])
