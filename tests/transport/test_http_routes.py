"""The HTTP transport's node routes refuse what they must: no token, bad input."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from transport_harness import NODE_TOKEN, HttpHarness

from failsmall.transport.base import TransportError
from failsmall.transport.http import HttpNodeChannel


@pytest.fixture
async def http() -> AsyncIterator[HttpHarness]:
    harness = HttpHarness()
    await harness.start()
    yield harness
    await harness.close()


async def test_a_wrong_node_token_is_refused(http: HttpHarness) -> None:
    digest = await http.publish("secret")
    stranger = HttpNodeChannel(f"http://127.0.0.1:{http.port}", "not-the-token")
    try:
        with pytest.raises(TransportError, match="node token"):
            await stranger.watch("edge-1", 0, 0.1)
        with pytest.raises(TransportError, match="node token"):
            await stranger.fetch(digest)
    finally:
        await stranger.close()


async def test_bad_requests_get_a_json_error(http: HttpHarness) -> None:
    base = f"http://127.0.0.1:{http.port}"
    headers = {"Authorization": f"Bearer {NODE_TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{base}/v1/nodes/edge-1/assignment?after=x") as response:
            assert response.status == 400
            assert "after" in (await response.json())["error"]
        async with session.get(f"{base}/v1/nodes/edge-1/assignment?timeout=999") as response:
            assert response.status == 400
        async with session.post(f"{base}/v1/nodes/edge-1/apply", data=b"{nope") as response:
            assert response.status == 400
        async with session.post(
            f"{base}/v1/nodes/edge-1/health", json={"node_id": "edge-2", "digest": ""}
        ) as response:
            assert response.status == 400
            assert "edge-1" in (await response.json())["error"]
        async with session.post(
            f"{base}/v1/nodes/edge-1/apply", json={"node_id": "edge-1", "result": "maybe"}
        ) as response:
            assert response.status == 400
    assert http.sink.applies == []
    assert http.sink.healths == []
