"""Fixtures for control plane tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from control_harness import Fleet, running_fleet
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@pytest.fixture(scope="session")
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
async def fleet(tmp_path: Path, key: Ed25519PrivateKey) -> AsyncIterator[Fleet]:
    async with running_fleet(tmp_path, key) as running:
        yield running
