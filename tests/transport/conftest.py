"""Fixtures that run each transport for real (see transport_harness)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from transport_harness import HttpHarness, NatsHarness, NatsLeafHarness, TransportHarness

from failsmall.transport.natsd import NatsCluster


@pytest.fixture(params=["http", "nats", "nats-leaf"])
async def transport(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[TransportHarness]:
    harness: HttpHarness | NatsHarness
    match request.param:
        case "http":
            harness = HttpHarness()
        case "nats":
            harness = NatsHarness(tmp_path)
        case "nats-leaf":
            harness = NatsLeafHarness(tmp_path)
    await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    cluster = NatsCluster.create(tmp_path, 3)
    cluster.start()
    yield cluster
    cluster.stop()
