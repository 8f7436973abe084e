"""Fixtures for node agent tests."""

from __future__ import annotations

import random

import pytest


@pytest.fixture
def loop_cidr() -> str:
    """A random /24 inside 127.64.0.0/16 so parallel test runs do not collide."""
    return f"127.64.{random.randint(100, 254)}.0/24"
