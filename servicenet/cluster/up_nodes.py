"""``servicenet up --nodes N`` (netns mode, root) and ``servicenet ssh NODE``.

The API server and the controller manager run in this process; every node is a network namespace
on the LAN bridge (``servicenet.cluster.plan``) with its own node agent, service proxy and DNS as
separate processes (``servicenet node|proxy|dns``), exactly as on separate machines. The node
agents route the other nodes' pod CIDRs via their node IPs (host-gw). SIGTERM (or a failed start)
stops the processes and removes every namespace of the cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from servicenet.api import wellknown as wk
from servicenet.client import ApiClient
from servicenet.common import log
from servicenet.common.component import bounded
from servicenet.common.netns import netns_path
from servicenet.common.runner import wait_for_signal

from . import topology
from .plan import CLUSTER_CIDR, ClusterPlan, NodePlan, plan

_log = log.get("cluster")
STOP_TIMEOUT = 15.0


def _cluster_id(data_dir: Path) -> str:
    """This data dir's cluster id (3 hex digits), kept in ``cluster.json``."""
    path = data_dir / "cluster.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        cid = str(json.loads(path.read_text())["id"])
        if len(cid) == 3:
            return cid
    cid = secrets.token_hex(2)[:3]
    data_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"id": cid}))
    return cid


def node_argv(p: ClusterPlan, node: NodePlan, kubeconfig: Path, data_dir: Path, dns_ip: str,
              service_cidrs: list[str]) -> dict[str, list[str]]:
    """The three processes of one node: ``servicenet node``, ``proxy`` and ``dns`` (pure)."""
    me = [sys.executable, "-m", "servicenet.cli"]
    kc = ["--kubeconfig", str(kubeconfig)]
    return {
        "node": [*me, "node", *kc, "--node-name", node.name, "--network", "netns", "--pod-cidr", node.pod_cidr,
                 "--cluster-dns", dns_ip, "--data-dir", str(data_dir / node.name), "--port", "0",
                 "--node-ip", node.ip, "--netns-name", node.netns, "--underlay-cidr", p.underlay,
                 "--net-id", node.net_id],
        "proxy": [*me, "proxy", *kc, "--mode", "nftables", "--node-name", node.name, "--netns", node.netns,
                  "--cluster-cidr", CLUSTER_CIDR, *[a for c in service_cidrs for a in ("--service-cidr", c)],
                  "--health-listen", "127.0.0.1:0"],
        "dns": [*me, "dns", *kc, "--netns", node.netns, "--dns-ip", dns_ip, "--dns-listen", "127.0.0.1:0",
                "--health-listen", "127.0.0.1:0", "--pods", "insecure"],
    }


class NodeProcesses:
    """The processes of every node, their logs under ``<data-dir>/nodes/<node>/``."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, asyncio.subprocess.Process]] = []

    async def spawn(self, what: str, argv: list[str], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
        with open(log_path, "ab") as f:
            proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=f,
                                                        stderr=f, env=env, start_new_session=True)
        self.procs.append((what, proc))

    def failed(self) -> list[str]:
        return [w for w, p in self.procs if p.returncode is not None]

    async def stop(self) -> None:
        for _, p in reversed(self.procs):
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        for what, p in self.procs:
            try:
                await bounded(p.wait(), STOP_TIMEOUT)
            except TimeoutError:
                _log.warning("process did not stop, killing it", process=what, pid=p.pid)
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                await p.wait()
        self.procs.clear()


async def _wait_nodes_ready(client: ApiClient, names: list[str], procs: NodeProcesses, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if procs.failed():
            raise RuntimeError(f"node processes exited: {', '.join(procs.failed())}")
        items = (await client.list("v1", "nodes"))["items"]
        ready = {n["metadata"]["name"] for n in items
                 if any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in (n.get("status") or {}).get("conditions") or [])}
        if set(names) <= ready:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"nodes not Ready within {timeout:.0f}s")


async def run(args: argparse.Namespace, api: Any, extra: list[Any]) -> int:
    """Bring the nodes up around a started API server; ``extra`` are in-process components to run."""
    data_dir = Path(args.data_dir)
    p = plan(_cluster_id(data_dir), args.nodes)
    await topology.destroy(p)  # whatever a previous run of this data dir left
    client = ApiClient.from_kubeconfig(api.kubeconfig_path, user_agent="servicenet-up")
    procs = NodeProcesses()
    started: list[Any] = []
    try:
        for comp in extra:
            await comp.start()
            started.append(comp)
        await topology.create(p)
        dns_ip = api.services.dns_ip()
        cidrs = list(args.service_cidr or wk.address_plan("netns").service_cidrs)
        for node in p.nodes:
            for what, argv in node_argv(p, node, api.kubeconfig_path, data_dir / "nodes", dns_ip, cidrs).items():
                await procs.spawn(f"{node.name}/{what}", argv, data_dir / "nodes" / node.name / f"{what}.log")
        await _wait_nodes_ready(client, [n.name for n in p.nodes], procs, 120.0)
        print(f"servicenet is up with {len(p.nodes)} nodes (cluster id {p.id})")
        print(f"  {'apiserver':<20} {api.url}")
        print(f"  {'LAN':<20} {p.underlay} in {p.lan_netns}; an outside client: {p.client_netns} {p.client_ip}")
        for node in p.nodes:
            print(f"  {node.name:<20} {node.ip}  podCIDR {node.pod_cidr}  netns {node.netns}  "
                  f"logs {data_dir / 'nodes' / node.name}")
        print(f"\nexport KUBECONFIG={api.kubeconfig_path}\nservicenet ssh node-1 -- curl …\n", flush=True)
        await wait_for_signal()
    finally:
        await procs.stop()
        for comp in reversed(started):
            with contextlib.suppress(Exception):
                await comp.stop()
        await topology.destroy(p)
        await client.close()
    return 0


# -- servicenet ssh ----------------------------------------------------------------------------------


def ssh_main(argv: list[str]) -> int:
    """``servicenet ssh NODE [-- CMD ...]``: a shell (or CMD) in the node's network namespace."""
    ap = argparse.ArgumentParser(prog="servicenet ssh", description="enter a node's namespaces (like minikube ssh)")
    ap.add_argument("node")
    ap.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd

    async def netns_of() -> str:
        client = ApiClient.from_kubeconfig(args.kubeconfig)
        try:
            node = await client.get("v1", "nodes", None, args.node)
        finally:
            await client.close()
        return str(((node.get("metadata") or {}).get("annotations") or {}).get(wk.NETNS_ANNOTATION) or "")

    ns = asyncio.run(netns_of())
    if not ns:
        print(f"servicenet ssh: node {args.node} has no network namespace (not a netns-mode node)", file=sys.stderr)
        return 1
    argv_ = ["nsenter", f"--net={netns_path(ns)}", "--", *(cmd or [os.environ.get("SHELL", "/bin/sh")])]
    os.execvp(argv_[0], argv_)
    return 127  # (not reached)
