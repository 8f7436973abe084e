"""Acceptance (issue 15): without root, the README's ``make up`` runs the netns mode inside a user
namespace; with user namespaces unavailable it falls back to loopback and says why.

The test creates an unprivileged user with a subordinate id range and a checkout it owns
(userns_setup.py), then runs userns_unpriv.py as that user (setpriv): it starts ``make up`` three
times and drives the clusters with the real kubectl, curl, wget, nslookup, dig; the seeds'
walkthroughs (userns_walks.py) run on the first cluster. Creating the user needs root: outside CI
a non-root run skips (``root`` marker), in CI it fails. A kernel without unprivileged user
namespaces is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from . import userns_setup
from .cluster import redis_primary_links
from .userns_setup import SUBID_BASE, SUBID_COUNT, USER

# root: it creates a user; loopback_vips: the fallback run binds the loopback plan's fixed ClusterIPs
pytestmark = [pytest.mark.root, pytest.mark.loopback_vips]

HERE = Path(__file__).parent
N = 600


def _host_view() -> str:
    """The host's root network namespace, as `ip` and `nft` list it."""
    out = []
    for argv in (["ip", "-o", "link"], ["ip", "-o", "route", "show", "table", "all"], ["ip", "netns", "list"],
                 ["nft", "list", "tables"]):
        out.append(subprocess.run(argv, capture_output=True, text=True).stdout)
    return "\n".join(out)


def _spread_ok(spread: dict[str, int], pods: set[str]) -> None:
    assert set(spread) == pods and sum(spread.values()) == N, spread
    assert all(0.20 <= n / N <= 0.47 for n in spread.values()), spread


@pytest.fixture(scope="module")
def run() -> Any:
    tmp = Path(tempfile.mkdtemp(prefix="sn-userns-"))
    try:
        t0 = time.monotonic()
        checkout = userns_setup.checkout(tmp)
        setup_s = round(time.monotonic() - t0, 1)
        for f in ("userns_unpriv.py", "userns_walks.py"):
            shutil.copy(HERE / f, tmp / f)
            shutil.chown(tmp / f, USER, USER)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
        env.update(HOME=str(tmp))
        argv = userns_setup.as_user(str(checkout / ".venv" / "bin" / "python"), str(tmp / "userns_unpriv.py"),
                                    str(tmp), str(checkout))
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1200, cwd=tmp)
        assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["host_after"] = _host_view()
        res["user_uid"] = int(subprocess.run(["id", "-u", USER], capture_output=True, text=True).stdout)
        print("userns figures:", json.dumps({"setup_s": setup_s, "run_s": round(time.monotonic() - t0, 1), **{
            k: res.get(k) for k in ("pod_spread", "host_spread", "fallback_spread", "reaped_after_kill_s",
                                    "host_ports_annotation")},
            "walks_s": {k: v.get("seconds") for k, v in res.items() if k.startswith("walk_")}}))
        yield res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_make_up_as_a_created_user_picks_the_user_namespace_mode(run: Any) -> None:
    assert run["uid"] == run["user_uid"] != 0 and run["gid"] != 0 and 0 not in run["groups"], run
    # make ran the venv's servicenet without --network: auto chose the user namespace
    make_line = next(ln for ln in run["summary"].splitlines() if "servicenet up" in ln)
    assert make_line.startswith(".venv/bin/servicenet up --data-dir") and "--network" not in make_line, make_line
    assert "network mode: netns inside a user namespace (rootless)" in run["summary"], run["summary"]
    assert re.search(r"proxy mode\s+nftables", run["summary"]), run["summary"]
    assert re.search(r"dns dns\s+127\.0\.0\.1:\d+,10\.96\.0\.10:53", run["summary"]), run["summary"]


def test_hostnames_from_a_pod_and_from_the_host(run: Any) -> None:
    pods = set(run["pods"])
    assert len(pods) == 3 and all(ip.startswith("10.244.") for ip in run["pods"].values())
    _spread_ok(run["pod_spread"], pods)  # curl <ClusterIP>:80 in a pod
    assert re.fullmatch(r"\S+ 127\.0\.0\.1:(3\d{4}) -> 10\.244\.0\.1:\1", run["host_ports_annotation"]), run
    assert "servicenet.dev/host-ports" in run["describe"]
    _spread_ok(run["host_spread"], pods)  # the same through the host forwarder


def test_names_and_identity_inside_a_pod(run: Any) -> None:
    assert run["web0_ip"] in run["nslookup"] and "web-0.nginx.default.svc.cluster.local" in run["nslookup"], run
    rc, printed, pod = run["hostname"]
    assert rc == 0 and printed == pod  # kubectl exec works, and the pod has its own UTS namespace
    assert "nameserver 10.96.0.10" in run["resolv"]


def test_nftables_proxy_programs_the_node_namespace(run: Any) -> None:
    assert "table ip kube-proxy" in run["nft_tables"], run["nft_tables"]


def test_iptables_proxy_mode_works_too(run: Any) -> None:
    assert re.search(r"proxy mode\s+iptables", run["iptables_summary"]), run["iptables_summary"]
    assert len(run["iptables_answers"]) == 3
    # the upstream chain structure in the node namespace, as test_proxy_netns checks it as root
    nat, vip = run["iptables_nat"], run["iptables_vip"]
    chain = re.findall(r"-A KUBE-SERVICES -d " + re.escape(vip) + r"/32 -p tcp -m comment --comment "
                       r'"default/hostnames:default cluster IP" -m tcp --dport 80 -j (KUBE-SVC-[A-Z2-7]{16})', nat)
    assert len(chain) == 1, nat
    seps = re.findall(r"^-A " + chain[0] + r" .*-j (KUBE-SEP-[A-Z2-7]{16})$", nat, re.M)
    assert len(seps) == 3, nat
    assert {m for sep in seps for m in re.findall(r"-A " + sep + r" .*--to-destination ([\d.]+):9376", nat)} == \
        set(run["iptables_pods"].values()), nat


def test_subordinate_ids_let_pods_run_as_other_users(run: Any) -> None:
    last = SUBID_BASE + SUBID_COUNT - 1
    assert f"subordinate uids {SUBID_BASE}-{last} are 1-{SUBID_COUNT}" in run["summary"], run["summary"]
    assert run["subuid_ids"] == ["65534", "1000"]  # the default user, and runAsUser: 1000
    # outside: the user itself (the cluster) and two subordinate uids (the pods)
    assert {run["user_uid"], SUBID_BASE + 65533, SUBID_BASE + 999} <= set(run["outside_uids"]), run["outside_uids"]


def test_one_uid_mapping_when_newuidmap_fails(run: Any) -> None:
    summary = run["iptables_summary"]
    assert "subordinate ids not usable (newuidmap" in summary and "mapping only uid" in summary, summary
    assert run["one_uid_id"] == "0"  # pods run as root inside (the user outside): nobody is unmapped


def test_kubectl_logs_and_port_forward(run: Any) -> None:
    client = sorted(run["pods"])[0]
    assert "Serving on port 9376" in run["logs"], run["logs"]
    assert run["port_forward"] == client


def test_nothing_left_after_sigterm_and_sigkill(run: Any) -> None:
    assert run["term_rc"] == 0, run["term_log_tail"]
    assert len(run["procs_running"]) >= 5, run["procs_running"]  # holder, cluster, pods
    assert run["procs_at_exit"] == []  # servicenet up returned only once its namespace was empty
    assert run["procs_after_term"] == ["none"]
    assert run["procs_before_kill"] >= 5 and run["reaped_after_kill_s"] < 15
    prefix = run["node_netns"].rsplit("-", 1)[0] + "-"  # sn-<id>-
    assert prefix not in run["host_after"], run["host_after"]
    assert "10.244.0." not in run["host_after"] and "10.96." not in run["host_after"]


def test_loopback_fallback_says_why_and_serves_port_80_at_its_offset(run: Any) -> None:
    summary = run["fallback_summary"]
    assert "network mode loopback: not root and unprivileged user namespaces are not available" in summary, summary
    assert "Operation not permitted" in summary
    assert "served at port+10000" in summary
    pods = set(run["fallback_pods"])
    _spread_ok(run["fallback_spread"], pods)
    if run["unprivileged_port_start"] <= 80:  # the kernel lets anyone bind :80: no offset needed, none shown
        assert run["fallback_port80"] == 0 and "servicenet.dev/loopback-ports" not in run["fallback_describe"]
        return
    assert run["fallback_port80"] != 0  # nobody can bind :80 there; it is served at :10080 instead
    assert f"80/TCP served at {run['fallback_vip']}:10080" in run["fallback_describe"], run["fallback_describe"]
    assert any("default/hostnames" in ln and "way_out" in ln for ln in run["fallback_log"]), run["fallback_log"]
    assert run["fallback_term_rc"] == 0


# -- the seeds' walkthroughs on the rootless cluster (userns_walks.py) -----------------------------

def _walk(run: Any, name: str) -> dict[str, Any]:
    r = run[f"walk_{name}"]
    assert "error" not in r, r["error"]
    return r


def test_seed_walkthrough_kubectl_manifests(run: Any) -> None:  # issue 2
    r = _walk(run, "kubectl")
    assert r["reapply"].splitlines() == ["deployment.apps/hostnames unchanged", "service/hostnames unchanged"]
    kinds = {ln.split()[0].split("/")[0] for ln in r["get_wide"].splitlines() if "/" in ln.split(" ")[0]}
    assert {"service", "endpoints", "endpointslice.discovery.k8s.io", "pod", "deployment.apps",
            "statefulset.apps", "replicaset.apps"} <= kinds, r["get_wide"]
    assert re.search(r"^Selector:\s+app=hostnames$", r["describe"], re.M), r["describe"]
    assert r["nodeport"] == 30007


def test_seed_walkthrough_workloads(run: Any) -> None:  # issue 3
    r, pods = _walk(run, "workloads"), run["pods"]
    assert len(r["rows"]) == 3 and all(row[1] == "1/1" and row[2] == "Running" for row in r["rows"]), r["rows"]
    assert {row[5] for row in r["rows"]} == set(pods.values()) and len(set(pods.values())) == 3
    assert all(f"{ip}:9376" in r["ep"] for ip in pods.values()), r["ep"]
    assert r["by_ip"] == {name: name for name in pods}  # each pod IP answers with its own name
    assert r["order"][0] <= r["order"][1], r["order"]  # web-1 was created once web-0 was Ready
    assert r["slice_2"] == ["web-0", "web-1"] and r["slice_3"] == ["web-0", "web-1", "web-2"]
    assert r["slice_down"] == ["web-0", "web-1"] and r["pods_down"] == ["web-0", "web-1"]
    assert r["web0_hostname"] == "web-0"
    assert r["mirrored"] == [["endpointslicemirroring-controller.k8s.io", ["127.0.0.50", "127.0.0.51"]]]
    ip, kube = r["redis_ip"], r["kube_ip"]
    assert r["links"] == redis_primary_links(ip, kube)


def test_seed_walkthrough_dns(run: Any) -> None:  # issue 4
    r = _walk(run, "dns")
    web = r["web"]
    assert r["headless"] == sorted(web.values())
    assert r["web0"] == [web["web-0"]] and r["web1"] == [web["web-1"]]
    assert r["clusterip"] == [run["vip"]]
    assert "status: NXDOMAIN" in r["nxdomain"], r["nxdomain"]  # a Deployment pod's name under a headless Service
    fqdn = {"nginx": "nginx.default.svc.cluster.local", "web-0.nginx": "web-0.nginx.default.svc.cluster.local",
            "nginx.default": "nginx.default.svc.cluster.local"}
    for short, out in r["short"].items():  # through the pod's search path
        want = [web["web-0"]] if short.startswith("web-0") else list(web.values())
        assert fqdn[short] in out and all(ip in out for ip in want), (short, out)


def test_seed_walkthrough_proxy(run: Any) -> None:  # issue 5
    r, names = _walk(run, "proxy"), set(run["pods"])
    _spread_ok(r["dns_spread"], names)  # DNS and the proxy together, from a pod
    assert r["nodeport"] == sorted(names) and r["lb"] == sorted(names)
    assert r["lb_ip"].startswith("10.255.255."), r["lb_ip"]
    assert len(r["sticky"]) == 1 and sum(r["sticky"].values()) == 60, r["sticky"]  # ClientIP affinity
    took = sorted(t for t, _ in r["empty"])
    assert len(took) == 5 and {c for _, c in r["empty"]} == {"7"}, r["empty"]  # no endpoints: refused ...
    assert took[2] < 0.5, r["empty"]  # ... at once (the median of five), not a hang


def test_seed_walkthrough_proxy_hairpin_itp_readiness_and_rolling_update(run: Any) -> None:  # issue 5
    r, names = _walk(run, "proxy_more"), sorted(run["pods"])
    assert r["itp_local"] == names[:1] and r["itp_cluster"] == names
    assert r["hairpin"] == {"self": 10}  # a pod reaches itself through its own Service
    assert set(r["flip_unready"]) == {"flip-1", "flip-2"} and sum(r["flip_unready"].values()) == 30
    assert r["flip_back"] == ["flip-0", "flip-1", "flip-2"]
    roll = r["roll"]
    fails = {k: v for k, v in roll["counts"].items() if k not in set(roll["old"]) | set(roll["new"])}
    assert not fails, f"failed requests during the rollout: {fails} (all: {roll['counts']})"
    assert set(roll["old"]) & set(roll["counts"]) and set(roll["new"]) & set(roll["counts"]), roll
    assert not set(roll["old"]) & set(roll["new"])
