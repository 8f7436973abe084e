"""podinit: a pod's mounts whose sources lie under a directory the pod user cannot search (the node's
data dir in a 0700 home, next to the checkout whose interpreter is exposed) still reach the pod."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .nodeutil import require_root


@pytest.mark.root
def test_mount_sources_under_an_exposed_closed_directory(tmp_path: Path) -> None:
    require_root()
    home = tmp_path / "home"  # closed, like a 0700 home: the runtime tree and the data dir below it
    (home / "tree").mkdir(parents=True)
    (home / "data").mkdir()
    (home / "data" / "resolv.conf").write_text("nameserver 10.96.0.10\n")
    (home / "data" / "vol").mkdir()
    (home / "data" / "vol" / "f").write_text("volume\n")
    (home / "secret").write_text("not for the pod\n")
    home.chmod(0o700)
    spec = {"hostname": "p", "expose": [[str(home), [str(home / "tree")]]],
            "mounts": [[str(home / "data" / "resolv.conf"), "/etc/resolv.conf", True],
                       [str(home / "data" / "vol"), str(tmp_path / "mnt" / "vol"), False]],
            "argv": ["sh", "-c", f"cat /etc/resolv.conf {tmp_path}/mnt/vol/f; ls -A {home}"]}
    out = subprocess.run([sys.executable, "-m", "servicenet.node.podinit", json.dumps(spec)],
                         capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["nameserver 10.96.0.10", "volume", "tree"], out.stdout
    assert "secret" not in out.stdout and "data" not in out.stdout.split()
