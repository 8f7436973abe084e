"""Events expire after --event-ttl (upstream: one hour), other objects never; the flag takes a Go duration."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from servicenet.cli import build_parser
from servicenet.client import ApiError
from servicenet.testing import running_apiserver


def _event(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
            "reason": "Started", "message": "started", "type": "Normal"}


async def test_an_event_is_gone_after_the_event_ttl_and_a_configmap_is_not(tmp_path: Path) -> None:
    async with running_apiserver(tmp_path, storage="sqlite", event_ttl=1.5) as api:
        c = api.client
        await c.create("v1", "events", "default", _event("e1"))
        await c.create("v1", "configmaps", "default", {"metadata": {"name": "cm"}, "data": {"k": "v"}})
        assert (await c.get("v1", "events", "default", "e1"))["reason"] == "Started"
        deadline = time.monotonic() + 15
        while True:
            try:
                await c.get("v1", "events", "default", "e1")
            except ApiError as e:
                assert e.status == 404
                break
            assert time.monotonic() < deadline, "the Event outlived its TTL by 13 s"
            await asyncio.sleep(0.1)
        assert (await c.get("v1", "configmaps", "default", "cm"))["data"] == {"k": "v"}


@pytest.mark.parametrize(("flag", "seconds"), [(None, 3600.0), ("1h0m0s", 3600.0), ("90s", 90.0), ("2m30s", 150.0),
                                               ("45", 45.0)])
def test_the_event_ttl_flag_takes_a_go_duration(flag: str | None, seconds: float) -> None:
    argv = ["apiserver", *(["--event-ttl", flag] if flag else [])]
    assert build_parser().parse_args(argv).event_ttl == seconds


@pytest.mark.parametrize("flag", ["0", "-5s", "soon", ""])
def test_a_bad_event_ttl_is_refused(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["apiserver", f"--event-ttl={flag}"])
    assert "not a positive duration" in capsys.readouterr().err
