"""Acceptance (issue 15): without root, ``servicenet up`` runs the netns mode inside a user
namespace; with user namespaces unavailable it falls back to loopback and says why.

As root the walkthrough runs in a child after dropping to ``nobody`` (setpriv, the system python3,
the package and its dependencies copied where ``nobody`` can read them); see userns_unpriv.py for
what is driven. Failing to drop privileges, or a kernel without unprivileged user namespaces, is a
test failure, never a skip.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).with_name("userns_unpriv.py")
REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "tests" / "apiserver" / "manifests"
N = 600


NOBODY = ["--reuid=nobody", "--regid=nogroup", "--clear-groups"]
SUBUID_USER, SUBID_BASE = "sn-rootless", 400000  # created by the subuid test: a user with a 65536-id range


def _argv(tmp: str, user: list[str] = NOBODY, mode: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str]]:
    if os.geteuid() != 0:
        env = dict(os.environ, HOME=tmp, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        return [sys.executable, str(SCRIPT), tmp, str(MANIFESTS), *mode], env
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv is needed to drop root privileges for this test"
    py = shutil.which("python3", path="/usr/bin:/bin")
    assert py, "a system python3 readable by nobody is needed"
    lib = os.path.join(tmp, "lib")
    shutil.copytree(REPO / "servicenet", os.path.join(lib, "servicenet"), ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(sysconfig.get_paths()["purelib"], lib, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "kubernetes", "pip", "setuptools", "hypothesis",
                                                  "pygments", "_pytest", "pytest*", "ruff*", "servicenet*"))
    shutil.copytree(MANIFESTS, os.path.join(tmp, "manifests"))
    script = shutil.copy(SCRIPT, os.path.join(tmp, SCRIPT.name))
    for root, dirs, files in os.walk(tmp):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    os.chmod(tmp, 0o777)
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    env.update(HOME=tmp, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=lib)
    return [setpriv, *user, py, script, tmp, os.path.join(tmp, "manifests"), *mode], env


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
    tmp = tempfile.mkdtemp(prefix="sn-userns-")
    try:
        os.chmod(tmp, 0o777)
        argv, env = _argv(tmp)
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=900, cwd=tmp)
        assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res["host_after"] = _host_view()
        print("userns figures:", json.dumps({k: res.get(k) for k in (  # shown with -s
            "pod_spread", "host_spread", "fallback_spread", "reaped_after_kill_s", "host_ports_annotation")}))
        yield res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_up_picks_the_user_namespace_mode(run: Any) -> None:
    assert run["uid"] != 0 and run["gid"] != 0 and 0 not in run["groups"], run
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


def test_kubectl_logs_and_port_forward(run: Any) -> None:
    client = sorted(run["pods"])[0]
    assert "Serving on port 9376" in run["logs"], run["logs"]
    assert run["port_forward"] == client


def test_nothing_left_after_sigterm_and_sigkill(run: Any) -> None:
    assert run["term_rc"] == 0, run["term_log_tail"]
    assert len(run["procs_running"]) >= 5, run["procs_running"]  # holder, cluster, pods
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


def _subuid_user() -> list[str]:
    """A system user with subordinate ids (test setup: useradd + usermod --add-subuids)."""
    for tool in ("useradd", "usermod", "newuidmap", "newgidmap"):
        assert shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}"), f"{tool} is needed (scripts/install-deps.sh)"
    if subprocess.run(["id", SUBUID_USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SUBUID_USER],
                       check=True)
    with open("/etc/subuid") as f:
        has = any(line.startswith(f"{SUBUID_USER}:") for line in f)
    if not has:
        r = f"{SUBID_BASE}-{SUBID_BASE + 65535}"
        subprocess.run(["usermod", "--add-subuids", r, "--add-subgids", r, SUBUID_USER], check=True)
    return [f"--reuid={SUBUID_USER}", f"--regid={SUBUID_USER}", "--init-groups"]


def test_subordinate_ids_let_pods_run_as_other_users() -> None:
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the subuid acceptance creates a user: run the suite as root in CI")
        pytest.skip("creating a user with subordinate ids needs root")
    user = _subuid_user()
    uid = int(subprocess.run(["id", "-u", SUBUID_USER], capture_output=True, text=True, check=True).stdout)
    tmp = tempfile.mkdtemp(prefix="sn-subuid-")
    try:
        argv, env = _argv(tmp, user, ("subuid",))
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, cwd=tmp)
        assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert res["uid"] == uid
    assert f"subordinate uids {SUBID_BASE}-{SUBID_BASE + 65535} are 1-65536" in res["subuid_summary"]
    assert res["subuid_ids"] == ["65534", "1000"]  # the default user, and runAsUser: 1000
    # outside, they are the user itself (the cluster) and two subordinate uids (the pods)
    assert {uid, SUBID_BASE + 65533, SUBID_BASE + 999} <= set(res["subuid_outside_uids"]), res
    assert res["subuid_rc_15"] == 0 and res["subuid_clean_15"] and res["subuid_clean_9"]
