"""Test setup for the rootless acceptance (issue 15): an unprivileged user and a checkout it owns,
in which the README's ``make up`` runs as that user.

* The user ``sn-rootless`` is created once (``useradd --system``) with a subordinate id range
  (``usermod --add-subuids``), and reused by later runs.
* Its checkout is a copy of this repository's files (not ``.git``, not the venv) in a directory it
  owns (mode 0700: the cluster's keys end up under it).
* Its ``.venv`` is what ``make up``'s first step would build, made offline because tests may not
  reach a package index (network rules): ``python3 -m venv`` as the user with an interpreter it may
  run, the runtime dependency closure of ``pyproject.toml`` copied file by file (each
  distribution's RECORD) from the venv running the tests, servicenet itself as an editable path
  (a ``.pth``) and its console script, then the Makefile's stamp. ``make up`` then finds the venv
  current and runs ``.venv/bin/servicenet up`` — the same command a user's ``make up`` runs.

Nothing is made readable to others that was not already: the copied files are non-secret sources
and libraries, and the only directory they live in is the user's own.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
USER, SUBID_BASE, SUBID_COUNT = "sn-rootless", 400000, 65536
IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache",
                                "build", ".hypothesis")


def ensure_user() -> tuple[int, int]:
    """``sn-rootless`` (created if missing) with a subordinate uid/gid range; its uid and gid."""
    for tool in ("useradd", "usermod", "newuidmap", "newgidmap", "setpriv", "make"):
        assert shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}"), f"{tool} is needed (scripts/install-deps.sh)"
    if subprocess.run(["id", USER], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
    for path, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        with open(path) if os.path.exists(path) else open(os.devnull) as f:
            if not any(line.startswith(f"{USER}:") for line in f):
                subprocess.run(["usermod", flag, f"{SUBID_BASE}-{SUBID_BASE + SUBID_COUNT - 1}", USER], check=True)
    ids = subprocess.run(["id", "-u", USER], capture_output=True, text=True, check=True).stdout
    gid = subprocess.run(["id", "-g", USER], capture_output=True, text=True, check=True).stdout
    return int(ids), int(gid)


def as_user(*argv: str) -> list[str]:
    return ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", *argv]


def _interpreter(env: dict[str, str]) -> str:
    """A python the user may run, of the same major.minor as ours (the copied extensions need it)."""
    want = f"{sys.version_info[0]}.{sys.version_info[1]}"
    cands = [getattr(sys, "_base_executable", ""), f"/usr/bin/python{want}", f"/usr/local/bin/python{want}",
             "/usr/bin/python3"]
    for py in cands:
        if py and os.path.exists(py):
            # through a shell already running as the user: setpriv's own exec of a path under a
            # directory the user may not enter can succeed where the user's later execs fail
            r = subprocess.run(as_user("/bin/sh", "-c", '"$0" -c "import sys; print(\'%d.%d\' % sys.version_info[:2])"',
                                       py), capture_output=True, text=True, env=env)
            if r.returncode == 0 and r.stdout.strip() == want:
                return py
    raise AssertionError(f"no python {want} that {USER} may run among {cands}")


def _closure() -> list[md.Distribution]:
    """The installed distributions servicenet needs at run time (no extras)."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    envm = {**default_environment(), "extra": ""}
    seen: dict[str, md.Distribution] = {}
    todo = [Requirement(d) for d in deps]
    while todo:
        req = todo.pop()
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key in seen or (req.marker is not None and not req.marker.evaluate(envm)):
            continue
        dist = md.distribution(req.name)
        seen[key] = dist
        todo += [Requirement(r) for r in dist.requires or []]
    return list(seen.values())


def _copy_dists(site: Path) -> None:
    purelib = Path(sysconfig.get_paths()["purelib"]).resolve()
    for dist in _closure():
        for f in dist.files or []:
            src = Path(str(dist.locate_file(f))).resolve()
            if "__pycache__" in f.parts or not src.is_file() or not src.is_relative_to(purelib):
                continue  # console scripts (bin/) are not needed; byte code is rebuilt
            dst = site / src.relative_to(purelib)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def checkout(tmp: Path) -> Path:
    """``tmp/servicenet``: the user's checkout with a current ``.venv``; ``tmp`` becomes the user's."""
    uid, gid = ensure_user()
    os.chown(tmp, uid, gid)
    os.chmod(tmp, 0o700)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp)}
    repo = tmp / "servicenet"
    shutil.copytree(REPO, repo, ignore=IGNORE, symlinks=True)
    venv = repo / ".venv"
    for root, dirs, files in os.walk(repo):
        for name in [*dirs, *files, "."]:
            os.lchown(os.path.join(root, name), uid, gid)
    subprocess.run(as_user(_interpreter(env), "-m", "venv", "--without-pip", str(venv)), check=True, env=env,
                   cwd=tmp)
    (site,) = (venv / "lib").glob("python3*/site-packages")
    _copy_dists(site)
    (site / "__editable__.servicenet.pth").write_text(f"{repo}\n")  # what `pip install -e .` amounts to
    script = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["servicenet"]
    module, func = script.split(":")
    (venv / "bin" / "servicenet").write_text(
        f"#!{venv}/bin/python\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
    (venv / "bin" / "servicenet").chmod(0o755)
    for root, dirs, files in os.walk(site):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), uid, gid)
    os.lchown(venv / "bin" / "servicenet", uid, gid)
    subprocess.run(as_user("touch", str(venv / ".installed")), check=True, env=env)  # the Makefile's stamp
    return repo
