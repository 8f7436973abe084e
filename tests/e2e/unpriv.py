"""Run a test script as ``nobody``: setpriv, the system python3, and a copy of the package and its
dependencies where ``nobody`` can read them (the clone and its venv may live under /root)."""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# what the child keeps of our environment (the xdist worker id keeps its loopback ranges apart)
KEEP_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT")


def as_nobody(tmp: str, script: Path, args: list[str], copies: dict[str, Path]) -> tuple[list[str], dict[str, str]]:
    """argv and env that run ``script`` (copied into ``tmp``) with ``args`` as nobody; ``copies``:
    more files or folders to copy, by their path under ``tmp``. Everything under ``tmp`` is made
    readable, and ``tmp`` itself writable, by everyone."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv is needed to drop root privileges for this test"
    py = shutil.which("python3", path="/usr/bin:/bin")
    assert py, "a system python3 readable by nobody is needed"
    lib = os.path.join(tmp, "lib")
    shutil.copytree(REPO / "servicenet", os.path.join(lib, "servicenet"), ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(sysconfig.get_paths()["purelib"], lib, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "kubernetes", "pip", "setuptools", "hypothesis",
                                                  "pygments", "_pytest", "pytest*", "ruff*", "servicenet*"))
    for dest, src in copies.items():
        target = os.path.join(tmp, dest)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target)
        else:
            shutil.copy(src, target)
    copied = shutil.copy(script, os.path.join(tmp, script.name))
    for root, dirs, files in os.walk(tmp):
        for d in dirs:
            os.chmod(os.path.join(root, d), 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644)
    os.chmod(tmp, 0o777)
    env = {k: v for k, v in os.environ.items() if k in KEEP_ENV}
    env.update(HOME=tmp, PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=lib)
    return [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", py, copied, *args], env
