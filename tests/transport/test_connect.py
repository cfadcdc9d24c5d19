"""Choosing the node-side transport from a URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from failsmall.transport.base import NoChange, TransportError
from failsmall.transport.connect import connect_node_channel
from failsmall.transport.http import HttpNodeChannel
from failsmall.transport.nats import NatsControlChannel, NatsNodeChannel
from failsmall.transport.natsd import NatsServer, free_port


async def test_unknown_scheme_and_missing_token_are_refused() -> None:
    with pytest.raises(TransportError, match="unknown transport URL"):
        await connect_node_channel("ftp://127.0.0.1:1")
    with pytest.raises(TransportError, match="node token"):
        await connect_node_channel("http://127.0.0.1:7070")


async def test_http_url_gives_the_http_channel() -> None:
    channel = await connect_node_channel("http://127.0.0.1:7070", token="t")
    assert isinstance(channel, HttpNodeChannel)
    await channel.close()


async def test_nats_url_gives_a_connected_nats_channel(tmp_path: Path) -> None:
    server = NatsServer(name="connect", workdir=tmp_path)
    server.start()
    try:
        control = await NatsControlChannel.connect([server.url])
        channel = await connect_node_channel(
            f"nats://127.0.0.1:{free_port()},{server.url}", node_id="edge-1"
        )
        assert isinstance(channel, NatsNodeChannel)
        assert await channel.watch("edge-1", 0, 0.2) == NoChange(0)
        await channel.close()
        await control.close()
    finally:
        server.stop()
