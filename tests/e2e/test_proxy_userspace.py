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
import tempfile
from pathlib import Path

import pytest

from .unpriv import as_nobody

SCRIPT = Path(__file__).with_name("userspace_unpriv.py")

pytestmark = pytest.mark.loopback_vips  # binds the loopback plan's fixed ClusterIPs (see tests/conftest.py)


def _unprivileged_argv(tmp: str) -> tuple[list[str], dict[str, str]]:
    if os.geteuid() != 0:
        return [sys.executable, str(SCRIPT), tmp], dict(os.environ, HOME=tmp)
    return as_nobody(tmp, SCRIPT, [tmp], {"lib/e2e/__init__.py": SCRIPT.with_name("__init__.py"),
                                          "lib/e2e/cluster.py": SCRIPT.with_name("cluster.py")})


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
