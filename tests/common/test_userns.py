"""The user-namespace helpers: the probe (with a failing ``unshare`` on PATH), mappings, argv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servicenet.common import userns


def test_probe_reports_why_unshare_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shim = tmp_path / "unshare"
    shim.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    why = userns.probe()
    assert why is not None and "Operation not permitted" in why and "not available" in why


def test_probe_succeeds_where_the_kernel_allows_it() -> None:
    # this machine (and CI) allow unprivileged user namespaces: the rootless acceptance needs them
    assert userns.probe() is None


def test_initial_namespace_maps_everything() -> None:
    assert not userns.in_user_namespace()
    assert userns.uid_mapped(65534) and userns.uid_mapped(0)
    assert userns.netns_add_argv("sn-x-p1") == ["ip", "netns", "add", "sn-x-p1"]


def test_nsenter_argv_joins_user_mount_and_pid() -> None:
    argv = userns.nsenter_argv(42, "/tmp", ["python3", "-V"])
    assert argv[:2] == ["nsenter", "--target=42"] and {"--user", "--mount", "--pid"} <= set(argv)
    assert argv[-3:] == ["--", "python3", "-V"]


_STOP_SCRIPT = r"""
import json, os, subprocess, sys
from servicenet.common import userns

def members(ns):
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/user") == ns:
                out.append(pid)
        except OSError:
            pass
    return out

userns.become_subreaper()
holder = userns.start_holder(sys.argv[1])
ns = os.readlink(f"/proc/{holder.pid}/ns/user")
# a member that ignores SIGTERM and has children of its own; its nsenter is our child, never waited
p = subprocess.Popen(userns.nsenter_argv(holder.pid, "/", ["sh", "-c", "trap '' TERM; sleep 1000 & sleep 1000 & "
                                                             "echo up; wait"]), stdout=subprocess.PIPE)
p.stdout.readline()
before = members(ns)
ok = holder.stop()
print(json.dumps({"before": len(before), "ok": ok, "after": members(ns)}))
"""


def test_holder_stop_returns_once_its_pid_namespace_is_empty(tmp_path: Path) -> None:
    """``servicenet up`` (the supervisor) returns only when no process of its cluster is left: it is
    the subreaper of the holder's pid 1 and reaps it (and its own orphans) before returning. Run in
    a process of its own: a subreaper reaps every child, which a test worker must not do."""
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.run([sys.executable, "-c", _STOP_SCRIPT, str(tmp_path / "state")], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": root})
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["before"] >= 5  # pid 1, its sleep, nsenter, the shell and its two sleeps
    assert got["ok"] is True and got["after"] == []
