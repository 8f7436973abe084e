"""The user-namespace helpers: the probe (with a failing ``unshare`` on PATH), mappings, argv."""

from __future__ import annotations

import os
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
