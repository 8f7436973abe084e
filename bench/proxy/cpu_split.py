"""Service proxy: user vs system (kernel) CPU of nftables syncs, in one process (root).

    python -m bench.proxy.cpu_split [--services 10000] [--changes 30]

Wall times on a shared machine mostly say who got the CPU; this prints the process's user and
system time (``getrusage``; the kernel's netlink work runs in the sending thread, so it is
system time here) for a cold full sync, two resyncs over the populated table, one by a new
backend (a restarted proxy), and partial syncs
of two kinds, interleaved: an endpoint count change (the service's rule is rewritten) and an
endpoint address change with the count kept (map elements only).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.proxy.run import drop_endpoint, world  # noqa: E402
from servicenet.proxy.model import DesiredState, ServicePortName, compute  # noqa: E402
from servicenet.proxy.render_nftables import NftConfig  # noqa: E402
from servicenet.proxy.sync import NftablesBackend  # noqa: E402


def _ru() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def swap_address(state: DesiredState, k: int, gen: int) -> tuple[DesiredState, set[ServicePortName]]:
    """``state`` with the last endpoint of the k-th service moved to a fresh address (count kept)."""
    names = state.sorted_names()
    spn = names[k % len(names)]
    st = state.services[spn]
    old = st.endpoints[-1]
    new = old._replace(ip=f"10.250.{(gen >> 8) & 255}.{gen & 255}")
    services = dict(state.services)
    services[spn] = replace(st, endpoints=(*st.endpoints[:-1], new),
                            cluster=tuple(new if e == old else e for e in st.cluster))
    return replace(state, services=services), {spn}


async def bench(n: int, changes: int) -> dict[str, Any]:
    s1 = compute(*world(n, 10), "n1", ["10.244.0.1"])
    ns = f"sn-{uuid.uuid4().hex[:6]}-cs"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    out: dict[str, Any] = {}
    try:
        b = NftablesBackend(ns, NftConfig(cluster_cidr="10.244.0.0/16"), 120)
        for what in ("full", "resync", "resync2", "restart"):
            if what == "restart":  # a new backend (a restarted proxy) over the populated table
                b = NftablesBackend(ns, NftConfig(cluster_cidr="10.244.0.0/16"), 120)
            u0, s0 = _ru()
            await b.apply(s1, None)
            u1, s1_ = _ru()
            out[what] = (u1 - u0, s1_ - s0)
            print(f"{what:8s} user {u1 - u0:6.2f} s  sys {s1_ - s0:6.2f} s", flush=True)
        for rnd in range(2):
            for kind in ("count", "address"):
                state, us, ss = s1, 0.0, 0.0
                for k in range(changes):
                    state, ch = (drop_endpoint(state, k * 7919 + 13) if kind == "count"
                                 else swap_address(state, k * 7919 + 5, rnd * 1000 + k + 1))
                    u0, s0 = _ru()
                    await b.apply(state, ch)
                    u1, s1_ = _ru()
                    us, ss = us + u1 - u0, ss + s1_ - s0
                out[f"{kind}{rnd}"] = (us / changes, ss / changes)
                print(f"one endpoint {kind:7s} change: user {us / changes * 1e3:5.1f} ms  "
                      f"sys {ss / changes * 1e3:5.1f} ms (mean of {changes})", flush=True)
                await b.apply(s1, None)  # back to the start for the next kind
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--changes", type=int, default=30)
    args = ap.parse_args(argv)
    asyncio.run(bench(args.services, args.changes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
