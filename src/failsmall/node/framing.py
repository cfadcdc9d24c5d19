"""HTTP/1.1 framing of what the node forwards, as pure functions of what it read.

- `request_head`: the head sent to the origin. The request's own headers arrive already
  filtered (hop-by-hop headers and those its Connection header lists removed, see
  `failsmall.node.proxy`); the proxy adds Host when the client sent none, X-Forwarded-For/-Proto/
  -Host, X-Request-Id, Via, the WebSocket upgrade headers, and the body's framing.
- `response_head`: the head sent to the client for the origin's response head, and how its
  body is framed: kept as the origin declared it (Content-Length), re-framed as chunks (the
  origin's chunks, or a body the origin ends by closing), or delimited by closing the client
  connection (an HTTP/1.0 client cannot read chunks).
- `switching_protocols_head`: the 101 passed on when the origin accepts a WebSocket handshake.
- `cached_response`: a stored response served from the cache.

Nothing here reads a socket or a clock; `failsmall.node.exchange` calls these and writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum, auto
from typing import NamedTuple

from failsmall.node import wire
from failsmall.node.wire import HeaderKind

UPGRADE_HEADERS: bytes = b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
BUNDLE_HEADER: bytes = b"X-Failsmall-Bundle"
"""Names, on every answer, the short digest of the bundle that made it."""
_BUNDLE_FIELD = BUNDLE_HEADER + b": "
BODILESS_STATUSES = frozenset({204, 304})


class BodyFraming(Enum):
    """How the body of a response is framed towards the client."""

    AS_SENT = auto()
    """Passed on as the origin framed it: with its Content-Length, or no body at all."""
    CHUNKED = auto()
    """Re-framed as chunks: each piece the origin sends becomes one chunk, then the last."""
    CLOSE = auto()
    """Ended by closing the client connection (for an HTTP/1.0 client)."""


# Enum members read on every request, bound to module names once: in Python 3.11 reading a
# member from its class goes through EnumType.__getattr__'s slow path, about 0.1 µs a time.
_AS_SENT, _CHUNKED, _CLOSE = BodyFraming
_FORWARD, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION = (
    HeaderKind.FORWARD,
    HeaderKind.CONTENT_LENGTH,
    HeaderKind.TRANSFER_ENCODING,
    HeaderKind.CONNECTION,
)


class ResponseHead(NamedTuple):
    """The head to send the client, and what it commits the exchange to (a tuple: built for
    every proxied response, it takes less than half the time of a frozen dataclass)."""

    head: bytes
    framing: BodyFraming
    until_eof: bool
    """The origin ends the body by closing: its connection cannot be reused."""
    keep_alive: bool
    """Whether the client connection stays open after this response."""


def request_head(
    method: bytes,
    url: bytes,
    host: bytes,
    authority: bytes,
    forward: Sequence[tuple[bytes, bytes]],
    xff: bytes,
    client_ip: bytes,
    request_id: bytes,
    *,
    websocket: bool,
    chunked: bool,
    content_length: int,
) -> list[bytes]:
    """The parts of the request head sent to the origin, up to and including its blank line.

    `host` is the Host the client sent ('' for none: an HTTP/1.0 request may omit it, and then
    the origin's `authority` is sent); `xff` the X-Forwarded-For values it sent, joined; a
    `content_length` of -1 means none was declared."""
    parts = [method, b" ", url, b" HTTP/1.1\r\n"]
    if not host:
        parts += (b"Host: ", authority, b"\r\n")
    for name, value in forward:
        parts += (name, b": ", value, b"\r\n")
    parts += (
        b"X-Forwarded-For: ",
        xff + b", " + client_ip if xff else client_ip,
        b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ",
        host,
        b"\r\nX-Request-Id: ",
        request_id,
        b"\r\nVia: ",
        wire.VIA,
        b"\r\n",
    )
    if websocket:
        parts.append(UPGRADE_HEADERS)
    if chunked:
        parts.append(b"Transfer-Encoding: chunked\r\n\r\n")
    elif content_length >= 0:
        parts.append(b"Content-Length: %d\r\n\r\n" % content_length)
    else:
        parts.append(b"\r\n")
    return parts


def request_body(data: bytes, *, chunked: bool) -> bytes:
    """A piece of the request body as sent to the origin."""
    return wire.chunk(data) if chunked else data


def response_head(
    status: int,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    head_request: bool,
    http10: bool,
    keep_alive: bool,
    request_id: bytes,
    bundle_tag: bytes,
) -> ResponseHead:
    """The head sent to the client for an origin's response head (`headers` as sent).

    Hop-by-hop headers, `Proxy-*` headers and those the origin's Connection header lists are
    dropped; the body keeps the origin's Content-Length, or is re-framed (`BodyFraming`). An
    empty `bundle_tag` sends no X-Failsmall-Bundle header."""
    length = b""
    chunked = False
    out = [wire.status_line(status)]
    listed_in: list[bytes] = []
    kinds = wire.HEADER_KINDS
    for name, value in headers:
        kind = kinds.get(name)
        if kind is None:
            kind = wire.header_kind(name)
        if kind is _FORWARD:
            out += (name, b": ", value, b"\r\n")
        elif kind is _CONTENT_LENGTH:
            length = value
        elif kind is _TRANSFER_ENCODING:
            chunked = True
        elif kind is _CONNECTION and value not in wire.PLAIN_CONNECTION_VALUES:
            listed_in.append(value)
    if listed_in:
        listed = wire.connection_tokens(listed_in) - wire.HOP_BY_HOP
        if listed:
            out = _drop_listed(out, listed)
    framing = _AS_SENT
    until_eof = False
    bodiless = head_request or status in BODILESS_STATUSES
    if chunked and not bodiless:
        framing = _CLOSE if http10 else _CHUNKED
    elif length:
        out += (b"Content-Length: ", length, b"\r\n")
    elif not bodiless:
        until_eof = True  # no length and not chunked: the origin ends the body by closing
        framing = _CLOSE if http10 else _CHUNKED
    if framing is _CHUNKED:
        out.append(b"Transfer-Encoding: chunked\r\n")
    elif framing is _CLOSE:
        keep_alive = False
    out += (b"Via: ", wire.VIA, b"\r\nX-Request-Id: ", request_id, b"\r\n")
    if bundle_tag:
        out += (_BUNDLE_FIELD, bundle_tag, b"\r\n")
    if not keep_alive:
        out.append(b"Connection: close\r\n")
    elif http10:
        out.append(b"Connection: keep-alive\r\n")
    out.append(b"\r\n")
    return ResponseHead(b"".join(out), framing, until_eof, keep_alive)


def response_body(data: bytes, framing: BodyFraming) -> bytes:
    """A piece of the origin's response body as sent to the client."""
    return wire.chunk(data) if framing is _CHUNKED else data


def switching_protocols_head(
    headers: Sequence[tuple[bytes, bytes]], request_id: bytes, bundle_tag: bytes
) -> bytes:
    """The 101 sent to the client when the origin accepted its WebSocket handshake: the
    origin's end-to-end headers, and the upgrade headers the proxy speaks."""
    out = [wire.status_line(101)]
    for name, value in headers:
        if wire.header_kind(name) is _FORWARD:
            out += (name, b": ", value, b"\r\n")
    out += [UPGRADE_HEADERS, b"Via: ", wire.VIA, b"\r\nX-Request-Id: ", request_id]
    if bundle_tag:
        out += [b"\r\n", _BUNDLE_FIELD, bundle_tag]
    out.append(b"\r\n\r\n")
    return b"".join(out)


def local_response(
    status: int,
    body: bytes,
    *,
    keep_alive: bool,
    head_request: bool,
    request_id: bytes,
    bundle_tag: bytes,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """A response the node answers itself (block, challenge, error page)."""
    headers = [(b"X-Request-Id", request_id)] if request_id else []
    if bundle_tag:
        headers.append((BUNDLE_HEADER, bundle_tag))
    headers += extra
    return wire.local_response(
        status,
        body,
        keep_alive=keep_alive,
        content_type=content_type,
        extra=headers,
        head_only=head_request,
    )


def cached_response(
    status: int,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    *,
    keep_alive: bool,
    head_request: bool,
    request_id: bytes,
    bundle_tag: bytes,
) -> bytes:
    """A stored response served from the cache: its end-to-end headers as the origin sent
    them (its Content-Type kept, its framing replaced by this response's), and `X-Cache: HIT`."""
    kept = [(n, v) for n, v in headers if not wire.is_hop_by_hop(n.lower(), frozenset())]
    kept.append((b"X-Cache", b"HIT"))
    out = [(b"X-Request-Id", request_id)] if request_id else []
    if bundle_tag:
        out.append((BUNDLE_HEADER, bundle_tag))
    out += [h for h in kept if h[0].lower() != b"content-type"]
    return wire.local_response(
        status,
        body,
        keep_alive=keep_alive,
        content_type=_content_type(kept),
        extra=out,
        head_only=head_request,
    )


def _drop_listed(out: list[bytes], listed: frozenset[bytes]) -> list[bytes]:
    """Remove from a head being built (status line, then name/": "/value/CRLF groups) the
    headers that a Connection header named."""
    kept = out[:1]
    for i in range(1, len(out), 4):
        if out[i].lower() not in listed:
            kept += out[i : i + 4]
    return kept


def _content_type(headers: Sequence[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value
    return b"application/octet-stream"
