"""One contract, every transport: what a node and the control plane may rely on."""

from __future__ import annotations

import asyncio
import time

import pytest
from transport_harness import TransportHarness

from failsmall.transport.base import (
    ApplyReport,
    ApplyResult,
    Assignment,
    BundleNotFoundError,
    HealthReport,
    NoChange,
    NodeChannel,
    TransportError,
)


async def test_assignments_arrive_in_order_with_growing_revisions(
    transport: TransportHarness,
) -> None:
    node = await transport.node()
    first = await transport.publish("first")
    second = await transport.publish("second")
    await transport.control.assign("edge-1", first)
    got_first = await node.watch("edge-1", 0, 5)
    assert isinstance(got_first, Assignment)
    assert got_first.digest == first
    await transport.control.assign("edge-1", second)
    got_second = await node.watch("edge-1", got_first.revision, 5)
    assert isinstance(got_second, Assignment)
    assert got_second.digest == second
    assert got_second.revision > got_first.revision


async def test_watch_times_out_with_no_change(transport: TransportHarness) -> None:
    node = await transport.node()
    digest = await transport.publish("only")
    assigned = await transport.control.assign("edge-1", digest)
    started = time.monotonic()
    result = await node.watch("edge-1", assigned.revision, 0.5)
    assert result == NoChange(revision=assigned.revision)
    assert time.monotonic() - started >= 0.4


async def test_unassigned_node_times_out_with_no_change(transport: TransportHarness) -> None:
    node = await transport.node()
    assert await node.watch("edge-never", 0, 0.3) == NoChange(revision=0)


async def test_watch_wakes_up_when_the_pointer_moves(transport: TransportHarness) -> None:
    node = await transport.node()
    digest = await transport.publish("late")
    waiting = asyncio.create_task(node.watch("edge-2", 0, 10))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    started = time.monotonic()
    await transport.control.assign("edge-2", digest)
    result = await asyncio.wait_for(waiting, 5)
    assert isinstance(result, Assignment)
    assert result.digest == digest
    assert time.monotonic() - started < 1.0


async def test_pointers_are_per_node(transport: TransportHarness) -> None:
    node = await transport.node()
    digest = await transport.publish("canary-only")
    await transport.control.assign("edge-canary", digest)
    assert await node.watch("edge-other", 0, 0.3) == NoChange(revision=0)
    assignments = await transport.control.assignments()
    assert set(assignments) == {"edge-canary"}
    assert assignments["edge-canary"].digest == digest


async def test_fetch_by_digest_returns_the_published_envelope(transport: TransportHarness) -> None:
    node = await transport.node()
    digest = await transport.publish("fetched")
    assert await node.fetch(digest) == transport.published[digest]


async def test_unknown_digest_is_bundle_not_found(transport: TransportHarness) -> None:
    node = await transport.node()
    with pytest.raises(BundleNotFoundError):
        await node.fetch("sha256:" + "0" * 64)


async def test_assigning_an_unpublished_bundle_is_refused(transport: TransportHarness) -> None:
    with pytest.raises(BundleNotFoundError):
        await transport.control.assign("edge-1", "sha256:" + "1" * 64)
    assert await transport.control.assignments() == {}


async def test_reports_arrive_at_the_control_side(transport: TransportHarness) -> None:
    node = await transport.node()
    ack = ApplyReport("edge-1", "sha256:abc", ApplyResult.ACK, at=1.0)
    nack = ApplyReport("edge-1", "sha256:def", ApplyResult.NACK, error="capacity", at=2.0)
    health = HealthReport(
        "edge-1", "sha256:abc", "sha256:abc", at=3.0, window_s=1.0, requests=10, blocked=2
    )
    await node.send_apply(ack)
    await node.send_apply(nack)
    await node.send_health(health)
    await transport.sink.wait_for(
        lambda: len(transport.sink.applies) == 2 and len(transport.sink.healths) == 1
    )
    assert transport.sink.applies == [ack, nack]
    assert transport.sink.healths == [health]


async def test_a_node_that_missed_revisions_gets_the_latest(transport: TransportHarness) -> None:
    node = await transport.node()
    digests = [await transport.publish(f"v{i}") for i in range(3)]
    first = await transport.control.assign("edge-1", digests[0])
    await transport.control.assign("edge-1", digests[1])
    await transport.control.assign("edge-1", digests[2])
    result = await node.watch("edge-1", first.revision, 5)
    assert isinstance(result, Assignment)
    assert result.digest == digests[2]
    assert await node.watch("edge-1", result.revision, 0.3) == NoChange(result.revision)


async def test_resync_after_restart(transport: TransportHarness) -> None:
    node = await transport.node()
    before = await transport.publish("before")
    after = await transport.publish("after")
    seen = await transport.control.assign("edge-1", before)
    assert await node.watch("edge-1", 0, 5) == seen
    await transport.restart()
    # Nothing changed across the restart: the node must not see an older or a new pointer.
    result = await _watch_through_reconnect(transport, node, seen.revision, 0.5)
    assert result == NoChange(seen.revision)
    moved = await transport.control.assign("edge-1", after)
    assert moved.revision > seen.revision
    result = await _watch_through_reconnect(transport, node, seen.revision, 5)
    assert result == moved
    assert await node.fetch(after) == transport.published[after]
    report = ApplyReport("edge-1", after, ApplyResult.ACK, at=5.0)
    await node.send_apply(report)
    await transport.sink.wait_for(lambda: report in transport.sink.applies)


async def _watch_through_reconnect(
    transport: TransportHarness, node: NodeChannel, after: int, timeout_s: float
) -> Assignment | NoChange:
    """Watch as a node agent does: on a transport error, back off briefly and watch again."""
    deadline = time.monotonic() + 15
    while True:
        try:
            return await node.watch("edge-1", after, timeout_s)
        except TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
