"""Projected ServiceAccount token volumes: atomic writes and rotation before expiry."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from servicenet.apiserver.sa_admission import token_volume
from servicenet.client import wait_for
from servicenet.node import projected
from servicenet.node.network import PodNetwork
from servicenet.node.runtime import PodRuntime, RuntimeConfig

from .nodeutil import make_pod

Obj = dict[str, Any]


def test_refresh_at_80_percent_or_24h() -> None:
    assert projected.refresh_at(1000.0, 2000.0) == 1800.0
    assert projected.refresh_at(0.0, 10 * 86400.0) == 86400.0


def test_write_atomic_swaps_the_data_link(tmp_path: Path) -> None:
    d = tmp_path / "vol"
    projected.write_atomic(str(d), {"token": b"one", "ca.crt": b"ca"})
    first = os.readlink(d / "..data")
    assert (d / "token").read_bytes() == b"one" and os.path.islink(d / "token")
    projected.write_atomic(str(d), {"token": b"two", "ca.crt": b"ca"})
    assert (d / "token").read_bytes() == b"two"
    assert os.readlink(d / "..data") != first and not (d / first).exists()  # the old generation is gone


async def test_pod_token_is_rotated_before_it_expires(tmp_path: Path, loop_cidr: str) -> None:
    issued: list[tuple[str, float]] = []

    async def token(ns: str, sa: str, pod: Obj, aud: list[str], seconds: int) -> tuple[str, float]:
        assert (ns, sa, seconds) == ("default", "default", 3607)
        tok = (f"token-{len(issued)}", time.time() + 1.0)  # short-lived, to see rotations
        issued.append(tok)
        return tok

    async def fetch(kind: str, ns: str, name: str) -> Obj | None:
        return {"data": {"ca.crt": "CA"}} if (kind, name) == ("configmaps", "kube-root-ca.crt") else None

    net = PodNetwork(loop_cidr)
    await net.setup()
    rt = PodRuntime(RuntimeConfig(node_name="n1", data_dir=str(tmp_path)), net, fetch=fetch, request_token=token)
    vol = token_volume("kube-api-access-abcde")
    pod = make_pod("p", [{"name": "c", "image": "busybox", "command": [sys.executable, "-c",
                                                                        "import time; time.sleep(60)"],
                          "volumeMounts": [{"name": vol["name"], "mountPath": "/var/run/secrets/x"}]}],
                   volumes=[vol])
    try:
        rt.sync_pod(pod)
        w = await wait_for(lambda: rt.by_name("default", "p"), 5)
        path = Path(w.dir) / "volumes" / vol["name"]
        await wait_for(lambda: (path / "token").exists(), 10)
        assert (path / "namespace").read_text() == "default" and (path / "ca.crt").read_text() == "CA"
        first = (path / "token").read_text()
        await wait_for(lambda: len(issued) >= 3, 10)  # refreshed at 80 % of each 1 s lifetime
        await wait_for(lambda: (path / "token").read_text() != first, 5)
        assert (path / "token").read_text().startswith("token-")
    finally:
        await rt.shutdown()
        await net.teardown()
