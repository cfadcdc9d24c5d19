"""Origins with several servers: requests are spread over them, and a server that cannot be
reached is left out while the others answer."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError

from failsmall.model import Origin, Route
from failsmall.node.server import EdgeNode
from failsmall.transport.natsd import free_port
from tests.node.conftest import (
    Keys,
    OriginServer,
    StartNode,
    WatchDir,
    fast_limits,
    make_bundle,
    running_origin,
    serving,
)


@pytest.fixture
async def second_origin() -> AsyncIterator[OriginServer]:
    async with running_origin() as state:
        yield state


async def node_for(
    start_node: StartNode, watch: WatchDir, keys: Keys, url: str, replicas: list[str]
) -> EdgeNode:
    node = await start_node()
    origin = Origin(id="web", url=url, replicas=replicas)
    bundle = make_bundle(url, origins=[origin], routes=[Route(origin="web")], limits=fast_limits())
    await serving(node, watch.publish(keys.sign(bundle)))
    return node


async def test_requests_are_spread_over_the_servers(
    start_node: StartNode,
    watch: WatchDir,
    keys: Keys,
    origin: OriginServer,
    second_origin: OriginServer,
) -> None:
    node = await node_for(start_node, watch, keys, origin.url, [second_origin.url])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        for _ in range(10):
            assert (await client.get("/hello")).status_code == 200
    assert origin.requests == 5
    assert second_origin.requests == 5


async def test_a_server_that_cannot_be_reached_is_left_out_and_the_others_answer(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    node = await node_for(start_node, watch, keys, dead, [origin.url])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        for _ in range(10):
            assert (await client.get("/hello")).status_code == 200
    assert origin.requests == 10
    # Tried once, then left out: no request pays for the dead server again.
    assert node.ctx.stats.upstream_errors["connect"] == 1


async def test_when_every_server_is_down_each_is_tried_once_then_502(
    start_node: StartNode, watch: WatchDir, keys: Keys
) -> None:
    dead = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]
    node = await node_for(start_node, watch, keys, dead[0], dead[1:])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        got = await client.get("/hello")
    assert got.status_code == 502
    assert node.ctx.stats.upstream_errors["connect"] == 3


async def test_a_new_bundle_moving_the_origin_sends_the_next_request_to_the_new_server(
    start_node: StartNode,
    watch: WatchDir,
    keys: Keys,
    origin: OriginServer,
    second_origin: OriginServer,
) -> None:
    node = await node_for(start_node, watch, keys, origin.url, [])
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        assert (await client.get("/hello")).status_code == 200
        moved = make_bundle(second_origin.url, name="moved", limits=fast_limits())
        await serving(node, watch.publish(keys.sign(moved)))
        assert (await client.get("/hello")).status_code == 200
        # An origin with the same id and servers as the first, in a third bundle: the first
        # server's pool again.
        back = make_bundle(origin.url, name="back", limits=fast_limits())
        await serving(node, watch.publish(keys.sign(back)))
        assert (await client.get("/hello")).status_code == 200
    assert (origin.requests, second_origin.requests) == (2, 1)


@pytest.mark.parametrize(
    ("url", "replicas", "message"),
    [
        ("http://10.0.0.1:80", ["http://10.0.0.1:80"], "listed twice"),
        ("http://10.0.0.1:80", ["https://10.0.0.2:443"], "share one scheme"),
        ("http://10.0.0.1:80", ["ftp://10.0.0.2"], "String should match pattern"),
    ],
    ids=["duplicate", "mixed-schemes", "bad-url"],
)
def test_replicas_are_checked_when_the_bundle_is_built(
    url: str, replicas: list[str], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Origin(id="web", url=url, replicas=replicas)
