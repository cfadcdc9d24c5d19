"""One request and its response on a client connection.

Each request is an `Exchange` that moves through `ExchangeState`:

    READING --(body ended, or WAF buffer full)--> evaluate --> DELAYED? --> LOCAL | CONNECTING
    CONNECTING --(pooled or new connection)--> UPSTREAM --(origin response ends)--> DONE
    LOCAL (block, challenge, cache hit, error page) --> DONE
    UPSTREAM --(a WebSocket handshake the origin answered 101)--> TUNNEL --(either side
        closes, or idle for idle_timeout_s)--> DONE

A WebSocket handshake is a request like any other (the engine sees it and may block it); once
the origin switches protocols, the exchange relays bytes both ways until one side closes.

Everything runs in protocol callbacks; the exchange also receives the origin's response as the
`UpstreamListener` of the connection it borrowed from the pool. It reaches its client
connection only through `ClientSide` and the node's shared parts through `ExchangeContext`;
what it writes is framed by the pure functions of `failsmall.node.framing` (its request and
response heads by their compiled twins, `failsmall.node.compiled_framing`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from enum import Enum, auto
from time import perf_counter, time
from typing import Final, Protocol, assert_never

from mypy_extensions import trait

from failsmall.engine import CacheFill, Decision, NotStored, Request, Routed, Unrouted, Verdict
from failsmall.engine.cache import CacheBypass, CachedResponse, CacheHit, CacheMiss
from failsmall.engine.outcomes import ModuleErrored, Scored
from failsmall.engine.request import request_of
from failsmall.engine.signatures.fields import signature_fields
from failsmall.model import BodyOverBuffer, Origin
from failsmall.node import framing, wire
from failsmall.node.access_log import AccessEntry, AccessLog, cache_field
from failsmall.node.compiled_framing import request_head, response_head
from failsmall.node.deadline import Deadline
from failsmall.node.framing import BodyFraming
from failsmall.node.serving import RequestLimits, Serving
from failsmall.node.stats import TrafficStats
from failsmall.node.upstream import (
    OriginPool,
    OriginServers,
    OriginUnreachableError,
    Pools,
    UpstreamConnection,
    UpstreamListener,
)

NO_CONFIG_BODY: Final = (
    b"503 Service Unavailable: this node has not received a configuration bundle yet.\n"
    b"It serves traffic once a signed bundle is assigned to it (or found as last-known-good).\n"
)
CHALLENGE_BODY: Final = (
    b"<!doctype html><title>Checking your browser</title>"
    b"<h1>One more step</h1><p>Please complete the challenge to continue.</p>\n"
)
CHALLENGE_HEADERS: Final = [(b"X-Failsmall-Challenge", b"1"), (b"Cache-Control", b"no-store")]
HTML: Final = b"text/html; charset=utf-8"
HIGH_WATER: Final = 1024 * 1024
EARLY_TUNNEL_BYTES: Final = 64 * 1024
"""What a client may send after its WebSocket handshake before the origin has accepted it."""


@trait
class ClientSide:
    """What an exchange needs from the client connection it answers on.

    A trait rather than a `Protocol`: the connection implements it by inheritance, so that,
    compiled, each call from the exchange goes through the trait's table of methods instead of
    a lookup by name."""

    client_ip: str
    client_ip_bytes: bytes

    def write(self, data: bytes) -> None:
        """Send bytes to the client (in order, batched per event-loop iteration)."""

    def close(self) -> None: ...

    def pause_reading_for(self, owner: object) -> None:
        """Stop reading the client until every owner that paused has resumed."""

    def resume_reading_for(self, owner: object) -> None: ...

    def arm(self, kind: Deadline, seconds: float) -> None:
        """Wait at most `seconds` for what `kind` names (the connection's single deadline)."""

    def extend(self, seconds: float) -> None:
        """Move the deadline of what is awaited to `seconds` from now (progress was made)."""

    def exchange_done(self, exchange: Exchange) -> None:
        """The exchange has ended; the connection moves to the next request or closes."""


class ExchangeContext(Protocol):
    """What the exchanges of one node process share."""

    @property
    def pools(self) -> Pools: ...

    @property
    def stats(self) -> TrafficStats: ...

    @property
    def access_log(self) -> AccessLog | None: ...


class ExchangeState(Enum):
    """Where one request/response exchange is; see the module docstring."""

    READING = auto()
    DELAYED = auto()
    CONNECTING = auto()
    UPSTREAM = auto()
    TUNNEL = auto()
    LOCAL = auto()
    DONE = auto()


# Enum members read on every request, bound to Final module names once: compiled code reads
# them from C statics, where reading a member from its class takes about 0.1 µs (Python 3.11).
_READING: Final = ExchangeState.READING
_DELAYED: Final = ExchangeState.DELAYED
_CONNECTING: Final = ExchangeState.CONNECTING
_UPSTREAM: Final = ExchangeState.UPSTREAM
_TUNNEL: Final = ExchangeState.TUNNEL
_LOCAL: Final = ExchangeState.LOCAL
_DONE: Final = ExchangeState.DONE
_AS_SENT: Final = BodyFraming.AS_SENT
_CHUNKED: Final = BodyFraming.CHUNKED
_CLOSE: Final = BodyFraming.CLOSE
_DEADLINE_UPSTREAM: Final = Deadline.UPSTREAM
_DEADLINE_IDLE: Final = Deadline.IDLE
_BODY_REJECT: Final = BodyOverBuffer.REJECT


#: Read from a C static where called for each request, not looked up in the module's globals
#: (what mypyc does for a name that is not `Final`).
_PERF_COUNTER: Final = perf_counter
_TIME: Final = time
_REQUEST_HEAD: Final = request_head
_RESPONSE_HEAD: Final = response_head


class RequestRejected(Exception):
    """A request that breaks a limit; answered with `status` and the connection closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class Exchange(UpstreamListener):
    """One request and its response.

    Attributes that most requests never change keep their class-level defaults, so creating
    an exchange sets only what is per request.
    """

    url = b""
    method = b""  # until the head is parsed
    text_headers: tuple[tuple[str, str], ...] = ()  # as the engine reads them (latin-1)
    path = "/"
    query = ""
    host = b""
    xff = b""
    request_id = b""
    head = False
    http10 = False
    keep_alive = True
    content_length = -1
    chunked_in = False
    body_bytes = 0
    body_done = False
    truncated = False
    overflow_bytes = 0
    discard = False
    end_queued = False
    expects_continue = False
    request: Request | None = None
    verdict: Verdict | None = None
    decision = "none"
    upstream: UpstreamConnection | None = None
    upstream_reusable = True
    response_started = False
    framing_out = _AS_SENT  # how the response body is framed to the client
    until_eof = False
    fill: CacheFill | None = None  # the response being kept for the cache, if it is
    status = 0
    note = ""
    origin: Origin  # where an allowed request goes (set by `allow`)
    origin_id = ""
    client = ""  # the client address the engine saw (see Engine.client_address)
    websocket = False
    connect_failures = 0
    early: list[bytes] | None = None  # client bytes sent before the tunnel opened
    refusal: tuple[int, str] | None = None  # (status, reason) once the request broke a limit
    pausing = False  # this exchange has paused reading the client and not resumed it

    def __init__(
        self,
        conn: ClientSide,
        ctx: ExchangeContext,
        serving: Serving | None,
        limits: RequestLimits,
        raw_headers: list[tuple[bytes, bytes]],
        forward: list[tuple[bytes, bytes]],
    ) -> None:
        """`raw_headers`: the request's headers as received; `forward`: those sent on to
        the origin (both read in by the connection, or given whole)."""
        self.conn = conn
        self.ctx = ctx
        self.serving = serving
        self.limits = limits
        self.state = _READING
        self.started = _PERF_COUNTER()
        self.raw_headers = raw_headers
        self.forward = forward
        self.body = bytearray()
        self.overflow: list[bytes] = []

    # -- request side ----------------------------------------------------------------------

    @property
    def evaluated(self) -> bool:
        return self.state is not _READING

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
            if self.limits.body_over_buffer is _BODY_REJECT:
                raise RequestRejected(413, "request body exceeds the WAF inspection buffer")
            self.truncated = True
            self.body += data[:room]
            data = data[room:]
        self.send_body(data)

    def send_body(self, data: bytes) -> None:
        data = framing.request_body(data, chunked=self.chunked_in)
        upstream = self.upstream
        if upstream is not None and self.state is _UPSTREAM:
            upstream.write(data)
        elif self.state in (_READING, _DELAYED, _CONNECTING):
            self.overflow.append(data)
            self.overflow_bytes += len(data)
            if self.overflow_bytes > HIGH_WATER:
                self.pause_client()
        # LOCAL or DONE: the body is not wanted any more.

    def end_body(self) -> None:
        self.body_done = True
        if self.chunked_in and self.evaluated and not self.discard:
            self.send_body_end()

    def send_body_end(self) -> None:
        self.end_queued = True
        upstream = self.upstream
        if upstream is not None and self.state is _UPSTREAM:
            upstream.write(wire.LAST_CHUNK)
        elif self.state in (_DELAYED, _CONNECTING):
            self.overflow.append(wire.LAST_CHUNK)

    # -- evaluation ------------------------------------------------------------------------

    def evaluate(self) -> None:
        serving = self.serving
        if serving is None:
            self.decision = "no_config"
            self.respond_local(503, NO_CONFIG_BODY)
            return
        client = self.conn.client_ip
        if self.xff:
            client = serving.engine.client_address(client, self.xff.decode("latin-1"))
        self.client = client
        request = request_of(
            self.method.decode("ascii", "replace"),
            self.path,
            self.query,
            self.text_headers,
            bytes(self.body) if self.body else b"",
            self.truncated or not self.body_done,
            client,
            self.host.decode("latin-1"),
            _TIME(),
        )
        self.request = request
        verdict = serving.engine.evaluate(request, serving.state)
        self.verdict = verdict
        self.decision = verdict.decision  # a StrEnum: its own name, without `.value`'s lookup
        if verdict.delay_ms > 0:
            self.state = _DELAYED
            asyncio.get_running_loop().call_later(verdict.delay_ms / 1000, self.act, verdict)
        else:
            self.act(verdict)

    def act(self, verdict: Verdict) -> None:
        if self.state is _DONE:
            return
        decision = verdict.decision
        match decision:  # the common case first: each case reads its member from the enum
            case Decision.ALLOW:
                self.allow(verdict)
            case Decision.BLOCK:
                self.respond_local(verdict.status, b"%d: request blocked\n" % verdict.status)
            case Decision.CHALLENGE:
                self.respond_local(403, CHALLENGE_BODY, content_type=HTML, extra=CHALLENGE_HEADERS)
            case Decision.ERROR:
                self.respond_local(
                    verdict.status, b"%d: the edge could not serve this request\n" % verdict.status
                )
            case Decision.UNROUTED:
                self.respond_local(
                    404,
                    b"404: no route for host %s path %s on this edge\n"
                    % (self.host or b"(none)", self.path.encode()),
                )
            case _:
                assert_never(decision)

    def allow(self, verdict: Verdict) -> None:
        cache = verdict.cache
        match cache:
            case CacheHit(response=cached):
                self.respond_local(cached.status, cached.body, cached=cached)
                return
            case CacheMiss() | CacheBypass():
                pass
            case _:
                assert_never(cache)
        route = verdict.route
        match route:
            case Routed(origin=origin):
                self.origin = origin
                self.origin_id = origin.id
                self.proxy()
            case Unrouted():  # never allowed: `act` answers it
                pass
            case _:
                assert_never(route)

    # -- proxying --------------------------------------------------------------------------

    def proxy(self, pool: OriginPool | None = None) -> None:
        """Send the request to `origin` (set by `allow`), on `pool`'s server or else the one
        whose turn it is: over an idle connection to it, or a new one."""
        servers = self.ctx.pools.for_origin(self.origin)
        if pool is None:
            pool = servers.only or servers.pick(asyncio.get_running_loop().time())
        upstream = pool.take()
        if upstream is not None:
            self.attach(upstream)
            return
        self.state = _CONNECTING
        task = asyncio.ensure_future(pool.connect(self.limits.upstream_connect_timeout_s))
        task.add_done_callback(functools.partial(self._connected, servers, pool))

    def _connected(
        self, servers: OriginServers, pool: OriginPool, task: asyncio.Future[UpstreamConnection]
    ) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if self.state is not _CONNECTING:
            if exc is None:
                task.result().close()
            return
        if exc is not None:
            reason = str(exc) if isinstance(exc, OriginUnreachableError) else repr(exc)
            self.ctx.stats.upstream_errors["connect"] += 1
            now = asyncio.get_running_loop().time()
            servers.mark_down(pool, now)
            self.connect_failures += 1
            if self.connect_failures < len(servers.pools):
                # Nothing was sent: another server of the origin may answer.
                self.proxy(servers.pick(now))
                return
            self.respond_local(502, b"502: origin unreachable: %s\n" % reason.encode())
            return
        self.attach(task.result())

    def attach(self, upstream: UpstreamConnection) -> None:
        """Send the request over `upstream`: its head, the body read so far, and what followed
        (one write)."""
        self.upstream = upstream
        self.state = _UPSTREAM
        chunked = self.chunked_in
        request = _REQUEST_HEAD(
            self.method,
            self.url,
            self.host,
            upstream.pool.authority,
            self.forward,
            self.xff,
            self.conn.client_ip_bytes,
            self.request_id,
            self.websocket,
            chunked,
            self.content_length,
        )
        if self.body or self.overflow or (chunked and self.body_done):
            request = self.with_body(request)
        upstream.start(self, request, head_request=self.head, upgrade=self.websocket)
        if self.pausing:
            self.resume_client()
        self.conn.arm(_DEADLINE_UPSTREAM, self.limits.upstream_read_timeout_s)

    def with_body(self, head: bytes) -> bytes:
        """The request `head` followed by the body read so far and what followed it."""
        chunked = self.chunked_in
        parts: list[bytes | bytearray] = [head]
        if self.body:
            parts.append(
                framing.request_body(bytes(self.body), chunked=True) if chunked else self.body
            )
        if self.overflow:
            parts += self.overflow
            self.overflow.clear()
            self.overflow_bytes = 0
        if chunked and self.body_done and not self.end_queued:
            self.end_queued = True
            parts.append(wire.LAST_CHUNK)
        return b"".join(parts)

    # UpstreamListener ----------------------------------------------------------------------

    def upstream_head(
        self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> None:
        if status == 101:
            self.upstream_reusable = keep_alive
            self.status = status
            self.switching_protocols(headers)
            return
        self.conn.write(self.client_head(status, headers, keep_alive))
        self.conn.arm(_DEADLINE_UPSTREAM, self.limits.upstream_read_timeout_s)

    def upstream_whole(
        self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool, body: bytes
    ) -> None:
        """A final response the origin sent whole in one read (never a 101, never to a HEAD
        request): its head and body leave in one write, and the origin's deadline stays as it
        is, since nothing more is awaited from the origin."""
        head = self.client_head(status, headers, keep_alive)
        if body:
            fill = self.fill
            if fill is not None:
                fill.add(body)
            framing_out = self.framing_out
            head += body if framing_out is _AS_SENT else framing.response_body(body, framing_out)
        self.conn.write(head)
        self.upstream_done()

    def client_head(
        self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> bytes:
        """The client's response head for the origin's final response head, noting how its
        body is framed and whether the origin's connection and the client's stay open."""
        self.upstream_reusable = keep_alive
        self.status = status
        verdict, serving = self.verdict, self.serving
        if verdict is not None and serving is not None:
            plan = serving.engine.on_response(verdict, status, headers)
            match plan:
                case CacheFill():
                    self.fill = plan
                case NotStored():
                    pass
                case _:
                    assert_never(plan)
        head = _RESPONSE_HEAD(
            status,
            headers,
            self.head,
            self.http10,
            self.keep_alive,
            self.request_id,
            serving.tag if serving is not None else b"",
        )
        self.framing_out = head.framing
        self.keep_alive = head.keep_alive
        if head.until_eof:
            self.until_eof = True
            self.upstream_reusable = False
        self.response_started = True
        return head.head

    def switching_protocols(self, headers: list[tuple[bytes, bytes]]) -> None:
        """The origin accepted a WebSocket handshake (the upstream connection reports a 101
        only for one): pass its 101 on, with the upgrade headers the proxy speaks."""
        self.response_started = True
        tag = self.serving.tag if self.serving is not None else b""
        self.conn.write(framing.switching_protocols_head(headers, self.request_id, tag))

    def upstream_switched(self, rest: bytes) -> None:
        """The origin's 101 has ended: from now on bytes are relayed both ways."""
        upstream = self.upstream
        if upstream is None or self.state is not _UPSTREAM:
            return
        self.state = _TUNNEL
        if rest:
            self.conn.write(rest)
        for data in self.early or ():
            upstream.write(data)
        self.early = None
        self.conn.arm(_DEADLINE_IDLE, self.limits.idle_timeout_s)

    def tunnel_from_client(self, data: bytes) -> None:
        """Bytes the client sent after its WebSocket handshake."""
        match self.state:
            case ExchangeState.TUNNEL:
                if self.upstream is not None:
                    self.upstream.write(data)
                self.conn.extend(self.limits.idle_timeout_s)
            case (
                ExchangeState.READING
                | ExchangeState.DELAYED
                | ExchangeState.CONNECTING
                | ExchangeState.UPSTREAM
            ):
                early = self.early = self.early or []
                early.append(data)
                if sum(map(len, early)) > EARLY_TUNNEL_BYTES:
                    self.conn.close()
            case ExchangeState.LOCAL | ExchangeState.DONE:
                pass  # refused or over: the connection closes after the answer
            case _:
                assert_never(self.state)

    def tunnel_from_origin(self, data: bytes) -> None:
        self.conn.write(data)
        self.conn.extend(self.limits.idle_timeout_s)

    def tunnel_closed(self) -> None:
        """The client connection of a tunnel is gone: close the origin's side, count it."""
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.close()
        if self.state is _TUNNEL:
            self.state = _DONE
            self.record()

    def upstream_body(self, data: bytes) -> None:
        fill = self.fill
        if fill is not None:
            fill.add(data)
        self.conn.write(framing.response_body(data, self.framing_out))
        self.conn.extend(self.limits.upstream_read_timeout_s)

    def upstream_done(self) -> None:
        upstream, self.upstream = self.upstream, None
        if self.framing_out is _CHUNKED:
            self.conn.write(wire.LAST_CHUNK)
        if upstream is not None:
            if (
                self.upstream_reusable
                and self.body_done
                and not self.overflow
                and not self.websocket
            ):
                upstream.pool.give_back(upstream)
            else:
                upstream.close()
        if self.framing_out is _CLOSE or not self.body_done:
            self.keep_alive = False
        if self.fill is not None:
            self.store_in_cache()
        self.finish()

    def upstream_lost(self, reason: str, got_response: bool) -> None:
        upstream, self.upstream = self.upstream, None
        if self.state is _TUNNEL:
            self.keep_alive = False
            self.finish()
            return
        if self.state is not _UPSTREAM:
            return
        if self.response_started:
            if self.until_eof:
                if self.framing_out is _CHUNKED:
                    self.conn.write(wire.LAST_CHUNK)
                self.store_in_cache()
                self.finish()
                return
            self.ctx.stats.upstream_errors["reset_mid_response"] += 1
            self.status = self.status or 502
            self.keep_alive = False
            self.finish()
            return
        if upstream is not None and upstream.reused and not got_response and self.replayable():
            self.state = _CONNECTING
            self.proxy_again()
            return
        self.ctx.stats.upstream_errors["reset"] += 1
        self.respond_local(502, b"502: %s\n" % reason.encode())

    def replayable(self) -> bool:
        return self.body_done and not self.truncated and self.body_bytes == len(self.body)

    def proxy_again(self) -> None:
        self.overflow.clear()
        self.overflow_bytes = 0
        self.end_queued = False
        self.proxy()

    def upstream_pause(self) -> None:
        self.pause_client()

    def upstream_resume(self) -> None:
        self.resume_client()

    def pause_client(self) -> None:
        """Stop reading the client until `resume_client` (the connection's reading may stay
        paused for others)."""
        self.pausing = True
        self.conn.pause_reading_for(self)

    def resume_client(self) -> None:
        self.pausing = False
        self.conn.resume_reading_for(self)

    def upstream_timed_out(self) -> None:
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.close()
        self.ctx.stats.upstream_errors["timeout"] += 1
        if self.response_started:
            self.keep_alive = False
            self.finish()
            return
        self.respond_local(
            504,
            b"504: the origin did not answer within %gs\n" % self.limits.upstream_read_timeout_s,
        )

    def store_in_cache(self) -> None:
        fill, self.fill = self.fill, None
        if fill is not None:
            fill.commit()

    # -- local responses and completion ----------------------------------------------------

    def respond_local(
        self,
        status: int,
        body: bytes,
        *,
        content_type: bytes = b"text/plain; charset=utf-8",
        extra: Sequence[tuple[bytes, bytes]] = (),
        cached: CachedResponse | None = None,
    ) -> None:
        """Answer from the edge: `body`, or the `cached` response."""
        if self.state is _DONE:
            return
        upstream, self.upstream = self.upstream, None
        if upstream is not None:
            upstream.close()
        self.state = _LOCAL
        self.status = status
        if not self.body_done:
            self.keep_alive = False
            self.discard = True
        tag = self.serving.tag if self.serving is not None else b""
        if cached is not None:
            response = framing.cached_response(
                status,
                cached.headers,
                cached.body,
                keep_alive=self.keep_alive,
                head_request=self.head,
                request_id=self.request_id,
                bundle_tag=tag,
            )
        else:
            response = framing.local_response(
                status,
                body,
                keep_alive=self.keep_alive,
                head_request=self.head,
                request_id=self.request_id,
                bundle_tag=tag,
                content_type=content_type,
                extra=extra,
            )
        self.response_started = True
        self.conn.write(response)
        self.finish()

    def refuse(self, status: int, reason: str) -> None:
        """Answer that the request broke a limit or could not be parsed; the connection
        closes after it (lingering for what the client still sends)."""
        self.keep_alive = False
        self.discard = True
        self.decision = "rejected"
        self.note = reason
        self.respond_local(status, b"%d: %s\n" % (status, reason.encode()))

    def finish(self) -> None:
        if self.state is _DONE:
            return
        self.state = _DONE
        self.record()
        self.conn.exchange_done(self)

    def record(self) -> None:
        """Count the finished exchange and write its access log line."""
        verdict = self.verdict
        seconds = _PERF_COUNTER() - self.started
        ctx = self.ctx
        stats = ctx.stats
        if verdict is not None:
            modules, rules = verdict.modules, verdict.matched_rules
            stats.record(self.status, self.decision, seconds, modules, rules)
        else:
            stats.record(self.status, self.decision, seconds)
        access_log = ctx.access_log
        if access_log is not None:
            access_log.add(self.log_entry(seconds))

    def log_entry(self, seconds: float) -> AccessEntry:
        """This exchange's access log line: what identifies and explains it, no secrets (the
        path but not the query; no header, cookie or body)."""
        entry = AccessEntry(
            self.client or self.conn.client_ip,
            self.status,
            self.decision,
            seconds * 1000,
            note=self.note,
        )
        if self.method:  # the head was parsed
            entry.request_id = self.request_id.decode("latin-1")
            entry.method = self.method.decode("latin-1")
            entry.host = self.host.decode("latin-1")
            entry.path = self.path
            entry.body_bytes = self.body_bytes
            entry.origin = self.origin_id
        if self.serving is not None:
            entry.bundle = self.serving.tag.decode()
        verdict = self.verdict
        if verdict is not None:
            entry.cache = cache_field(verdict.cache)
            entry.rules = verdict.matched_rules
            if self.serving is not None and self.request is not None:
                engine = self.serving.engine
                entry.fields = signature_fields(
                    engine.waf, self.request, verdict.matched_rules, engine.limits
                )
            if type(verdict.bot) is Scored:
                entry.bot = verdict.bot.score
                entry.bot_features = verdict.bot.features
            entry.errored = tuple(
                m.module.value for m in verdict.modules if type(m) is ModuleErrored
            )
        return entry
