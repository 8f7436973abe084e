"""Acceptance (service proxy, userspace mode, no root): the loopback stack — API server,
controllers, node agent, userspace proxy — run as an unprivileged user, checked with real curl.

As root the stack runs in a child process after dropping to ``nobody`` (setpriv, the system
python3, the venv's site-packages made importable through PYTHONPATH). Failing to drop
privileges is a test failure, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

SCRIPT = Path(__file__).with_name("userspace_unpriv.py")
REPO = Path(__file__).resolve().parents[2]


def _unprivileged_argv(tmp: str) -> tuple[list[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    env["HOME"] = tmp
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if os.geteuid() != 0:
        return [sys.executable, str(SCRIPT), tmp], dict(os.environ, HOME=tmp)
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv is needed to drop root privileges for this test"
    py = shutil.which("python3", path="/usr/bin:/bin")
    assert py, "a system python3 readable by nobody is needed"
    # The clone and its venv may live where `nobody` cannot read (e.g. under /root): give the
    # child its own readable copy of the package, its dependencies and the script.
    lib = os.path.join(tmp, "lib")
    shutil.copytree(REPO / "servicenet", os.path.join(lib, "servicenet"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(sysconfig.get_paths()["purelib"], lib, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "kubernetes", "pip", "setuptools", "hypothesis",
                                                  "pygments", "_pytest", "pytest*", "ruff*", "servicenet*"))
    os.makedirs(os.path.join(lib, "e2e"))
    for name in ("__init__.py", "cluster.py"):
        shutil.copy(SCRIPT.with_name(name), os.path.join(lib, "e2e", name))
    script = shutil.copy(SCRIPT, os.path.join(tmp, SCRIPT.name))
    for root, dirs, files in os.walk(tmp):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    os.chmod(tmp, 0o777)
    env["PYTHONPATH"] = lib
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", py, script, tmp], env


def test_userspace_stack_runs_unprivileged() -> None:
    tmp = tempfile.mkdtemp(prefix="sn-us-")
    try:
        os.chmod(tmp, 0o777)  # the unprivileged child writes its API/node data here
        argv, env = _unprivileged_argv(tmp)
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=150, cwd=tmp)
        assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stderr[-4000:]}"
        res = json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    assert res["uid"] != 0 and res["gid"] != 0 and 0 not in res["groups"], res
    pods = set(res["pods"])
    assert len(pods) == 3 and res["proxy_listeners"] >= 2
    # distribution: 300 new connections through the VIP, each pod between 20% and 47%
    spread = res["spread"]
    assert set(spread) == pods and sum(spread.values()) == 300, spread
    assert all(0.20 <= n / 300 <= 0.47 for n in spread.values()), spread
    # failover: two of five endpoints refuse connections; every request still succeeds
    fo = res["failover"]
    assert set(fo) == pods and sum(fo.values()) == 150, fo
    assert all(ip.startswith("127.") for ip in [*res["pods"].values(), res["vip"], *res["dead"]])
