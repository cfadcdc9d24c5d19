"""The check every evasion case makes: the origin's own code takes the bait when the request
comes straight to it, and nothing of it reaches the origin through the edge."""

from __future__ import annotations

from tests.evasion.conftest import Edge, Sent, send


async def assert_edge_stops(edge: Edge, request: Sent, what: str) -> int:
    """Send `request` to its origin directly, then through the edge; return the edge's status.

    Fails when the origin does not serve a protected resource or parse the payload on its own
    (the case would prove nothing), or when it does so through the edge (the WAF let through
    what the origin reads), or when the edge's answer is not an error of its own.
    """
    origin = edge.origin(request.host)
    served, payloads = len(origin.served), len(origin.payloads)
    direct = await send(origin.port, request)
    assert origin.served[served:] or origin.payloads[payloads:], (
        f"the origin itself does not read {what} in {request.target!r} "
        f"(it answered {direct.status}: {direct.body[:200]!r}): this case proves nothing"
    )
    served, payloads = len(origin.served), len(origin.payloads)
    through = await send(edge.port, request)
    reached = origin.served[served:] + origin.payloads[payloads:]
    assert not reached, (
        f"the WAF passed {what} ({request.target!r}) and the origin read it: {reached[:3]!r}; "
        f"the edge answered {through.status}"
    )
    assert through.status >= 400, f"the edge answered {through.status}: {through.body[:200]!r}"
    return through.status
