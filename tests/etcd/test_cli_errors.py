"""Bad etcd settings are a one-line error and an exit code, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from servicenet.store.etcdlaunch import free_port


def _apiserver(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.run([sys.executable, "-m", "servicenet.cli", "apiserver", "--data-dir", str(tmp_path / "d"),
                           "--api-listen", "127.0.0.1:0", "--storage", "etcd", *args],
                          capture_output=True, text=True, timeout=60, env=env)


def test_missing_and_unreachable_etcd(tmp_path: Path) -> None:
    r = _apiserver(tmp_path)
    assert r.returncode == 2 and "--storage etcd needs --etcd-servers" in r.stderr
    assert "Traceback" not in r.stderr
    r = _apiserver(tmp_path, "--etcd-servers", f"http://127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "cannot read from etcd" in r.stderr, r.stderr[-500:]
    assert "Traceback" not in r.stderr
