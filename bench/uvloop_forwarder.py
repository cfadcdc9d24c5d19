"""The least a correct HTTP/1.1 keep-alive reverse proxy does, on uvloop with asyncio Protocols
and httptools: what any proxy whose data path runs in Python on uvloop pays before doing
anything of its own, measured beside the node by `bench/proxy.py`.

Usage: python bench/uvloop_forwarder.py LISTEN_PORT ORIGIN_URL

httptools (llhttp: the node's parser for what its compiled one-call framing leaves) frames each
request of a client connection: request line, headers, Content-Length body. Each client
connection has its own kept-alive connection to the origin, opened at its first request and
opened again after the origin closed it; requests go to it one at a time. The response is framed
the same way and written back: its Content-Length passed on, or re-framed as chunks when the
origin sent chunks or ends the body by closing (for an HTTP/1.0 client: the body ends by
closing), no body for HEAD, 1xx, 204 and 304. Pipelined requests are answered in order (reading
pauses while more than one waits). What one read causes to be written on a connection is
written in one call.

Headers pass unchanged but for the hop-by-hop ones (Connection, the headers it names,
Keep-Alive, TE, ...), which a proxy must not forward (RFC 9110 7.6.1); Host is added to a request
without one. Refused, then the connection closed: chunked request bodies (411), upgrades and
CONNECT (501), malformed requests (400); an origin that cannot be reached or fails before its
response head is a 502 (a request that meets an idle origin connection closing is not retried).
No WAF, cache, logging, timeouts, limits or back-pressure (what a slow reader has not read yet
waits in memory).
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httptools
import uvloop

HOP_BY_HOP = frozenset(
    b"connection keep-alive proxy-connection te trailer transfer-encoding upgrade".split()
)
LAST_CHUNK = b"0\r\n\r\n"


def refusal(status: bytes) -> bytes:
    return b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


BAD_REQUEST = refusal(b"400 Bad Request")
LENGTH_REQUIRED = refusal(b"411 Length Required")
NOT_IMPLEMENTED = refusal(b"501 Not Implemented")
BAD_GATEWAY = refusal(b"502 Bad Gateway")


class Refused(Exception):
    """Raised in a parser callback: the message is answered with `args[0]`, then closed."""


def end_to_end(headers: list[tuple[bytes, bytes]]) -> tuple[bytes, set[bytes]]:
    """The header lines to pass on, hop-by-hop ones left out, and every header's name in
    lower case."""
    names = {name.lower() for name, _ in headers}
    drop = HOP_BY_HOP
    if b"connection" in names:
        listed = (v for n, v in headers if n.lower() == b"connection")
        drop = drop.union(token.strip().lower() for v in listed for token in v.split(b","))
    lines = b"".join(n + b": " + v + b"\r\n" for n, v in headers if n.lower() not in drop)
    return lines, names


@dataclass(slots=True, eq=False)
class Exchange:
    """One request: its head for the origin (or the refusal that answers it), and what its
    response's framing depends on."""

    head: bytes
    refused: bool = False
    head_request: bool = False
    http10: bool = False
    keep_alive: bool = True  # the client connection stays open after the response
    body: list[bytes] = field(default_factory=list)
    """Where its body goes: kept here until it is sent, then the origin connection's output."""


class Peer(asyncio.Protocol):
    """A connection whose writes are gathered in `out` and sent in one call by `flush`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.out: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.flush()

    def flush(self) -> None:
        if self.out and self.transport is not None:
            self.transport.write(b"".join(self.out))
            self.out.clear()


class Client(Peer):
    """One client connection; `queue[0]` is the request at the origin, the rest wait."""

    def __init__(self, host: str, port: int, authority: bytes) -> None:
        super().__init__()
        self.host, self.port, self.authority = host, port, authority
        self.parser = httptools.HttpRequestParser(self)
        self.queue: deque[Exchange] = deque()
        self.reading: Exchange | None = None  # the request whose body is being read
        self.upstream: Upstream | None = None
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.paused = self.closed = False

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            self.refuse(cause.args[0] if isinstance(cause, Refused) else BAD_REQUEST)
        except httptools.HttpParserError:
            self.refuse(BAD_REQUEST)
        self.flush()
        if self.upstream is not None:
            self.upstream.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def on_message_begin(self) -> None:
        self.url = b""
        self.headers = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        if parser.should_upgrade():
            raise Refused(NOT_IMPLEMENTED)
        lines, names = end_to_end(self.headers)
        if b"transfer-encoding" in names:
            raise Refused(LENGTH_REQUIRED)
        method = parser.get_method()
        host = b"" if b"host" in names else b"Host: " + self.authority + b"\r\n"
        exchange = Exchange(
            b"%s %s HTTP/1.1\r\n%s%s\r\n" % (method, self.url, host, lines),
            head_request=method == b"HEAD",
            http10=parser.get_http_version() == "1.0",
            keep_alive=parser.should_keep_alive(),
        )
        self.reading = exchange
        self.enqueue(exchange)

    def on_body(self, body: bytes) -> None:
        if self.reading is not None:
            self.reading.body.append(body)

    def on_message_complete(self) -> None:
        self.reading = None
        if len(self.queue) > 1 and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def enqueue(self, exchange: Exchange) -> None:
        self.queue.append(exchange)
        if len(self.queue) == 1:
            self.start(exchange)

    def start(self, exchange: Exchange) -> None:
        if exchange.refused:
            self.out.append(exchange.head)
            self.close()
            return
        upstream = self.upstream
        if upstream is None or upstream.closed:
            upstream = self.upstream = Upstream(self)
            upstream.connecting = asyncio.get_running_loop().create_task(
                upstream.connect(self.host, self.port)
            )
        upstream.begin(exchange)

    def refuse(self, response: bytes) -> None:
        """Answer `response` after the requests before it, then close; read no more."""
        if self.transport is not None:
            self.transport.pause_reading()
        self.enqueue(Exchange(response, refused=True))

    def answered(self) -> None:
        """The response to `queue[0]` has been written (gathered in `out`)."""
        exchange = self.queue.popleft()
        if not exchange.keep_alive or exchange is self.reading:
            self.close()  # or answered before its whole body was read: the framing is lost
        elif self.queue:
            self.start(self.queue[0])
        if self.paused and len(self.queue) <= 1 and not self.closed:
            self.paused = False
            cast(asyncio.Transport, self.transport).resume_reading()

    def origin_failed(self, replied: bool) -> None:
        if not replied:
            self.out.append(BAD_GATEWAY)
        self.close()

    def close(self) -> None:
        self.flush()
        self.closed = True
        self.queue.clear()
        if self.transport is not None:
            self.transport.close()
        if self.upstream is not None:
            self.upstream.close()


class Upstream(Peer):
    """A client's connection to the origin: one request at a time, its response framed for
    the client in the client's `out`."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client
        self.parser = httptools.HttpResponseParser(self)
        self.connecting: asyncio.Task[None] | None = None
        self.exchange: Exchange | None = None  # the request whose response is awaited
        self.closed = False
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.replied = self.chunked = self.until_close = False
        self.head_answered = False  # a response to HEAD ended with its head (`data_received`)
        self.keep_after_head = False

    async def connect(self, host: str, port: int) -> None:
        try:
            await asyncio.get_running_loop().create_connection(lambda: self, host, port)
        except OSError:
            self.connection_lost(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.closed:  # the client left while this connection was being opened
            transport.close()
        else:
            super().connection_made(transport)

    def begin(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self.replied = self.chunked = self.until_close = False
        self.out.append(exchange.head)
        self.out += exchange.body
        exchange.body = self.out

    def data_received(self, data: bytes) -> None:
        if self.exchange is None:  # a response to nothing: the origin is out of step
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            cast(asyncio.Transport, self.transport).close()  # connection_lost: a 502
        if self.head_answered:
            self.head_answered = False
            self.finish(self.keep_after_head)
        self.client.flush()
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        exchange, self.exchange = self.exchange, None
        if exchange is None:
            return
        client = self.client
        if self.until_close:  # the origin ended the body by closing
            if self.chunked:
                client.out.append(LAST_CHUNK)
            client.answered()
        else:
            client.origin_failed(self.replied)
        client.flush()

    def on_message_begin(self) -> None:
        self.reason = b""
        self.headers = []

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange, status = self.exchange, self.parser.get_status_code()
        if exchange is None or self.head_answered:
            return
        lines, names = end_to_end(self.headers)
        head = b"HTTP/1.1 %d %s\r\n%s" % (status, self.reason, lines)
        if status < 200:
            if status == 101:  # only an upgrade may switch protocols, and none is forwarded
                raise Refused(BAD_GATEWAY)
            if not exchange.http10:
                self.client.out.append(head + b"\r\n")
            return
        if not (exchange.head_request or status in (204, 304)):
            self.until_close = not names & {b"content-length", b"transfer-encoding"}
            if self.until_close or b"transfer-encoding" in names:
                if exchange.http10:
                    exchange.keep_alive = False
                else:
                    self.chunked = True
                    head += b"Transfer-Encoding: chunked\r\n"
        if not exchange.keep_alive:
            head += b"Connection: close\r\n"
        elif exchange.http10:
            head += b"Connection: keep-alive\r\n"
        self.client.out.append(head + b"\r\n")
        self.replied = True
        if exchange.head_request:
            # llhttp cannot be told the request was HEAD and would wait for the body the
            # headers announce: this parser is left behind, the next response gets a new one.
            self.keep_after_head = self.parser.should_keep_alive()
            self.parser = httptools.HttpResponseParser(self)
            self.head_answered = True

    def on_body(self, body: bytes) -> None:
        if self.head_answered:
            return
        if self.chunked:
            self.client.out += (b"%x\r\n" % len(body), body, b"\r\n")
        else:
            self.client.out.append(body)

    def on_message_complete(self) -> None:
        if self.head_answered or self.exchange is None or self.parser.get_status_code() < 200:
            return
        if self.chunked:
            self.client.out.append(LAST_CHUNK)
        self.finish(self.parser.should_keep_alive())

    def finish(self, keep_alive: bool) -> None:
        self.exchange = None
        if not keep_alive:
            self.close()
        self.client.answered()

    def close(self) -> None:
        self.exchange = None
        self.closed = True
        self.out.clear()
        if self.transport is not None:
            self.transport.close()


async def serve(port: int, origin_url: str) -> None:
    origin = urlsplit(origin_url)
    host, origin_port = origin.hostname or "127.0.0.1", origin.port or 80
    authority = f"{host}:{origin_port}".encode()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Client(host, origin_port, authority), "127.0.0.1", port, backlog=2048
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), sys.argv[2]))
