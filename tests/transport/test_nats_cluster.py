"""A 3-server JetStream cluster (R3 buckets) keeps distributing when one server dies mid-rollout."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TypeVar

import pytest
from transport_harness import CollectingSink, signed_envelope

from failsmall.transport.base import (
    ApplyReport,
    ApplyResult,
    Assignment,
    NoChange,
    TransportError,
)
from failsmall.transport.nats import NatsControlChannel, NatsNodeChannel
from failsmall.transport.natsd import NatsCluster

T = TypeVar("T")


async def _watch_until_assigned(
    node: NatsNodeChannel, node_id: str, after: int, timeout_s: float = 20
) -> Assignment:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            result = await node.watch(node_id, after, 2)
        except TransportError:
            await asyncio.sleep(0.2)
            continue
        match result:
            case Assignment():
                return result
            case NoChange():
                continue
    raise AssertionError(f"{node_id} got no assignment newer than {after} in {timeout_s}s")


async def _retry(action: Callable[[], Awaitable[T]], timeout_s: float = 20) -> T:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return await action()
        except TransportError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.25)


@pytest.mark.slow
async def test_rollout_survives_a_killed_server(nats_cluster: NatsCluster) -> None:
    urls = nats_cluster.urls
    control = await _retry(lambda: NatsControlChannel.connect(urls, replicas=3))
    sink = CollectingSink()
    await control.start(sink)
    node_ids = [f"edge-{i}" for i in range(6)]
    # Each node prefers a different server, as nodes in different places would.
    nodes = {
        node_id: await NatsNodeChannel.connect(urls[i % 3 :] + urls[: i % 3])
        for i, node_id in enumerate(node_ids)
    }
    try:
        digest, envelope = signed_envelope("cluster")
        await control.publish_bundle(digest, envelope)
        canary = await control.assign(node_ids[0], digest)
        got = await _watch_until_assigned(nodes[node_ids[0]], node_ids[0], 0)
        assert got == canary

        nats_cluster.servers[0].kill()

        for node_id in node_ids[1:]:
            await _retry(partial(control.assign, node_id, digest))
        for node_id in node_ids[1:]:
            result = await _watch_until_assigned(nodes[node_id], node_id, 0)
            assert result.digest == digest
            assert await _retry(partial(nodes[node_id].fetch, digest)) == envelope
            report = ApplyReport(node_id, digest, ApplyResult.ACK, at=time.time())
            await _retry(partial(nodes[node_id].send_apply, report))
        await sink.wait_for(lambda: len(sink.applies) == len(node_ids) - 1, timeout_s=20)
        assert {r.node_id for r in sink.applies} == set(node_ids[1:])
        # The canary never goes back, and still sees no newer pointer.
        canary_channel = nodes[node_ids[0]]
        after = await _retry(partial(canary_channel.watch, node_ids[0], got.revision, 0.5))
        assert after == NoChange(got.revision)
    finally:
        for node in nodes.values():
            await node.close()
        await control.close()
