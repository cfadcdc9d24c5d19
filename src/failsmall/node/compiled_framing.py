"""The node's framing as the request path runs it: `_framing.c`, compiled by `pip install`.

`response_head` and `request_head` return what `failsmall.node.framing`'s functions of the same
names return (the request head joined into one bytes object), `latin1_headers` a request's
headers decoded as the engine sees them, and `whole_request` and `whole_response` a client's
plain request (its headers decoded for the engine too) and an origin's plain response read in
one call as llhttp reads them (None: not one whole plain message, left to llhttp). Tests hold
each to its reference (the readable Python, or llhttp) on random and hostile input. There is no
fallback to the Python: the request path runs what is tested.
"""

from __future__ import annotations

from failsmall.node import framing, wire

try:
    from failsmall.node import _framing
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "the node's compiled framing (src/failsmall/node/_framing.c) is not built: install a C "
        "compiler, then reinstall the package (`pip install -e .` in a checkout)"
    ) from exc

_framing.bind(
    framing.ResponseHead,
    framing.BodyFraming.AS_SENT,
    framing.BodyFraming.CHUNKED,
    framing.BodyFraming.CLOSE,
    wire.STATUS_LINES,
    wire.VIA,
    framing.UPGRADE_HEADERS,
)

response_head = _framing.response_head
request_head = _framing.request_head
latin1_headers = _framing.latin1_headers
whole_request = _framing.whole_request
whole_response = _framing.whole_response

__all__ = ["latin1_headers", "request_head", "response_head", "whole_request", "whole_response"]
