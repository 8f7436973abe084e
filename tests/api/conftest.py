"""Fixtures of the API-layer tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from servicenet.api.pb import native, wire


@pytest.fixture(scope="module", params=["python", "c"])
def pb_codec(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run a module's tests once with the protobuf codec's pure-Python fast paths and once with the C
    ones (skipped when the extension is not built; tests/api/test_pb_native.py fails then under CI)."""
    if request.param == "c" and not native.BUILT:
        pytest.skip("servicenet.api.pb._cpb is not built")
    was = wire.native_in_use()
    assert wire.use_native(request.param == "c") == (request.param == "c")
    try:
        yield request.param
    finally:
        wire.use_native(was)
