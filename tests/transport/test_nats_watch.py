"""A node follows its pointer over NATS with one long-lived KV watcher, not one per watch."""

from __future__ import annotations

from pathlib import Path

import nats
from transport_harness import NatsHarness

from failsmall.transport.base import Assignment, NoChange
from failsmall.transport.nats import POINTERS_BUCKET, NatsNodeChannel


async def _watcher_consumers(url: str) -> list[str]:
    client = await nats.connect(url)
    try:
        infos = await client.jetstream().consumers_info(f"KV_{POINTERS_BUCKET}")
        return sorted(info.name for info in infos)
    finally:
        await client.close()


async def test_one_watcher_serves_every_watch_of_a_node(tmp_path: Path) -> None:
    harness = NatsHarness(tmp_path)
    await harness.start()
    try:
        node = await harness.node()
        assert isinstance(node, NatsNodeChannel)
        first = await harness.control.assign("edge-1", await harness.publish("one"))
        assert await node.watch("edge-1", 0, 5) == first
        consumers = await _watcher_consumers(harness.server.url)
        assert len(consumers) == 1
        for _ in range(4):
            assert await node.watch("edge-1", first.revision, 0.2) == NoChange(first.revision)
        # Asking again for what the watcher already delivered needs no new watcher.
        assert await node.watch("edge-1", 0, 5) == first
        second = await harness.control.assign("edge-1", await harness.publish("two"))
        got = await node.watch("edge-1", first.revision, 5)
        assert isinstance(got, Assignment) and got == second
        assert await _watcher_consumers(harness.server.url) == consumers
    finally:
        await harness.close()
