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


@pytest.mark.root
def test_a_missing_mount_point_is_made_in_the_pod_not_on_the_host(tmp_path: Path) -> None:
    """The volume lands at a path that does not exist; what the directory above held stays visible
    (a file, a directory, a symlink), and nothing is created on the host (so no other pod's mount
    there can be removed when this pod goes, and a user namespace needs no host write)."""
    require_root()
    base = tmp_path / "base"
    (base / "d").mkdir(parents=True)
    (base / "a").write_text("file a\n")
    (base / "d" / "f").write_text("in d\n")
    (base / "l").symlink_to("a")
    vol = tmp_path / "vol"
    vol.mkdir()
    (vol / "token").write_text("tok\n")
    one = tmp_path / "one"
    one.write_text("single file\n")
    spec = {"hostname": "p",
            "mounts": [[str(vol), str(base / "secrets" / "sa"), True],
                       [str(one), str(base / "d" / "more" / "conf"), True]],
            "argv": ["sh", "-c", f"cd {base} && cat a d/f secrets/sa/token d/more/conf && readlink l && ls -A | sort"]}
    out = subprocess.run([sys.executable, "-m", "servicenet.node.podinit", json.dumps(spec)],
                         capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:6] == ["file a", "in d", "tok", "single file", "a", "a"], out.stdout
    assert sorted(out.stdout.split("\n")[5:9]) == ["a", "d", "l", "secrets"], out.stdout
    # the host has none of it
    assert not (base / "secrets").exists() and not (base / "d" / "more").exists()
    assert sorted(p.name for p in base.iterdir()) == ["a", "d", "l"]


def test_made_on_host_only_right_below_the_root(tmp_path: Path) -> None:
    from servicenet.node import podinit

    assert podinit.deepest_existing(str(tmp_path / "x" / "y")) == str(tmp_path)
    assert podinit.deepest_existing("/no-such-dir-sn/x") == "/"
    assert podinit.made_on_host("/no-such-dir-sn/x")
    assert not podinit.made_on_host(str(tmp_path / "x" / "y"))
    assert not podinit.made_on_host(str(tmp_path))  # exists
