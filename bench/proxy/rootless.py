"""Data path in the rootless (userns) mode against root netns mode, side by side.

The same world twice — a node namespace with a veth to a pod namespace running nginx, an
nftables DNAT from a ClusterIP to the pod (what the nftables proxy programs), wrk in the node
namespace against the ClusterIP — once made by root (``unshare --net --mount``) and once by
``nobody`` inside a user namespace (``unshare --user --map-root-user --net --mount``), then root
again (the ratio uses the mean of the two root runs, to bound drift on a shared machine).
Nothing touches the host's namespaces.

    python -m bench.proxy.rootless [--duration 5]     (as root: needs setpriv, nginx, wrk, nft)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# runs as (namespace) root inside a fresh network + mount namespace; $1 = work dir, $2 = duration
WORLD = r"""
set -e
W=$1; D=$2
mount -t tmpfs sn-bench /run/netns 2>/dev/null || { mount -t tmpfs sn-bench "$W/netns"; }
NS=/run/netns; [ -w $NS ] || NS=$W/netns
touch $NS/pod && unshare --net=$NS/pod true
ip link set lo up
ip link add sn-b-v0 type veth peer name eth0 netns $NS/pod 2>/dev/null || ip link add sn-b-v0 type veth peer name eth0 netns pod
ip addr add 10.250.0.1/24 dev sn-b-v0; ip link set sn-b-v0 up
ip route add 10.96.0.0/12 dev sn-b-v0 src 10.250.0.1   # as the proxy routes the service CIDR
nsenter --net=$NS/pod sh -c 'ip link set lo up; ip addr add 10.250.0.2/24 dev eth0; ip link set eth0 up'
nft -f - <<EOF
table ip sn-bench {
  chain out { type nat hook output priority -100; ip daddr 10.96.0.1 tcp dport 80 dnat to 10.250.0.2:8080; }
}
EOF
nsenter --net=$NS/pod nginx -c $W/nginx.conf -p $W &
NGX=$!; trap 'kill $NGX 2>/dev/null' EXIT
i=0; until nsenter --net=$NS/pod bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080' 2>/dev/null || [ $i -gt 100 ]; do
  i=$((i+1)); sleep 0.05; done
cpu() { echo "nginx_ticks $(awk '{print $14+$15}' /proc/$NGX/stat)"; times | tail -1 | sed 's/^/children /'; }
cpu
for path in small.txt big.bin; do
  for mode in keep close; do
    H=""; [ $mode = close ] && H="-H Connection:close"
    echo "== $path $mode"; wrk -t1 -c16 -d${D}s $H http://10.96.0.1/$path; cpu
  done
done
"""

NGINX = """user root root; worker_processes 1; daemon off; master_process off; pid {w}/nginx.pid; error_log {w}/nginx.err;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; keepalive_requests 1000000;
  client_body_temp_path {w}/cb; proxy_temp_path {w}/pt; fastcgi_temp_path {w}/ft; uwsgi_temp_path {w}/ut;
  scgi_temp_path {w}/st;
  server {{ listen 8080; root {w}/www; }} }}
"""


def _cpu(block: str) -> float:
    """Seconds of CPU so far: nginx's (its /proc stat ticks) plus the shell's finished children
    (wrk, by bash's ``times``) — where the kernel's packet work is mostly charged, too."""
    ticks = float(re.findall(r"nginx_ticks (\d+)", block)[-1]) / os.sysconf("SC_CLK_TCK")
    m, s, m2, s2 = re.findall(r"children (\d+)m([\d.]+)s (\d+)m([\d.]+)s", block)[-1]
    return ticks + int(m) * 60 + float(s) + int(m2) * 60 + float(s2)


def parse(out: str) -> dict[str, tuple[float, float]]:
    """``name -> (req/s, CPU µs per request)``."""
    res: dict[str, tuple[float, float]] = {}
    blocks = out.split("== ")
    before = _cpu(blocks[0])
    for block in blocks[1:]:
        name = " ".join(block.split()[:2])
        m = re.search(r"Requests/sec:\s+([\d.]+)", block)
        n = re.search(r"(\d+) requests in", block)
        after = _cpu(block)
        if m and n:
            res[name] = (float(m.group(1)), (after - before) * 1e6 / max(int(n.group(1)), 1))
        before = after
    return res


def world(work: Path, duration: int, rootless: bool) -> dict[str, tuple[float, float]]:
    for d in ("cb", "pt", "ft", "ut", "st", "nginx.err", "nginx.pid"):  # nginx's, from the previous run's owner
        p = work / d
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    cmd = ["unshare", "--net", "--mount", "--propagation", "private", "bash", "-c", WORLD, "world", str(work),
           str(duration)]
    if rootless:
        cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "unshare", "--user",
               "--map-root-user", *cmd[1:]]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration * 8 + 60)
    if out.returncode != 0:
        raise SystemExit(f"{'userns' if rootless else 'root'} world failed: {out.stderr[-2000:]}")
    return parse(out.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--duration", type=int, default=5)
    args, _ = ap.parse_known_args(argv)  # `python -m bench proxy` passes bench.proxy.run's options too
    if os.geteuid() != 0:
        print("bench proxy rootless: run as root (it compares root netns mode with nobody's userns mode)")
        return 2
    for tool in ("nginx", "wrk", "nft", "setpriv", "unshare"):
        if not shutil.which(tool):
            print(f"bench proxy rootless: {tool} is not installed (scripts/install-deps.sh)")
            return 2
    work = Path(tempfile.mkdtemp(prefix="sn-bench-rootless-"))
    try:
        (work / "www").mkdir()
        (work / "netns").mkdir()
        (work / "www" / "small.txt").write_bytes(b"x" * 100)
        (work / "www" / "big.bin").write_bytes(os.urandom(1 << 20))
        (work / "nginx.conf").write_text(textwrap.dedent(NGINX.format(w=work)))
        for root, dirs, files in os.walk(work):
            for d in dirs:
                os.chmod(os.path.join(root, d), 0o777)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644)
        os.chmod(work, 0o777)
        rows = {}
        print("load average before: {:.2f} {:.2f} {:.2f} on {} CPUs".format(*os.getloadavg(), os.cpu_count()))
        for label, rootless in (("root netns", False), ("userns", True), ("root netns (again)", False)):
            rows[label] = world(work, args.duration, rootless)
            for name, (rps, cpu) in rows[label].items():
                print(f"{label:20s} {name:18s} {rps:10.0f} req/s {cpu:8.1f} µs CPU/request", flush=True)
        print("\nratio userns / root netns (root = mean of the two root runs around it); req/s is wall-clock and\n"
              "moves with the machine's load, CPU per request (nginx + wrk, kernel work included) much less:")
        print(f"  {'':18s} {'req/s':>8s} {'CPU/request':>12s}")
        for name in rows["userns"]:
            rps = (rows["root netns"][name][0] + rows["root netns (again)"][name][0]) / 2
            cpu = (rows["root netns"][name][1] + rows["root netns (again)"][name][1]) / 2
            print(f"  {name:18s} {rows['userns'][name][0] / rps:8.2f} {rows['userns'][name][1] / cpu:12.2f}")
        print("load average after: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
