"""The rootless walkthrough, run as the unprivileged user test_userns created (setpriv), with the
python of that user's checkout. It runs the README's ``make up`` (``servicenet up`` with the
default ``--network auto``) three times and drives it with the real kubectl, curl, wget, nslookup,
dig:

1. user namespaces allowed, subordinate ids mapped: the hostnames and web walkthroughs from a pod
   and from the host through the published forwarder, then the seeds' walkthroughs
   (userns_walks.py) on the same cluster; then SIGTERM;
2. a second cluster in iptables proxy mode whose ``newuidmap`` fails (a PATH shim: the one-uid
   mapping), with pods, then SIGKILL of ``servicenet up``: everything must go;
3. with an ``unshare`` that fails (a PATH shim): the loopback fallback and its port offset.

Usage: ``python3 userns_unpriv.py <writable dir> <checkout>``. Prints one JSON line of
observations; the test makes the assertions.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import userns_walks as walks  # copied next to this script

N = 600


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def until(fn: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """``walks.wait``, ending the script with the one line that says what did not happen."""
    try:
        return walks.wait(fn, timeout, what, interval)
    except AssertionError as exc:
        raise SystemExit(str(exc)) from None


CHECKOUT = Path(".")  # set by main(): the user's checkout, where `make up` runs


class Up:
    """One ``make up`` (the README's command) with its output collected by a thread. ``ARGS`` only
    moves the listeners off the default ports and leaves the ingress out (concurrent runs); the
    network mode is ``servicenet up``'s default, ``auto``."""

    def __init__(self, data: Path, extra_env: dict[str, str] | None = None, extra: tuple[str, ...] = ()) -> None:
        self.data = data
        self.api, self.dns = free_port(), free_port()
        args = ["--data-dir", str(data), "--api-listen", f"127.0.0.1:{self.api}",
                "--dns-listen", f"127.0.0.1:{self.dns}", "--only", "controller-manager,node,dns,proxy", *extra]
        argv = ["make", "--no-print-directory", "-C", str(CHECKOUT), "up", "ARGS=" + " ".join(args)]
        env = dict(os.environ, **(extra_env or {}))
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        try:
            until(lambda: any("export KUBECONFIG" in ln for ln in self.lines) or self.proc.poll() is not None,
                  120, "servicenet up")
        except SystemExit:
            self.stop()
            raise SystemExit("servicenet up did not come up:\n" + "".join(self.lines[-40:])) from None
        if self.proc.poll() is not None:
            raise SystemExit("servicenet up exited:\n" + "".join(self.lines[-40:]))
        rootless = any(ln.startswith("servicenet up: user namespace:") for ln in self.lines)
        self.namespaces = until(self._user_namespaces, 10, "the holder's user namespace") if rootless else set()
        self.env = dict(os.environ, KUBECONFIG=str(data / "kubeconfig"))

    def _user_namespaces(self) -> set[str]:
        """The user namespaces our descendants live in (the holder's), other than our own."""
        me, out, todo = own_userns(), set(), [self.proc.pid]
        while todo:
            pid = todo.pop()
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    todo += [int(x) for x in f.read().split()]
                ns = os.readlink(f"/proc/{pid}/ns/user")
            except OSError:
                continue
            if ns != me:
                out.add(ns)
        return out

    def left(self) -> list[str]:
        """Processes (of any uid) still in this cluster's user namespaces."""
        return processes_in(self.namespaces)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def summary(self) -> str:
        return "".join(ln for ln in self.lines if not ln.startswith("20"))  # the printed part, not logs

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        p = subprocess.run(["kubectl", *args], env=self.env, capture_output=True, text=True, input=input,
                           timeout=120)
        if check and p.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)}: {p.stderr}")
        return p.stdout

    def pods(self) -> dict[str, dict[str, Any]]:
        items = json.loads(self.kubectl("get", "pods", "-o", "json"))["items"]
        return {p["metadata"]["name"]: p for p in items}

    def ready_pods(self, prefix: str) -> dict[str, str]:
        out = {}
        for name, p in self.pods().items():
            conds = (p.get("status") or {}).get("conditions") or []
            if name.startswith(prefix) and any(c["type"] == "Ready" and c["status"] == "True" for c in conds):
                out[name] = p["status"]["podIP"]
        return out

    def servicenet(self) -> int:
        """The ``servicenet up`` process make runs (make's recipe execs it; make passes no signal on)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        return kids[0] if kids else self.proc.pid

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Signal ``servicenet up`` (as Ctrl-C or kill would); make's exit status."""
        try:
            os.kill(self.servicenet(), sig)
        except ProcessLookupError:
            pass
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


def gone(up: Up, timeout: float, what: str, res: dict[str, Any], interval: float = 0.2) -> list[str]:
    """Wait until no process is left in ``up``'s user namespaces; on a timeout the message names
    what is left (pid, state, parent, command line) and how ``servicenet up`` ended."""
    try:
        return list(until(lambda: not up.left() and ["none"], timeout, what, interval))
    except SystemExit as exc:
        left = [describe(p.split(":")[0]) for p in up.left()]
        raise SystemExit(f"{exc}\nleft: {left}\nterm_rc: {res.get('term_rc')}\n"
                         f"servicenet up's last lines:\n{''.join(up.lines[-30:])}") from None


def describe(pid: str) -> str:
    """``pid state=S ppid=N wchan=… cmdline`` of one process (what /proc still says)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:200]
        try:
            with open(f"/proc/{pid}/wchan") as f:
                wchan = f.read().strip()
        except OSError:
            wchan = "?"
        return f"{pid} state={fields[0]} ppid={fields[1]} wchan={wchan} {cmd}"
    except (OSError, IndexError):
        return f"{pid} (gone)"


def own_userns() -> str:
    return os.readlink("/proc/self/ns/user")


def processes_in(namespaces: set[str]) -> list[str]:
    """``pid:comm`` of every process in one of ``namespaces`` (user namespace links); a process of
    another user's namespace is unreadable and so never counted (concurrent runs do not interfere)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.readlink(f"/proc/{pid}/ns/user") in namespaces:
                    with open(f"/proc/{pid}/comm") as f:
                        out.append(f"{pid}:{f.read().strip()}")
            except OSError:
                continue
    return out


def counts(cmd: list[str], env: dict[str, str] | None = None) -> Counter[str]:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env).stdout
    return Counter(ln.strip() for ln in out.splitlines() if ln.strip())


def curl_loop(url: str, n: int) -> list[str]:
    return ["sh", "-c", f"i=0; while [ $i -lt {n} ]; do i=$((i+1)); curl -s --max-time 2 {url} || echo fail; "
                        "echo; done"]


def userns_run(tmp: Path, manifests: Path, res: dict[str, Any]) -> None:
    data = tmp / "userns"
    up = Up(data)
    res["summary"] = up.summary()
    try:
        up.kubectl("apply", "-f", str(manifests / "hostnames.yaml"))
        up.kubectl("apply", "-f", str(manifests / "web-sts.yaml"))
        up.kubectl("patch", "svc", "hostnames", "-p", '{"spec":{"type":"NodePort"}}')
        up.kubectl("run", "u1000", "--image=registry.k8s.io/serve_hostname",
                   '--overrides={"spec":{"securityContext":{"runAsUser":1000,"runAsGroup":1000}}}')
        pods = until(lambda: (p := up.ready_pods("hostnames")) and len(p) == 3 and p, 90, "3 hostnames pods")
        until(lambda: "web-0" in up.ready_pods("web-0") and "u1000" in up.ready_pods("u1000"), 90,
              "web-0 and u1000 ready")
        res["pods"] = pods
        svc = json.loads(up.kubectl("get", "svc", "hostnames", "-o", "json"))
        vip = svc["spec"]["clusterIP"]
        res["vip"] = vip
        client = sorted(pods)[0]

        def in_pod(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(["kubectl", "exec", client, "--", *argv], env=up.env, capture_output=True,
                                  text=True, timeout=300)

        loop = f"i=0; while [ $i -lt {{n}} ]; do i=$((i+1)); wget -q -T 2 -O- http://{vip}:80/ || echo fail; echo; done"
        until(lambda: set(Counter(ln.strip() for ln in in_pod("sh", "-c", loop.format(n=12)).stdout.split()
                                  if ln.strip())) == set(pods), 30, "the ClusterIP answering from every pod")
        res["pod_spread"] = dict(Counter(ln.strip() for ln in in_pod("sh", "-c", loop.format(n=N)).stdout.split()
                                         if ln.strip()))
        # from the host: the forwarder named by the Service annotation
        ann = ""

        def annotated() -> str:
            nonlocal ann
            s = json.loads(up.kubectl("get", "svc", "hostnames", "-o", "json"))
            ann = (s["metadata"].get("annotations") or {}).get("servicenet.dev/host-ports", "")
            return ann
        until(annotated, 30, "host-ports annotation")
        res["host_ports_annotation"] = ann
        host_addr = ann.split()[1]  # "<port-name> 127.0.0.1:<port> -> <node ip>:<port>"
        res["describe"] = up.kubectl("describe", "svc", "hostnames")
        res["host_spread"] = dict(counts(curl_loop(f"http://{host_addr}/", N)))
        # names and identity inside a pod
        ns = in_pod("nslookup", "web-0.nginx")
        res["nslookup"] = ns.stdout + ns.stderr
        res["web0_ip"] = up.ready_pods("web-0")["web-0"]
        h = in_pod("hostname")
        res["hostname"] = [h.returncode, h.stdout.strip(), client]
        res["resolv"] = in_pod("cat", "/etc/resolv.conf").stdout
        # the nftables proxy: its table inside the node namespace (entered like the cluster does)
        node_ns = next(ln.split()[-1] for ln in up.summary().splitlines() if ln.strip().startswith("node netns"))
        res["node_netns"] = node_ns
        holder = next(p.split(":")[0] for p in up.left() if p.endswith(":sleep"))
        nft = subprocess.run(["nsenter", f"--target={holder}", "--user", "--mount", "--preserve-credentials",
                              "ip", "netns", "exec", node_ns, "nft", "list", "tables"],
                             capture_output=True, text=True, timeout=30)
        res["nft_tables"] = nft.stdout + nft.stderr
        res["logs"] = up.kubectl("logs", client)
        pf_port = free_port()
        pf = subprocess.Popen(["kubectl", "port-forward", client, f"{pf_port}:9376"], env=up.env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            assert pf.stdout is not None
            pf.stdout.readline()  # "Forwarding from 127.0.0.1:<port> -> 9376"
            res["port_forward"] = subprocess.run(["curl", "-s", "--max-time", "5", f"http://127.0.0.1:{pf_port}/"],
                                                 capture_output=True, text=True).stdout.strip()
        finally:
            pf.kill()
            pf.wait()
        # subordinate ids: pods run as nobody (65534 inside) or as their runAsUser, each a distinct
        # unprivileged uid outside
        res["subuid_ids"] = [up.kubectl("exec", client, "--", "id", "-u").strip(),
                             up.kubectl("exec", "u1000", "--", "id", "-u").strip()]
        res["procs_running"] = up.left()
        res["outside_uids"] = sorted({os.stat(f"/proc/{p.split(':')[0]}").st_uid for p in res["procs_running"]
                                      if ":python" in p})
        walks.run_all(up, holder, node_ns, manifests, res)
    finally:
        res["term_rc"] = up.stop()
        res["procs_at_exit"] = [describe(p.split(":")[0]) for p in up.left()]  # up returns when all is gone
    res["procs_after_term"] = gone(up, 15, "no process left after SIGTERM", res)
    res["term_log_tail"] = "".join(up.lines[-5:])

    # kill -9: a cluster with running pods, then SIGKILL of `servicenet up`; newuidmap fails here, so
    # it falls back to the one-uid mapping (pods run as root inside, the user outside)
    shim = tmp / "shim-newuidmap"
    shim.mkdir()
    (shim / "newuidmap").write_text("#!/bin/sh\necho 'newuidmap: write to uid_map failed: Operation not permitted' >&2\n"
                                    "exit 1\n")
    (shim / "newuidmap").chmod(0o755)
    up = Up(tmp / "userns-kill", {"PATH": f"{shim}:{os.environ['PATH']}"}, extra=("--proxy-mode", "iptables"))
    try:
        res["iptables_summary"] = up.summary()
        up.kubectl("apply", "-f", str(manifests / "hostnames.yaml"))
        pods = until(lambda: (p := up.ready_pods("hostnames")) and len(p) == 3 and p, 90, "3 hostnames pods (kill)")
        vip = json.loads(up.kubectl("get", "svc", "hostnames", "-o", "json"))["spec"]["clusterIP"]
        loop = f"for i in $(seq 30); do wget -q -T 2 -O- http://{vip}:80/ || echo fail; echo; done"

        def answered() -> set[str]:
            out = subprocess.run(["kubectl", "exec", sorted(pods)[0], "--", "sh", "-c", loop], env=up.env,
                                 capture_output=True, text=True, timeout=120).stdout
            return {ln.strip() for ln in out.split() if ln.strip()}
        res["iptables_answers"] = sorted(until(lambda: (a := answered()) == set(pods) and a, 30,
                                               "iptables mode: every pod answering"))
        res["one_uid_id"] = up.kubectl("exec", sorted(pods)[0], "--", "id", "-u").strip()
        node_ns = next(ln.split()[-1] for ln in up.summary().splitlines() if ln.strip().startswith("node netns"))
        holder = next(p.split(":")[0] for p in up.left() if p.endswith(":sleep"))
        res["iptables_nat"] = walks.in_node(holder, node_ns, "iptables-save", "-t", "nat").stdout
        res["iptables_vip"], res["iptables_pods"] = vip, pods
        res["procs_before_kill"] = len(up.left())
    finally:
        up.stop(signal.SIGKILL)
    t0 = time.monotonic()
    gone(up, 15, "no process left after SIGKILL", res, interval=0.05)
    res["reaped_after_kill_s"] = round(time.monotonic() - t0, 2)


def fallback_run(tmp: Path, manifests: Path, res: dict[str, Any]) -> None:
    shim = tmp / "shim"
    shim.mkdir()
    (shim / "unshare").write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    (shim / "unshare").chmod(0o755)
    up = Up(tmp / "loopback", {"PATH": f"{shim}:{os.environ['PATH']}"})
    res["fallback_summary"] = "".join(up.lines)[:6000]
    try:
        up.kubectl("apply", "-f", str(manifests / "hostnames.yaml"))
        pods = until(lambda: (p := up.ready_pods("hostnames")) and len(p) == 3 and p, 90, "3 hostnames pods")
        vip = json.loads(up.kubectl("get", "svc", "hostnames", "-o", "json"))["spec"]["clusterIP"]
        res["fallback_pods"] = pods
        res["fallback_vip"] = vip
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
            res["unprivileged_port_start"] = int(f.read())
        # port 80 needs privilege unless the kernel lowered the limit (as container runtimes may)
        url = f"http://{vip}:10080/" if res["unprivileged_port_start"] > 80 else f"http://{vip}:80/"
        until(lambda: set(counts(curl_loop(url, 12))) == set(pods), 30, "offset port answering")
        res["fallback_spread"] = dict(counts(curl_loop(url, N)))
        res["fallback_port80"] = subprocess.run(["curl", "-s", "--max-time", "2", f"http://{vip}:80/"],
                                                capture_output=True, text=True).returncode
        if res["unprivileged_port_start"] > 80:
            until(lambda: "servicenet.dev/loopback-ports" in up.kubectl("describe", "svc", "hostnames"), 30,
                  "loopback-ports annotation")
        res["fallback_describe"] = up.kubectl("describe", "svc", "hostnames")
    finally:
        res["fallback_term_rc"] = up.stop()
        res["fallback_log"] = [ln for ln in up.lines if "offset" in ln or "way_out" in ln][:5]


def main() -> None:
    global CHECKOUT
    tmp, CHECKOUT = Path(sys.argv[1]), Path(sys.argv[2])
    manifests = CHECKOUT / "tests" / "apiserver" / "manifests"
    res: dict[str, Any] = {"uid": os.geteuid(), "gid": os.getegid(), "groups": os.getgroups()}
    userns_run(tmp, manifests, res)
    fallback_run(tmp, manifests, res)
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
