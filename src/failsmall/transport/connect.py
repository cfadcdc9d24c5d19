"""Pick a node-side transport from a URL: `http(s)://control:7070` or `nats://a:4222,nats://b:4222`."""

from __future__ import annotations

from failsmall.transport.base import NodeChannel, TransportError
from failsmall.transport.http import HttpNodeChannel
from failsmall.transport.nats import NatsNodeChannel


async def connect_node_channel(
    url: str, token: str = "", node_id: str = "", jetstream_domain: str = ""
) -> NodeChannel:
    """The node side of the transport `url` names. HTTP needs the node `token`; NATS takes a
    comma-separated server list, and the control plane's `jetstream_domain` when those servers
    are leaf nodes. Raises TransportError for an unknown scheme or no connection."""
    if url.startswith(("http://", "https://")):
        if not token:
            raise TransportError(
                "the HTTP transport needs a node token (role `node`) from the control plane"
            )
        return HttpNodeChannel(url, token)
    if url.startswith(("nats://", "tls://")):
        servers = [s.strip() for s in url.split(",") if s.strip()]
        return await NatsNodeChannel.connect(
            servers, name=f"failsmall-node-{node_id}".rstrip("-"), jetstream_domain=jetstream_domain
        )
    raise TransportError(f"unknown transport URL {url!r}: use http://HOST:PORT or nats://HOST:PORT")
