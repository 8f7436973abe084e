"""A/B of the writes a large cluster makes all the time: node Lease renews and pod status flips
(the kubelet's two steady writes), through two API servers on one etcd, this checkout against
another one (``--base``), in alternating rounds so both see the same machine.

    git -C /work/main worktree add /tmp/base main   # or any checkout: its servers run from that tree
    .venv/bin/python -m bench.cluster.writes_ab --base /tmp/base [--leases 300 --renews 3000 --flips 1000] [--rounds 2]

Each round and side gets a fresh one-member etcd and two fresh API servers. The Leases are created
first (not counted); then ``--renews`` renews, each Lease in turn, through the servers alternately
(16 in flight), as :class:`servicenet.node.lease.NodeLease` does them; then ``--flips`` status
writes of pods flipping Ready. Printed per side and phase: the API servers' CPU per write (both
servers summed, from /proc: load-independent) and etcd's, with the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.api.server_proc import ROOT, ServerProc, cpu_seconds
from bench.cluster import hollow
from servicenet.client import ApiClient, ApiError
from servicenet.node.lease import NodeLease
from servicenet.store.etcdlaunch import Cluster

NS = "writes"


def _kubeconfig(shared: Path, port: int, out: Path) -> Path:
    out.write_text(re.sub(r"(server:\s*https://)[^\s/]+", rf"\g<1>127.0.0.1:{port}", shared.read_text()))
    out.chmod(0o600)
    return out


async def _phases(clients: list[ApiClient], servers: list[ServerProc], etcd_pid: int, args: argparse.Namespace) -> dict[str, Any]:
    members = hollow.nodes(args.leases)
    leases = [NodeLease(clients[i % 2], n.name) for i, n in enumerate(members)]
    sem = asyncio.Semaphore(16)

    async def limited(coro: Any) -> None:
        async with sem:
            await coro

    await asyncio.gather(*(limited(le.renew_once()) for le in leases))
    await clients[0].create("v1", "namespaces", None, {"metadata": {"name": NS}})
    for _ in range(200):  # the other server sees it through its etcd watch
        try:
            await clients[1].get("v1", "namespaces", None, NS)
            break
        except ApiError:
            await asyncio.sleep(0.05)
    pods = [f"p-{i:04d}" for i in range(args.pods)]
    hn = hollow.HollowNodes(clients, members)
    await hn.start_pods(NS, [(p, members[i % len(members)], i // len(members), {"app": "x"}) for i, p in enumerate(pods)])
    out: dict[str, Any] = {}

    def cpu() -> tuple[float, float]:
        return sum(s.cpu() for s in servers), cpu_seconds(etcd_pid)

    async def flip(k: int) -> None:
        i = k % len(pods)
        node = members[i % len(members)]
        await hn.set_ready(NS, pods[i], node.pod_ip(i // len(members)), k % 2 == 1, client=clients[k % 2])

    for phase, n, one in (("lease renew", args.renews, lambda k: leases[k % len(leases)].renew_once()),
                          ("pod status flip", args.flips, flip)):
        a0, e0 = cpu()
        load0 = os.getloadavg()[0]
        await asyncio.gather(*(limited(one(k)) for k in range(n)))
        a1, e1 = cpu()
        out[phase] = {"api_us": (a1 - a0) / n * 1e6, "etcd_us": (e1 - e0) / n * 1e6,
                      "load": (load0 + os.getloadavg()[0]) / 2}
    return out


def one(root: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    cluster = Cluster(work / "etcd", 1)
    servers: list[ServerProc] = []
    try:
        cluster.start()
        extra = ["--etcd-servers", ",".join(cluster.endpoints)]
        for _ in range(2):
            servers.append(ServerProc(work / "config", "etcd", extra=extra, root=root))
            servers[-1].start()
        etcd_pid = next(m.proc.pid for m in cluster.members if m.proc is not None)
        kcs = [_kubeconfig(work / "config" / "kubeconfig", s.target.port, work / f"kc-{i}")  # type: ignore[union-attr]
               for i, s in enumerate(servers)]

        async def go() -> dict[str, Any]:
            clients = [ApiClient.from_kubeconfig(k, user_agent="bench-writes") for k in kcs]
            try:
                return await _phases(clients, servers, etcd_pid, args)
            finally:
                for c in clients:
                    await c.close()
        return asyncio.run(go())
    finally:
        for s in servers:
            s.stop()
        cluster.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="the other checkout (its servicenet runs the B side)")
    ap.add_argument("--leases", type=int, default=300)
    ap.add_argument("--renews", type=int, default=3000)
    ap.add_argument("--pods", type=int, default=300)
    ap.add_argument("--flips", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    sides = [("this", ROOT), ("base", args.base)]
    print(f"{'round side':12s}{'phase':18s}{'API CPU us/write':>17s}{'etcd us':>9s}{'load':>6s}", flush=True)
    for r in range(args.rounds):
        for label, root in (sides if r % 2 == 0 else sides[::-1]):
            work = Path(tempfile.mkdtemp(prefix="bench-writes-ab-"))
            try:
                res = one(root, work, args)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            for phase, o in res.items():
                print(f"{r:<5d} {label:6s}{phase:18s}{o['api_us']:17,.0f}{o['etcd_us']:9,.0f}{o['load']:6.1f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
