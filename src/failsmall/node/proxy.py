"""The client side of the reverse proxy: one `ClientConnection` per TCP connection.

Requests are parsed with httptools (llhttp), or, when one arrives whole and plain in one read,
by one compiled call (`compiled_framing.whole_request`), and handled entirely in protocol
callbacks, with no task per request. Each request becomes an `Exchange`; exchanges on one
connection are answered in order (pipelined requests wait their turn). Limits from the bundle
are enforced while parsing, and one deadline per connection covers the idle, header, body and
origin read timeouts.

That deadline is armed once per phase of the exchange at the head of the queue: the rest of its
head or body while it arrives, its origin's answer (moved on by each read from the origin), the
next request while idle. A request read whole in one piece arms none of its own; a request
pipelined behind another leaves the deadline to it (bounded meanwhile by the head's size limit
and the body's minimum rate) and arms its own when its turn comes.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Final, assert_never, cast

import httptools

from failsmall.model import BodyOverBuffer
from failsmall.node import wire
from failsmall.node.access_log import AccessEntry, AccessLog
from failsmall.node.batching import WriteBatch
from failsmall.node.compiled_framing import latin1_headers, whole_request
from failsmall.node.deadline import Deadline
from failsmall.node.exchange import ClientSide, Exchange, ExchangeState, RequestRejected
from failsmall.node.serving import ServingSlot
from failsmall.node.stats import TrafficStats
from failsmall.node.upstream import Pools

DRAIN_LIMIT: Final = 1024 * 1024
LINGER_S: Final = 2.0
PIPELINE_DEPTH: Final = 32
"""Requests parsed ahead of the one being answered; input past them waits unparsed."""
PARSE_BYTES: Final = 4096
"""Input is parsed this much at a time, so that a read full of tiny pipelined requests stops
near PIPELINE_DEPTH queued requests instead of becoming thousands of them."""
UNPARSED: Final = object()
"""Who pauses reading while input waits unparsed."""


# Enum members read on every request, bound to Final module names once: compiled code reads
# them from C statics, where reading a member from its class takes about 0.1 µs (Python 3.11).
_NO_DEADLINE: Final = Deadline.NONE
_IDLE: Final = Deadline.IDLE
_HEADERS: Final = Deadline.HEADERS
_BODY: Final = Deadline.BODY
_UPSTREAM: Final = Deadline.UPSTREAM
_READING: Final = ExchangeState.READING
_DONE: Final = ExchangeState.DONE
_BODY_REJECT: Final = BodyOverBuffer.REJECT
#: Read from a C static where called for each request, not looked up in the module's globals
#: (what mypyc does for a name that is not `Final`).
_WHOLE_REQUEST: Final = whole_request


@dataclass(eq=False)
class ProxyContext:
    """What every connection of one node process shares."""

    slot: ServingSlot
    writes: WriteBatch = field(default_factory=WriteBatch)
    pools: Pools = field(init=False)
    stats: TrafficStats = field(default_factory=TrafficStats)
    ids: wire.RequestIds = field(default_factory=wire.RequestIds)
    connections: set[ClientConnection] = field(default_factory=set)
    clients: Counter[str] = field(default_factory=Counter)
    """Open connections per client address (trusted proxies are not counted)."""
    draining: bool = False
    """The node is stopping: every response closes its connection."""
    access_log: AccessLog | None = None
    """Where a line per request goes; None when the node keeps no access log."""

    def __post_init__(self) -> None:
        self.pools = Pools(self.writes)


def _check_transfer_coding(value: bytes, http10: bool) -> None:
    """Accept `Transfer-Encoding: chunked` alone. The parser already refuses a request whose
    last coding is not chunked; a coding before it (`gzip, chunked`) would be lost when the
    body is re-framed for the origin, so it is not implemented here, as in nginx."""
    if http10:
        # RFC 9112 6.1: in HTTP/1.0 the framing is faulty; a smuggling vector otherwise.
        raise RequestRejected(400, "Transfer-Encoding in an HTTP/1.0 request")
    if value.strip().lower() != b"chunked":
        raise RequestRejected(501, "only the chunked transfer coding is supported")


RETRY_SOON: Final = [(b"Retry-After", b"1")]
URI_TOO_LONG: Final = "request URI is longer than max_uri_bytes"


class ClientConnection(asyncio.Protocol, ClientSide):
    """One client TCP connection: parses requests, answers them in order, enforces limits."""

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = "127.0.0.1"
        self.client_ip_bytes = b"127.0.0.1"
        self.queue: deque[Exchange] = deque()
        self.reading: Exchange | None = None
        self.deadline = 0.0  # the earlier of `due` and `body_by`, what the sweeper checks
        self.deadline_kind = _NO_DEADLINE
        self.due = 0.0  # when what `deadline_kind` guards times out
        self.body_by = 0.0  # when the body being read must have ended (minimum rate); 0: none
        self.body_started = 0.0
        self.paused_at = 0.0
        self.counted_client = False
        self.head_bytes = 0
        self.in_head = False  # inside a request head that has not ended yet
        self.head_raw = 0
        self.heads_begun = 0
        self.body_in_feed = False
        self.unparsed = b""  # input past PIPELINE_DEPTH queued requests, parsed in turn
        self.llhttp_fresh = True
        """llhttp has read nothing yet: requests read whole (`whole_request`) may bypass it.
        Once it has read anything, it reads everything: its state (a request begun, a
        `Connection: close` read) is then part of what the next request means."""
        self.parsing = False
        self.eof = False
        self.lingering = False
        self.refusing = False  # a refused request waits behind earlier ones; input is dropped
        self.drained = 0
        self.closed = False
        self._pausers: set[int] = set()
        self._writing_paused = False
        self.upgraded: Exchange | None = None  # the WebSocket handshake that ended HTTP here

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.client_ip = str(peer[0])
            self.client_ip_bytes = self.client_ip.encode()
        connections = self.ctx.connections
        connections.add(self)
        limits = self.ctx.slot.limits
        if len(connections) > limits.max_connections:
            # Shed at the door, cheaply, rather than slow down every connection already open.
            self.ctx.stats.connections_refused["node_limit"] += 1
            self.reject(
                503,
                f"this node is at its limit of {limits.max_connections} connections; retry soon",
                extra=RETRY_SOON,
            )
            return
        if not self._trusted_proxy():
            self.counted_client = True
            clients = self.ctx.clients
            clients[self.client_ip] += 1
            if clients[self.client_ip] > limits.max_connections_per_client:
                self.ctx.stats.connections_refused["client_limit"] += 1
                self.reject(
                    429,
                    f"too many connections from {self.client_ip} (this node allows "
                    f"{limits.max_connections_per_client} per client); retry soon",
                    extra=RETRY_SOON,
                )
                return
        self.arm(_HEADERS, limits.header_timeout_s)

    def _trusted_proxy(self) -> bool:
        """Whether the peer is one of the bundle's trusted proxies (a load balancer in front of
        the edge, whose connections carry many clients)."""
        serving = self.ctx.slot.current
        trusted = serving.engine.clients.trusted if serving is not None else None
        return trusted is not None and trusted.contains(self.client_ip)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ctx.connections.discard(self)
        if self.counted_client:
            self.counted_client = False
            clients = self.ctx.clients
            clients[self.client_ip] -= 1
            if clients[self.client_ip] <= 0:
                del clients[self.client_ip]
        if self.upgraded is not None:
            self.upgraded.tunnel_closed()
        for exchange in self.queue:
            upstream, exchange.upstream = exchange.upstream, None
            if upstream is not None:
                upstream.close()
            if exchange.state is not _DONE:
                exchange.state = _DONE
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.upgraded is not None:
            self.upgraded.tunnel_from_client(data)
            return
        if self.lingering or self.refusing:
            self.drained += len(data)
            if self.drained > DRAIN_LIMIT:
                self.close()
            return
        if self.unparsed:
            self.unparsed += data
            return
        room = len(self.queue) <= PIPELINE_DEPTH
        if room and self.llhttp_fresh:
            whole = _WHOLE_REQUEST(data)
            if whole is not None and whole[4]:  # one whole request, keep-alive
                # Nothing of it is left to wait for: no header or body deadline to arm.
                (
                    method, url, headers, http10, keep_alive, body, head_bytes, noted, path,
                    query, text_headers,
                ) = whole  # fmt: skip
                self.parsing = True
                try:  # its fields named, not `*whole`: a native call, not one through Python
                    self._whole(
                        method, url, headers, http10, keep_alive, body, head_bytes, noted,
                        path, query, text_headers,
                    )  # fmt: skip
                finally:
                    self.parsing = False
                return
        if self.reading is None and self.deadline_kind is _IDLE:
            self.arm(_HEADERS, self.ctx.slot.limits.header_timeout_s)
        if room and len(data) <= PARSE_BYTES:
            # The common case, one piece: what `_parse` does for it, without its loop.
            self.parsing = True
            try:
                self._feed(data)
            finally:
                self.parsing = False
            return
        self._parse(data)

    def _parse(self, data: bytes) -> None:
        """Feed `data` to the parser PARSE_BYTES at a time; once more than PIPELINE_DEPTH
        requests are queued, keep the rest unparsed (and reading paused) until answers make
        room (`exchange_done`)."""
        self.parsing = True
        try:
            offset = 0
            while offset < len(data):
                if len(self.queue) > PIPELINE_DEPTH:
                    self.unparsed = data[offset:]
                    self.pause_reading_for(UNPARSED)
                    return
                piece = data if len(data) <= PARSE_BYTES else data[offset : offset + PARSE_BYTES]
                offset += len(piece)
                self._feed(piece)
                if self.upgraded is not None:
                    if offset < len(data):
                        self.upgraded.tunnel_from_client(data[offset:])
                    return
                if self.closed or self.lingering or self.refusing:
                    return
        finally:
            self.parsing = False

    def _feed(self, data: bytes) -> None:
        self.llhttp_fresh = False
        was_in_head, heads_before = self.in_head, self.heads_begun
        self.body_in_feed = False
        try:
            self.parser.feed_data(data)
            if self.in_head:
                self._bound_unfinished_head(data, was_in_head and heads_before == self.heads_begun)
        except RequestRejected as rejected:
            self.reject(rejected.status, rejected.reason)
        except httptools.HttpParserCallbackError as callback_error:
            cause = callback_error.__context__
            if isinstance(cause, RequestRejected):
                self.reject(cause.status, cause.reason)
            else:
                self.reject(400, f"malformed request: {callback_error}")
        except httptools.HttpParserUpgrade as upgrade:
            handshake = self.queue[-1] if self.queue else None
            if handshake is None or not handshake.websocket:
                self.reading = handshake  # the request refused is the one asking to upgrade
                self.reject(
                    400, "only WebSocket upgrades (GET with Upgrade: websocket) are proxied"
                )
                return
            # No more HTTP on this connection: what follows the handshake is for the tunnel.
            self.upgraded = handshake
            rest = data[int(upgrade.args[0]) :]
            if rest:
                handshake.tunnel_from_client(rest)
        except httptools.HttpParserError as exc:
            self.reject(400, f"malformed request: {exc}")

    def _whole(
        self,
        method: bytes,
        url: bytes,
        headers: list[tuple[bytes, bytes]],
        http10: bool,
        keep_alive: bool,
        body: bytes,
        head_bytes: int,
        noted: NotedHeaders,
        path: str,
        query: str,
        text_headers: tuple[tuple[str, str], ...],
    ) -> None:
        """A plain keep-alive request read whole in one call (`whole_request`) while llhttp
        has read nothing: what llhttp's callbacks do for it, in their order, without a call
        per header, and without the deadlines that guard a request still arriving."""
        exchange = self._begin(headers, noted[0])
        try:
            if len(url) > exchange.limits.max_uri_bytes:
                raise RequestRejected(414, URI_TOO_LONG)
            exchange.url = url
            self.head_bytes = head_bytes
            self._head_begins(exchange, method, http10, keep_alive)
            _take_noted(exchange, noted)
            exchange.path = path  # its target is in origin form: what `_read_target` reads
            exchange.query = query
            exchange.text_headers = text_headers
            self._check_head(exchange)
            if body:
                exchange.add_body(body)
            self.reading = None
            exchange.body_done = True  # what `end_body` does for a body not chunked
            self._evaluate_in_turn(exchange)
        except RequestRejected as exc:
            self.reject(exc.status, exc.reason)

    def _bound_unfinished_head(self, data: bytes, all_head: bool) -> None:
        """Refuse a head still unfinished after more input than a whole head may have, counting
        only bytes that belong to it: all of `data` when the head began before it, else the
        partial line `data` ends with (when no body came before it in `data`, so that line is
        the head's). The parser holds an unfinished line whole, whatever its length."""
        if all_head:
            self.head_raw += len(data)
        elif not self.body_in_feed:
            self.head_raw = len(data) - data.rfind(b"\n") - 1
        limits = self.ctx.slot.limits
        if self.head_raw > limits.max_header_bytes + limits.max_uri_bytes:
            raise RequestRejected(431, "request head is larger than max_header_bytes")

    def eof_received(self) -> bool:
        """The client half-closed: answer the requests it sent whole, then close. A request it
        had not finished never will be: it is dropped (counted as abandoned), and with nothing
        before it the connection closes at once. A tunnel ends. (Returning False lets the
        transport close, and `connection_lost` closes the origin's side.)"""
        if self.upgraded is not None:
            return False
        self.eof = True
        if self.unparsed:  # parsed in turn; `_input_ended` runs once it all is
            return True
        return self._input_ended()

    def _input_ended(self) -> bool:
        """No more input will come: drop a request cut short, answer the rest, then close
        (False: close now)."""
        cut = self.reading
        if cut is not None:
            self.reading = None
            self.ctx.stats.abandoned += 1
            self._stop_body_clock()
            if cut in self.queue:
                self.queue.remove(cut)
            upstream, cut.upstream = cut.upstream, None
            if upstream is not None:
                upstream.close()
            cut.state = _DONE
        if self.queue:
            self.queue[-1].keep_alive = False  # the connection closes after the last answer
        return bool(self.queue)

    def pause_writing(self) -> None:
        self._writing_paused = True
        head = self.queue[0] if self.queue else None
        if head is not None and head.upstream is not None:
            head.upstream.pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        head = self.queue[0] if self.queue else None
        if head is not None and head.upstream is not None:
            head.upstream.resume_reading()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        exchange = self._begin([], [])
        if self.deadline_kind is not _HEADERS and len(self.queue) == 1:
            self.arm(_HEADERS, exchange.limits.header_timeout_s)

    def _begin(
        self, raw_headers: list[tuple[bytes, bytes]], forward: list[tuple[bytes, bytes]]
    ) -> Exchange:
        """A new request begins: its exchange joins the queue, as the one being read, with
        the lists its headers are (or will be) read into."""
        ctx = self.ctx
        slot = ctx.slot
        exchange = Exchange(self, ctx, slot.current, slot.limits, raw_headers, forward)
        self.reading = exchange
        self.queue.append(exchange)
        self.head_bytes = 0
        self.head_raw = 0
        self.in_head = True
        self.heads_begun += 1
        return exchange

    def _reading(self) -> Exchange:
        """The exchange whose request the parser is reading; llhttp calls `on_message_begin`
        before any other callback, so there always is one (callbacks read `self.reading or
        self._reading()`: the call only when there is none, to raise)."""
        exchange = self.reading
        if exchange is None:
            raise RequestRejected(400, "request parts arrived outside a request")
        return exchange

    def on_url(self, url: bytes) -> None:
        exchange = self.reading or self._reading()
        exchange.url += url
        if len(exchange.url) > exchange.limits.max_uri_bytes:
            raise RequestRejected(414, URI_TOO_LONG)

    def on_header(self, name: bytes, value: bytes) -> None:
        # Only collected here; count and size are checked once the head is complete. Until
        # then `data_received` bounds what an unfinished head may accumulate.
        self.head_bytes += len(name) + len(value) + 4
        exchange = self.reading or self._reading()
        exchange.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        exchange = self.reading or self._reading()
        self._head_begins(
            exchange,
            parser.get_method(),
            parser.get_http_version() == "1.0",
            parser.should_keep_alive(),
        )
        self._read_headers(exchange)
        self._read_target(exchange)
        exchange.text_headers = latin1_headers(exchange.raw_headers)
        self._check_head(exchange)
        first = exchange is self.queue[0]  # else the deadline is its predecessor's
        if exchange.content_length > 0 or exchange.chunked_in:
            if first:
                self.arm(_BODY, exchange.limits.body_timeout_s)
            self._start_body_clock()
        elif first:
            self.deadline_kind = _NO_DEADLINE

    def _head_begins(
        self, exchange: Exchange, method: bytes, http10: bool, keep_alive: bool
    ) -> None:
        """The request head has ended: check its size, note its request line (its headers
        are read next, then `_head_ends`)."""
        limits = exchange.limits
        if len(exchange.raw_headers) > limits.max_headers:
            raise RequestRejected(431, "too many request headers")
        if self.head_bytes > limits.max_header_bytes:
            raise RequestRejected(431, "request headers are larger than max_header_bytes")
        self.in_head = False
        exchange.method = method
        exchange.head = method == b"HEAD"
        exchange.http10 = http10
        exchange.keep_alive = keep_alive and not self.ctx.draining

    def _check_head(self, exchange: Exchange) -> None:
        """Check the declared body, choose the request id, and answer `Expect: 100-continue`
        (a client may wait for that before it sends its body)."""
        limits = exchange.limits
        if exchange.content_length > limits.max_body_bytes:
            raise RequestRejected(413, "declared request body exceeds max_body_bytes")
        if (
            limits.body_over_buffer is _BODY_REJECT
            and exchange.content_length > limits.waf_body_buffer
        ):
            raise RequestRejected(413, "declared request body exceeds the WAF inspection buffer")
        exchange.request_id = self.ctx.ids.choose(exchange.request_id or None)
        if (
            exchange.expects_continue
            and not exchange.http10
            and (exchange.content_length > 0 or exchange.chunked_in)
        ):
            self.write(wire.CONTINUE)

    def on_body(self, body: bytes) -> None:
        exchange = self.reading or self._reading()
        self.body_in_feed = True
        exchange.add_body(body)
        if self.deadline_kind is _BODY:
            self.extend(exchange.limits.body_timeout_s)
        self._track_body()
        if not exchange.evaluated and exchange is self.queue[0] and exchange.ready():
            exchange.evaluate()

    def on_message_complete(self) -> None:
        exchange = self.reading or self._reading()
        self.reading = None
        if self.body_started:
            self._stop_body_clock()
        exchange.end_body()
        if exchange.state is _READING:
            self._evaluate_in_turn(exchange)

    def _evaluate_in_turn(self, exchange: Exchange) -> None:
        """A request has been read whole: the engine sees it now if it is the one to answer,
        else when its turn comes (`exchange_done`), reading paused meanwhile."""
        if exchange is self.queue[0]:
            self.deadline_kind = _NO_DEADLINE
            exchange.evaluate()
        else:
            self.pause_reading_for(self)

    @staticmethod
    def _read_headers(exchange: Exchange) -> None:
        """One pass over the request headers: note what the proxy needs, keep the rest."""
        connection: list[bytes] = []
        upgrade = b""
        hosts = 0
        forward = exchange.forward
        for name, value in exchange.raw_headers:
            lower = name.lower()
            if lower not in _NOTED:
                if not lower.startswith(b"proxy-"):
                    forward.append((name, value))
            elif lower == b"host":
                hosts += 1
                exchange.host = value
                forward.append((name, value))
            elif lower == b"content-length":
                exchange.content_length = _content_length(value)
            elif lower == b"transfer-encoding":
                _check_transfer_coding(value, exchange.http10)
                exchange.chunked_in = True
            elif lower == b"connection":
                connection.append(value)
            elif lower == b"upgrade":
                upgrade = value
            elif lower == b"x-forwarded-for":
                exchange.xff = exchange.xff + b", " + value if exchange.xff else value
            elif lower == b"x-request-id":
                exchange.request_id = value
            elif lower == b"expect":
                exchange.expects_continue = value.lower() == b"100-continue"
            # Anything else noted is hop-by-hop or replaced by the proxy's own value.
        _check_hosts(hosts, exchange.http10)
        if connection:
            tokens = wire.connection_tokens(connection)
            listed = tokens - _NOTED
            if listed:
                exchange.forward = [(n, v) for n, v in forward if n.lower() not in listed]
            if (
                upgrade.strip().lower() == b"websocket"
                and b"upgrade" in tokens
                and exchange.method == b"GET"
                and not exchange.http10
            ):
                exchange.websocket = True
                exchange.keep_alive = False  # after the handshake, HTTP is over here

    @staticmethod
    def _read_target(exchange: Exchange) -> None:
        url = exchange.url
        if url[:1] == b"/":
            path, _, query = url.partition(b"?")
        elif url == b"*":
            path, query = b"*", b""
        else:
            try:
                parsed = httptools.parse_url(url)
            except httptools.HttpParserInvalidURLError as exc:
                raise RequestRejected(400, "request target is not a valid URI") from exc
            path = parsed.path or b"/"
            query = parsed.query or b""
            if parsed.host:
                exchange.host = parsed.host + (b":%d" % parsed.port if parsed.port else b"")
            exchange.url = path + (b"?" + query if query else b"")
            exchange.forward = [(n, v) for n, v in exchange.forward if n.lower() != b"host"]
            exchange.forward.append((b"Host", exchange.host))
        exchange.path = path.decode("latin-1")
        exchange.query = query.decode("latin-1")

    # -- flow control ----------------------------------------------------------------------

    def pause_reading_for(self, owner: object) -> None:
        if not self._pausers and self.transport is not None and not self.closed:
            self.transport.pause_reading()
            # The client cannot send while the node does not read: its body rate is not counted.
            self.paused_at = self.loop.time()
        self._pausers.add(id(owner))
        self._track_body()

    def resume_reading_for(self, owner: object) -> None:
        if id(owner) in self._pausers:
            self._pausers.discard(id(owner))
            if not self._pausers and self.transport is not None and not self.closed:
                self.transport.resume_reading()
                if self.body_started:
                    self.body_started += self.loop.time() - self.paused_at
                self._track_body()

    # -- deadlines -------------------------------------------------------------------------

    def arm(self, kind: Deadline, seconds: float) -> None:
        self.deadline_kind = kind
        due = self.due = self.loop.time() + seconds
        self.deadline = min(due, self.body_by) if self.body_by else due

    def extend(self, seconds: float) -> None:
        """Move the deadline of what the connection waits for to `seconds` from now."""
        due = self.due = self.loop.time() + seconds
        self.deadline = min(due, self.body_by) if self.body_by else due

    def _start_body_clock(self) -> None:
        self.body_started = self.loop.time()
        self._track_body()

    def _stop_body_clock(self) -> None:
        self.body_started = 0.0
        self._track_body()

    def _track_body(self) -> None:
        """When the body being read must have ended at the bundle's minimum rate, given what
        has arrived (no such time while the node itself does not read)."""
        exchange = self.reading
        if exchange is None or not self.body_started or self._pausers:
            self.body_by = 0.0
        else:
            limits = exchange.limits
            self.body_by = (
                self.body_started
                + limits.body_rate_grace_s
                + exchange.body_bytes / limits.min_body_rate_bytes_s
            )
        self.deadline = min(self.due, self.body_by) if self.body_by else self.due

    # -- output and lifecycle --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.ctx.writes.write(self.transport, data)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.ctx.writes.flush()
            self.closed = True
            self.transport.close()

    def linger(self) -> None:
        """Half-close after the response and discard what the client still sends, so it can
        read the response before the connection goes (closing with unread input resets it)."""
        if self.closed or self.transport is None:
            return
        if self.lingering:
            return
        self.lingering = True
        self.unparsed = b""
        self._pausers.clear()
        self.reading = None
        self._stop_body_clock()
        self.transport.resume_reading()
        if self.transport.can_write_eof():
            self.ctx.writes.flush()
            self.transport.write_eof()
        self.arm(_IDLE, LINGER_S)

    def reject(
        self, status: int, reason: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Answer a request that broke a limit or could not be parsed, then close. Requests
        pipelined before it are answered first: its refusal waits its turn."""
        self.ctx.stats.reject(str(status))
        head = self.queue[0] if self.queue else None
        if head is not None and head is not self.reading and not self.lingering:
            self._refuse_in_turn(status, reason)
            return
        if head is not None and head.response_started:
            self.close()
            return
        body = b"%d: %s\n" % (status, reason.encode())
        if head is not None and head.state is not _DONE:
            self.reading = None
            head.refuse(status, reason)
        else:
            self.write(wire.local_response(status, body, keep_alive=False, extra=extra))
            if self.ctx.access_log is not None:
                self.ctx.access_log.add(
                    AccessEntry(self.client_ip, status, "rejected", 0.0, note=reason)
                )
        self.linger()

    def _refuse_in_turn(self, status: int, reason: str) -> None:
        """Stop reading requests; the one being read (or a stand-in for input that never became
        one) is refused once every request before it is answered."""
        offender = self.reading
        self.reading = None
        self._stop_body_clock()
        if offender is None:
            slot = self.ctx.slot
            offender = Exchange(self, self.ctx, slot.current, slot.limits, [], [])
            self.queue.append(offender)
        offender.refusal = (status, reason)
        offender.keep_alive = False
        self.refusing = True
        self.unparsed = b""

    def drain(self) -> None:
        """The node is stopping: close now if idle between requests; otherwise answer the
        requests already received and close after the last (it says `Connection: close` if
        its head is not sent yet)."""
        if self.closed:
            return
        if not self.queue:
            self.close()
            return
        for exchange in self.queue:
            exchange.keep_alive = False

    def exchange_done(self, exchange: Exchange) -> None:
        if self.queue and self.queue[0] is exchange:
            self.queue.popleft()
        if self._pausers:
            self.resume_reading_for(exchange)
        if not exchange.keep_alive:
            if exchange.discard:
                self.linger()
            else:
                self.close()
            return
        if self.closed or self.lingering:
            return
        if self.unparsed and not self.parsing and len(self.queue) <= PIPELINE_DEPTH:
            unparsed, self.unparsed = self.unparsed, b""
            self.resume_reading_for(UNPARSED)
            self._parse(unparsed)
            if self.eof and not self.unparsed and not self._input_ended():
                self.close()
            if self.closed or self.lingering:
                return
        if self.queue:
            nxt = self.queue[0]
            if nxt.refusal is not None:
                nxt.refuse(*nxt.refusal)
            elif nxt.state is _READING and nxt.ready():
                if self.reading is not nxt:
                    self.resume_reading_for(self)
                nxt.evaluate()
            elif nxt is self.reading:  # its turn: the deadline is now for the rest of it
                limits = nxt.limits
                if self.in_head:
                    self.arm(_HEADERS, limits.header_timeout_s)
                else:
                    self.arm(_BODY, limits.body_timeout_s)
            return
        if self._pausers:
            self.resume_reading_for(self)
        self.arm(_IDLE, exchange.limits.idle_timeout_s)

    def expire(self) -> None:
        """The deadline passed: answer or close according to what it guarded."""
        kind = self.deadline_kind
        self.deadline_kind = _NO_DEADLINE
        exchange = self.reading
        if self.body_by and exchange is not None and self.loop.time() >= self.body_by:
            self._stop_body_clock()
            self.ctx.stats.slow_bodies += 1
            self.reject(
                408,
                f"request body arrived slower than {exchange.limits.min_body_rate_bytes_s} bytes/s",
            )
            return
        match kind:
            case Deadline.NONE:
                return
            case Deadline.IDLE:
                self.close()
            case Deadline.HEADERS:
                if self.reading is None:
                    self.close()
                else:
                    self.reject(408, "request headers were not received in time")
            case Deadline.BODY:
                self.reject(408, "request body was not received in time")
            case Deadline.UPSTREAM:
                head = self.queue[0] if self.queue else None
                if head is not None and head.state is ExchangeState.UPSTREAM:
                    head.upstream_timed_out()
            case _:
                assert_never(kind)


_NOTED: Final = wire.HOP_BY_HOP | {
    b"host",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-request-id",
    b"via",
    b"expect",
}
"""Request headers `_read_headers` handles itself instead of forwarding them as they are."""


NotedHeaders = tuple[list[tuple[bytes, bytes]], bytes, int, int, bytes, bytes, bool]
"""What `_read_headers` notes of a plain request's headers, as `whole_request` notes it:
(forward, host, hosts, content_length, x_forwarded_for, request_id, expects_continue)."""


def _take_noted(exchange: Exchange, noted: NotedHeaders) -> None:
    """`_read_headers` for a plain request whose headers `whole_request` has read (the tuple
    unpacked here: a call with `*noted` would go through Python)."""
    forward, host, hosts, content_length, xff, request_id, expects_continue = noted
    if hosts != 1:
        _check_hosts(hosts, exchange.http10)
    exchange.forward = forward
    exchange.host = host
    exchange.content_length = content_length
    exchange.xff = xff
    exchange.request_id = request_id
    exchange.expects_continue = expects_continue


def _check_hosts(hosts: int, http10: bool) -> None:
    if hosts > 1:
        raise RequestRejected(400, "more than one Host header")
    if hosts == 0 and not http10:
        raise RequestRejected(400, "HTTP/1.1 request without a Host header")


def _content_length(value: bytes) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise RequestRejected(400, "Content-Length is not a number") from exc
