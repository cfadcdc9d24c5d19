"""The client side of the reverse proxy: one `ClientConnection` per TCP connection.

Requests are parsed with httptools and handled entirely in protocol callbacks (no task per
request). Each request is an `Exchange` that moves through `ExchangeState`:

    READING --(body ended, or WAF buffer full)--> evaluate --> DELAYED? --> LOCAL | CONNECTING
    CONNECTING --(pooled or new connection)--> UPSTREAM --(origin response ends)--> DONE
    LOCAL (block, challenge, cache hit, error page) --> DONE

Exchanges on one connection are answered in order (pipelined requests wait their turn). One
deadline per connection, checked by the `Sweeper`, covers the idle, header, body and origin
read timeouts.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from enum import Enum, auto
from typing import assert_never, cast

import httptools

from failsmall.engine import Decision, NoRouteError, Request, Verdict
from failsmall.engine.cache import CacheBypass, CacheHit, CacheMiss
from failsmall.model import BodyOverBuffer, Limits
from failsmall.node import wire
from failsmall.node.serving import Serving, ServingSlot
from failsmall.node.stats import TrafficStats
from failsmall.node.upstream import OriginUnreachableError, Pools, UpstreamConnection

NO_CONFIG_BODY = (
    b"503 Service Unavailable: this node has not received a configuration bundle yet.\n"
    b"It serves traffic once a signed bundle is assigned to it (or found as last-known-good).\n"
)
CHALLENGE_BODY = (
    b"<!doctype html><title>Checking your browser</title>"
    b"<h1>One more step</h1><p>Please complete the challenge to continue.</p>\n"
)
CHALLENGE_HEADERS = [(b"X-Failsmall-Challenge", b"1"), (b"Cache-Control", b"no-store")]
HTML = b"text/html; charset=utf-8"
DRAIN_LIMIT = 1024 * 1024
LINGER_S = 2.0
HIGH_WATER = 1024 * 1024
EMPTY_MODULES: tuple[()] = ()


class Deadline(Enum):
    """What the connection's single deadline currently guards."""

    NONE = auto()
    IDLE = auto()
    HEADERS = auto()
    BODY = auto()
    UPSTREAM = auto()


class ExchangeState(Enum):
    """Where one request/response exchange is; see the module docstring for transitions."""

    READING = auto()
    DELAYED = auto()
    CONNECTING = auto()
    UPSTREAM = auto()
    LOCAL = auto()
    DONE = auto()


class RequestRejected(Exception):
    """A request that breaks a limit; answered with `status` and the connection closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(eq=False)
class ProxyContext:
    """What every connection of one node process shares."""

    slot: ServingSlot
    pools: Pools = field(default_factory=Pools)
    stats: TrafficStats = field(default_factory=TrafficStats)
    ids: wire.RequestIds = field(default_factory=wire.RequestIds)
    connections: set[ClientConnection] = field(default_factory=set)


class Exchange:
    """One request and its response."""

    __slots__ = (
        "body",
        "body_bytes",
        "body_done",
        "cache_body",
        "chunked_in",
        "chunked_out",
        "close_delimited",
        "conn",
        "content_length",
        "decision",
        "discard",
        "end_queued",
        "expects_continue",
        "forward",
        "head",
        "host",
        "http10",
        "keep_alive",
        "limits",
        "method",
        "overflow",
        "overflow_bytes",
        "path",
        "query",
        "raw_headers",
        "request",
        "request_id",
        "response_headers",
        "response_started",
        "serving",
        "started",
        "state",
        "status",
        "truncated",
        "until_eof",
        "upstream",
        "upstream_reusable",
        "url",
        "verdict",
        "xff",
    )

    def __init__(self, conn: ClientConnection, serving: Serving | None, limits: Limits) -> None:
        self.conn = conn
        self.serving = serving
        self.limits = limits
        self.state = ExchangeState.READING
        self.started = time.perf_counter()
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.forward: list[tuple[bytes, bytes]] = []
        self.url = b""
        self.method = b"GET"
        self.path = "/"
        self.query = ""
        self.host = b""
        self.xff = b""
        self.request_id = b""
        self.head = False
        self.http10 = False
        self.keep_alive = True
        self.content_length = -1
        self.chunked_in = False
        self.body = bytearray()
        self.body_bytes = 0
        self.body_done = False
        self.truncated = False
        self.overflow: list[bytes] = []
        self.overflow_bytes = 0
        self.discard = False
        self.end_queued = False
        self.expects_continue = False
        self.request: Request | None = None
        self.verdict: Verdict | None = None
        self.decision = "none"
        self.upstream: UpstreamConnection | None = None
        self.upstream_reusable = True
        self.response_started = False
        self.response_headers: tuple[tuple[str, str], ...] = ()
        self.chunked_out = False
        self.close_delimited = False
        self.until_eof = False
        self.cache_body: bytearray | None = None
        self.status = 0

    # -- request side ----------------------------------------------------------------------

    @property
    def evaluated(self) -> bool:
        return self.state is not ExchangeState.READING

    def ready(self) -> bool:
        """Whether the engine can see the request: body ended or inspection buffer full."""
        return self.body_done or len(self.body) >= self.limits.waf_body_buffer

    def add_body(self, data: bytes) -> None:
        self.body_bytes += len(data)
        if self.discard:
            return
        if self.body_bytes > self.limits.max_body_bytes:
            raise RequestRejected(413, "request body exceeds max_body_bytes")
        if not self.evaluated:
            room = self.limits.waf_body_buffer - len(self.body)
            if len(data) <= room:
                self.body += data
                return
            if self.limits.body_over_buffer is BodyOverBuffer.REJECT:
                raise RequestRejected(413, "request body exceeds the WAF inspection buffer")
            self.truncated = True
            self.body += data[:room]
            data = data[room:]
        self.send_body(data)

    def send_body(self, data: bytes) -> None:
        if self.chunked_in:
            data = wire.chunk(data)
        upstream = self.upstream
        if upstream is not None and self.state is ExchangeState.UPSTREAM:
            upstream.write(data)
        elif self.state in (ExchangeState.READING, ExchangeState.DELAYED, ExchangeState.CONNECTING):
            self.overflow.append(data)
            self.overflow_bytes += len(data)
            if self.overflow_bytes > HIGH_WATER:
                self.conn.pause_reading_for(self)
        # LOCAL or DONE: the body is not wanted any more.

    def end_body(self) -> None:
        self.body_done = True
        if self.chunked_in and self.evaluated and not self.discard:
            self.send_body_end()

    def send_body_end(self) -> None:
        self.end_queued = True
        upstream = self.upstream
        if upstream is not None and self.state is ExchangeState.UPSTREAM:
            upstream.write(wire.LAST_CHUNK)
        elif self.state in (ExchangeState.DELAYED, ExchangeState.CONNECTING):
            self.overflow.append(wire.LAST_CHUNK)

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self) -> None:
        serving = self.serving
        if serving is None:
            self.decision = "no_config"
            self.respond_local(503, NO_CONFIG_BODY)
            return
        request = Request(
            method=self.method.decode("ascii", "replace"),
            path=self.path,
            query=self.query,
            headers=tuple(
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in self.raw_headers
            ),
            body=bytes(self.body),
            body_truncated=self.truncated or not self.body_done,
            client_ip=self.conn.client_ip,
            host=self.host.decode("latin-1"),
            now=time.time(),
        )
        self.request = request
        verdict = serving.engine.evaluate(request, serving.state)
        self.verdict = verdict
        self.decision = verdict.decision.value
        if verdict.delay_ms > 0:
            self.state = ExchangeState.DELAYED
            asyncio.get_running_loop().call_later(verdict.delay_ms / 1000, self.act, verdict)
        else:
            self.act(verdict)

    def act(self, verdict: Verdict) -> None:
        if self.state is ExchangeState.DONE:
            return
        decision = verdict.decision
        match decision:
            case Decision.BLOCK:
                self.respond_local(verdict.status, b"%d: request blocked\n" % verdict.status)
            case Decision.CHALLENGE:
                self.respond_local(403, CHALLENGE_BODY, content_type=HTML, extra=CHALLENGE_HEADERS)
            case Decision.ERROR:
                self.respond_local(
                    verdict.status, b"%d: the edge could not serve this request\n" % verdict.status
                )
            case Decision.ALLOW:
                self.allow(verdict)
            case _:
                assert_never(decision)

    def allow(self, verdict: Verdict) -> None:
        cache = verdict.cache
        match cache:
            case CacheHit(response=cached):
                headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in cached.headers]
                headers.append((b"X-Cache", b"HIT"))
                self.respond_local(
                    cached.status, cached.body, content_type=b"", extra=headers, from_cache=True
                )
                return
            case CacheMiss():
                if not self.head:
                    self.cache_body = bytearray()
            case CacheBypass():
                pass
            case _:
                assert_never(cache)
        self.proxy()

    # -- proxying --------------------------------------------------------------------------

    def proxy(self) -> None:
        assert self.serving is not None
        try:
            origin = self.serving.engine.route(self.host.decode("latin-1"), self.path)
        except NoRouteError:
            self.respond_local(
                404,
                b"404: no route for host %s path %s on this edge\n"
                % (self.host or b"(none)", self.path.encode()),
            )
            return
        pool = self.conn.ctx.pools.for_url(origin.url)
        upstream = pool.take()
        if upstream is not None:
            self.attach(upstream)
            return
        self.state = ExchangeState.CONNECTING
        task = asyncio.ensure_future(pool.connect(self.limits.upstream_connect_timeout_s))
        task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Future[UpstreamConnection]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if self.state is not ExchangeState.CONNECTING:
            if exc is None:
                task.result().close()
            return
        if exc is not None:
            reason = str(exc) if isinstance(exc, OriginUnreachableError) else repr(exc)
            self.conn.ctx.stats.upstream_errors["connect"] += 1
            self.respond_local(502, b"502: origin unreachable: %s\n" % reason.encode())
            return
        self.attach(task.result())

    def upstream_head_bytes(self, authority: bytes) -> bytes:
        parts = [self.method, b" ", self.url, b" HTTP/1.1\r\n"]
        if not self.host:
            # An HTTP/1.0 request may come without Host; HTTP/1.1 upstream needs one.
            parts += [b"Host: ", authority, b"\r\n"]
        for name, value in self.forward:
            parts += [name, b": ", value, b"\r\n"]
        client_ip = self.conn.client_ip.encode()
        parts += [
            b"X-Forwarded-For: ",
            self.xff + b", " + client_ip if self.xff else client_ip,
            b"\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: ",
            self.host,
            b"\r\nX-Request-Id: ",
            self.request_id,
            b"\r\nVia: ",
            wire.VIA,
            b"\r\n",
        ]
        if self.chunked_in:
            parts.append(b"Transfer-Encoding: chunked\r\n")
        elif self.content_length >= 0:
            parts.append(b"Content-Length: %d\r\n" % self.content_length)
        parts.append(b"\r\n")
        return b"".join(parts)

    def attach(self, upstream: UpstreamConnection) -> None:
        self.upstream = upstream
        self.state = ExchangeState.UPSTREAM
        body = bytes(self.body)
        if self.chunked_in and body:
            body = wire.chunk(body)
        pending = b"".join(self.overflow)
        self.overflow.clear()
        self.overflow_bytes = 0
        end = b""
        if self.chunked_in and self.body_done and not self.end_queued:
            self.end_queued = True
            end = wire.LAST_CHUNK
        upstream.start(
            self,
            self.upstream_head_bytes(upstream.pool.authority) + body + pending + end,
            head_request=self.head,
        )
        self.conn.resume_reading_for(self)
        self.conn.arm(Deadline.UPSTREAM, self.limits.upstream_read_timeout_s)

    # UpstreamListener ----------------------------------------------------------------------

    def upstream_head(
        self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> None:
        self.upstream_reusable = keep_alive
        self.status = status
        listed: frozenset[bytes] = frozenset()
        length = b""
        chunked = False
        out = [wire.status_line(status)]
        for name, value in headers:
            lower = name.lower()
            if lower == b"connection":
                listed = wire.connection_tokens([value])
        for name, value in headers:
            lower = name.lower()
            if lower == b"content-length":
                length = value
            elif lower == b"transfer-encoding":
                chunked = True
            elif not wire.is_hop_by_hop(lower, listed):
                out += [name, b": ", value, b"\r\n"]
        if self.cache_body is not None:
            self.response_headers = tuple(
                (n.decode("latin-1"), v.decode("latin-1")) for n, v in headers
            )
        bodiless = self.head or status in (204, 304)
        if chunked and not bodiless:
            self.start_chunked_or_close(out)
        elif length:
            out += [b"Content-Length: ", length, b"\r\n"]
        elif not bodiless:
            # No length and not chunked: the origin ends the body by closing.
            self.until_eof = True
            self.upstream_reusable = False
            self.start_chunked_or_close(out)
        self.finish_head(out)

    def start_chunked_or_close(self, out: list[bytes]) -> None:
        if self.http10:
            self.close_delimited = True
            self.keep_alive = False
        else:
            self.chunked_out = True
            out.append(b"Transfer-Encoding: chunked\r\n")

    def finish_head(self, out: list[bytes]) -> None:
        out += [b"Via: ", wire.VIA, b"\r\nX-Request-Id: ", self.request_id, b"\r\n"]
        if self.serving is not None:
            out += [b"X-Failsmall-Bundle: ", self.serving.tag, b"\r\n"]
        if not self.keep_alive:
            out.append(b"Connection: close\r\n")
        elif self.http10:
            out.append(b"Connection: keep-alive\r\n")
        out.append(b"\r\n")
        self.response_started = True
        self.conn.write(b"".join(out))
        self.conn.arm(Deadline.UPSTREAM, self.limits.upstream_read_timeout_s)

    def upstream_body(self, data: bytes) -> None:
        cache_body = self.cache_body
        if cache_body is not None:
            cache_body += data
        self.conn.write(wire.chunk(data) if self.chunked_out else data)
        self.conn.deadline = self.conn.loop.time() + self.limits.upstream_read_timeout_s

    def upstream_done(self) -> None:
        upstream, self.upstream = self.upstream, None
        if self.chunked_out:
            self.conn.write(wire.LAST_CHUNK)
        if upstream is not None:
            if self.upstream_reusable and self.body_done and not self.overflow:
                upstream.pool.give_back(upstream)
            else:
                upstream.close()
        if self.close_delimited or not self.body_done:
            self.keep_alive = False
        self.store_in_cache()
        self.finish()

    def upstream_lost(self, reason: str, got_response: bool) -> None:
        upstream, self.upstream = self.upstream, None
        if self.state is not ExchangeState.UPSTREAM:
            return
        if self.response_started:
            if self.until_eof:
                if self.chunked_out:
                    self.conn.write(wire.LAST_CHUNK)
                self.store_in_cache()
                self.finish()
                return
            self.conn.ctx.stats.upstream_errors["reset_mid_response"] += 1
            self.status = self.status or 502
            self.keep_alive = False
            self.finish()
            return
        if upstream is not None and upstream.reused and not got_response and self.replayable():
            self.state = ExchangeState.CONNECTING
            self.proxy_again()
            return
        self.conn.ctx.stats.upstream_errors["reset"] += 1
        self.respond_local(502, b"502: %s\n" % reason.encode())

    def replayable(self) -> bool:
        return self.body_done and not self.truncated and self.body_bytes == len(self.body)

    def proxy_again(self) -> None:
        self.overflow.clear()
        self.overflow_bytes = 0
        self.end_queued = False
        self.proxy()

    def cork(self) -> None:
        self.conn.cork()

    def uncork(self) -> None:
        self.conn.uncork()

    def upstream_pause(self) -> None:
        self.conn.pause_reading_for(self)

    def upstream_resume(self) -> None:
        self.conn.resume_reading_for(self)

    def upstream_timed_out(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.close()
        self.conn.ctx.stats.upstream_errors["timeout"] += 1
        if self.response_started:
            self.keep_alive = False
            self.finish()
            return
        self.respond_local(
            504,
            b"504: the origin did not answer within %gs\n" % self.limits.upstream_read_timeout_s,
        )

    def store_in_cache(self) -> None:
        body, self.cache_body = self.cache_body, None
        serving, verdict, request = self.serving, self.verdict, self.request
        if body is None or serving is None or verdict is None or request is None:
            return
        if len(body) > serving.signed.bundle.cache.max_object_bytes:
            return
        serving.engine.cache_store(
            serving.state, verdict, self.status, self.response_headers, bytes(body), request
        )

    # -- local responses and completion ----------------------------------------------------

    def respond_local(
        self,
        status: int,
        body: bytes,
        *,
        content_type: bytes = b"text/plain; charset=utf-8",
        extra: list[tuple[bytes, bytes]] | None = None,
        from_cache: bool = False,
    ) -> None:
        if self.state is ExchangeState.DONE:
            return
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.close()
        self.state = ExchangeState.LOCAL
        self.status = status
        if not self.body_done:
            self.keep_alive = False
            self.discard = True
        headers = [(b"X-Request-Id", self.request_id)] if self.request_id else []
        if self.serving is not None:
            headers.append((b"X-Failsmall-Bundle", self.serving.tag))
        if from_cache:
            kept = [
                (n, v) for n, v in extra or () if not wire.is_hop_by_hop(n.lower(), frozenset())
            ]
            headers += kept
            response = wire.local_response(
                status,
                body,
                keep_alive=self.keep_alive,
                content_type=_content_type(kept),
                extra=[h for h in headers if h[0].lower() != b"content-type"],
                head_only=self.head,
            )
        else:
            headers += extra or []
            response = wire.local_response(
                status,
                body,
                keep_alive=self.keep_alive,
                content_type=content_type,
                extra=headers,
                head_only=self.head,
            )
        self.response_started = True
        self.conn.write(response)
        self.finish()

    def finish(self) -> None:
        if self.state is ExchangeState.DONE:
            return
        self.state = ExchangeState.DONE
        verdict = self.verdict
        self.conn.ctx.stats.record(
            self.status,
            self.decision,
            time.perf_counter() - self.started,
            verdict.modules if verdict is not None else EMPTY_MODULES,
        )
        self.conn.exchange_done(self)


def _content_type(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name.lower() == b"content-type":
            return value
    return b"application/octet-stream"


class ClientConnection(asyncio.Protocol):
    """One client TCP connection: parses requests, answers them in order, enforces limits."""

    def __init__(self, ctx: ProxyContext) -> None:
        self.ctx = ctx
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = "127.0.0.1"
        self.queue: deque[Exchange] = deque()
        self.reading: Exchange | None = None
        self.deadline = 0.0
        self.deadline_kind = Deadline.NONE
        self.head_bytes = 0
        self.header_count = 0
        self.in_head = True
        self.head_raw = 0
        self.lingering = False
        self.drained = 0
        self.closed = False
        self._pausers: set[int] = set()
        self._corked: list[bytes] | None = None
        self._writing_paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and peer:
            self.client_ip = str(peer[0])
        self.ctx.connections.add(self)
        self.arm(Deadline.HEADERS, self.ctx.slot.limits.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.ctx.connections.discard(self)
        for exchange in self.queue:
            upstream, exchange.upstream = exchange.upstream, None
            if upstream is not None:
                upstream.close()
            if exchange.state is not ExchangeState.DONE:
                exchange.state = ExchangeState.DONE
        self.queue.clear()

    def data_received(self, data: bytes) -> None:
        if self.reading is None and self.deadline_kind is Deadline.IDLE:
            self.arm(Deadline.HEADERS, self.ctx.slot.limits.header_timeout_s)
        if self.lingering:
            self.drained += len(data)
            if self.drained > DRAIN_LIMIT:
                self.close()
            return
        started_in_head = self.in_head
        try:
            self.parser.feed_data(data)
            if started_in_head and self.in_head:
                # A head still incomplete after this much input is oversized even if no
                # single header has ended yet (the parser would keep accumulating it).
                self.head_raw += len(data)
                limits = self.ctx.slot.limits
                if self.head_raw > limits.max_header_bytes + limits.max_uri_bytes:
                    raise RequestRejected(431, "request head is larger than max_header_bytes")
        except RequestRejected as exc:
            self.reject(exc.status, exc.reason)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, RequestRejected):
                self.reject(cause.status, cause.reason)
            else:
                self.reject(400, f"malformed request: {exc}")
        except httptools.HttpParserUpgrade:
            self.reject(400, "protocol upgrades are not supported by this edge")
        except httptools.HttpParserError as exc:
            self.reject(400, f"malformed request: {exc}")

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
        slot = self.ctx.slot
        exchange = Exchange(self, slot.current, slot.limits)
        self.reading = exchange
        self.queue.append(exchange)
        self.header_count = 0
        self.head_bytes = 0
        self.in_head = True
        if self.deadline_kind is not Deadline.HEADERS and len(self.queue) == 1:
            self.arm(Deadline.HEADERS, exchange.limits.header_timeout_s)

    def on_url(self, url: bytes) -> None:
        exchange = self.reading
        assert exchange is not None
        exchange.url += url
        self.head_bytes += len(url)
        if len(exchange.url) > exchange.limits.max_uri_bytes:
            raise RequestRejected(414, "request URI is longer than max_uri_bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        exchange = self.reading
        assert exchange is not None
        self.header_count += 1
        self.head_bytes += len(name) + len(value) + 4
        if self.header_count > exchange.limits.max_headers:
            raise RequestRejected(431, "too many request headers")
        if self.head_bytes > exchange.limits.max_header_bytes:
            raise RequestRejected(431, "request headers are larger than max_header_bytes")
        exchange.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        exchange = self.reading
        assert exchange is not None
        limits = exchange.limits
        self.in_head = False
        self.head_bytes = 0
        self.head_raw = 0
        parser = self.parser
        exchange.method = parser.get_method()
        exchange.head = exchange.method == b"HEAD"
        exchange.http10 = parser.get_http_version() == "1.0"
        exchange.keep_alive = parser.should_keep_alive()
        self._read_headers(exchange)
        self._read_target(exchange)
        if exchange.content_length > limits.max_body_bytes:
            raise RequestRejected(413, "declared request body exceeds max_body_bytes")
        if (
            limits.body_over_buffer is BodyOverBuffer.REJECT
            and exchange.content_length > limits.waf_body_buffer
        ):
            raise RequestRejected(413, "declared request body exceeds the WAF inspection buffer")
        exchange.request_id = self.ctx.ids.choose(exchange.request_id or None)
        if exchange.content_length > 0 or exchange.chunked_in:
            if exchange.expects_continue and not exchange.http10:
                self.write(wire.CONTINUE)
            self.arm(Deadline.BODY, limits.body_timeout_s)
        else:
            self.deadline_kind = Deadline.NONE

    def on_body(self, body: bytes) -> None:
        exchange = self.reading
        assert exchange is not None
        self.deadline = self.loop.time() + exchange.limits.body_timeout_s
        exchange.add_body(body)
        if not exchange.evaluated and exchange is self.queue[0] and exchange.ready():
            exchange.evaluate()

    def on_message_complete(self) -> None:
        exchange = self.reading
        assert exchange is not None
        self.reading = None
        self.in_head = True
        exchange.end_body()
        if exchange.state is ExchangeState.READING:
            self.deadline_kind = Deadline.NONE
            if exchange is self.queue[0]:
                exchange.evaluate()
            else:
                self.pause_reading_for(self)

    def _read_headers(self, exchange: Exchange) -> None:
        listed: frozenset[bytes] = frozenset()
        hosts = 0
        for name, value in exchange.raw_headers:
            lower = name.lower()
            if lower == b"host":
                hosts += 1
                exchange.host = value
            elif lower == b"content-length":
                exchange.content_length = _content_length(value)
            elif lower == b"transfer-encoding":
                exchange.chunked_in = True
            elif lower == b"connection":
                listed = wire.connection_tokens([value])
        if hosts > 1:
            raise RequestRejected(400, "more than one Host header")
        if hosts == 0 and not exchange.http10:
            raise RequestRejected(400, "HTTP/1.1 request without a Host header")
        forward = exchange.forward
        for name, value in exchange.raw_headers:
            lower = name.lower()
            if lower == b"x-forwarded-for":
                exchange.xff = exchange.xff + b", " + value if exchange.xff else value
            elif lower == b"x-request-id":
                exchange.request_id = value
            elif lower == b"expect":
                exchange.expects_continue = value.lower() == b"100-continue"
            elif lower in _REPLACED or wire.is_hop_by_hop(lower, listed):
                continue
            else:
                forward.append((name, value))

    def _read_target(self, exchange: Exchange) -> None:
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
        self._pausers.add(id(owner))

    def resume_reading_for(self, owner: object) -> None:
        if id(owner) in self._pausers:
            self._pausers.discard(id(owner))
            if not self._pausers and self.transport is not None and not self.closed:
                self.transport.resume_reading()

    # -- output and lifecycle --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        corked = self._corked
        if corked is not None:
            corked.append(data)
        elif self.transport is not None and not self.closed:
            self.transport.write(data)

    def cork(self) -> None:
        """Collect writes until `uncork`, so one origin read becomes one client write."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        corked, self._corked = self._corked, None
        if corked and self.transport is not None and not self.closed:
            self.transport.write(corked[0] if len(corked) == 1 else b"".join(corked))

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.uncork()
            self.closed = True
            self.transport.close()

    def linger(self) -> None:
        """Half-close after the response and discard what the client still sends, so it can
        read the response before the connection goes (closing with unread input resets it)."""
        if self.closed or self.transport is None:
            return
        if self.lingering:
            return
        self.uncork()
        self.lingering = True
        self._pausers.clear()
        self.transport.resume_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.arm(Deadline.IDLE, LINGER_S)

    def arm(self, kind: Deadline, seconds: float) -> None:
        self.deadline_kind = kind
        self.deadline = self.loop.time() + seconds

    def reject(self, status: int, reason: str) -> None:
        """Answer a request that broke a limit or could not be parsed, then close."""
        self.ctx.stats.reject(str(status))
        head = self.queue[0] if self.queue else None
        if head is not None and head.response_started:
            self.close()
            return
        body = b"%d: %s\n" % (status, reason.encode())
        if head is not None and head.state is not ExchangeState.DONE:
            head.keep_alive = False
            head.decision = "rejected"
            self.reading = None
            head.respond_local(status, body)
        else:
            self.write(wire.local_response(status, body, keep_alive=False))
        self.linger()

    def exchange_done(self, exchange: Exchange) -> None:
        if self.queue and self.queue[0] is exchange:
            self.queue.popleft()
        self.resume_reading_for(exchange)
        if not exchange.keep_alive:
            if exchange.discard:
                self.linger()
            else:
                self.close()
            return
        if self.closed or self.lingering:
            return
        if self.queue:
            nxt = self.queue[0]
            if nxt.state is ExchangeState.READING and nxt.ready():
                if self.reading is not nxt:
                    self.resume_reading_for(self)
                nxt.evaluate()
            return
        self.resume_reading_for(self)
        self.arm(Deadline.IDLE, exchange.limits.idle_timeout_s)

    def expire(self) -> None:
        """The deadline passed: answer or close according to what it guarded."""
        kind = self.deadline_kind
        self.deadline_kind = Deadline.NONE
        match kind:
            case Deadline.NONE:
                return
            case Deadline.IDLE:
                self.close()
            case Deadline.HEADERS:
                if self.head_bytes == 0 and self.reading is None:
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


_REPLACED = frozenset({b"via", b"x-forwarded-proto", b"x-forwarded-host"})


def _content_length(value: bytes) -> int:
    try:
        return int(value)
    except ValueError as exc:
        raise RequestRejected(400, "Content-Length is not a number") from exc


class Sweeper:
    """Checks every connection's deadline a few times a second (one timer for all)."""

    def __init__(self, ctx: ProxyContext, interval_s: float = 0.1) -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_s)
            now = loop.time()
            expired = [
                c
                for c in self.ctx.connections
                if c.deadline_kind is not Deadline.NONE and c.deadline <= now
            ]
            for conn in expired:
                conn.expire()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
