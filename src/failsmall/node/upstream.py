"""Connections to origins: an httptools response parser per connection and a keep-alive pool.
A plain response that arrives whole in one read is read by one compiled call instead
(`compiled_framing.whole_response`).

An `UpstreamConnection` serves one exchange at a time and reports the response to it through
the `UpstreamListener` callbacks. Idle connections wait in their origin's `OriginPool`; a
connection the origin closed while idle leaves the pool on its own. An https origin's pool
opens TLS connections that verify the origin's certificate (see `Origin`).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Final, cast
from urllib.parse import urlsplit

import httptools
from mypy_extensions import trait

from failsmall.model import Origin
from failsmall.node.batching import WriteBatch
from failsmall.node.compiled_framing import whole_response

MAX_IDLE_PER_ORIGIN: Final = 256
EJECT_S: Final = 10.0
"""How long a server that refused or timed out a connection is left out of its origin's turn."""
MAX_RESPONSE_HEAD_BYTES: Final = 64 * 1024
"""A response head larger than this is a 502: the node does not buffer without bound for an
origin either."""


class ResponseHeadTooLarge(Exception):
    """An origin's response head grew past MAX_RESPONSE_HEAD_BYTES."""


_HEAD_TOO_LARGE: Final = f"origin sent a response head over {MAX_RESPONSE_HEAD_BYTES} bytes"

#: Read from a C static where called for each request, not looked up in the module's globals
#: (what mypyc does for a name that is not `Final`).
_WHOLE_RESPONSE: Final = whole_response


@trait
class UpstreamListener:
    """What an upstream connection reports to the exchange it serves (a trait, as
    `exchange.ClientSide` is: the exchange implements it by inheritance)."""

    def upstream_head(
        self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> None: ...

    def upstream_body(self, data: bytes) -> None: ...

    def upstream_whole(
        self, status: int, headers: list[tuple[bytes, bytes]], keep_alive: bool, body: bytes
    ) -> None:
        """A final response read whole: `upstream_head`, `upstream_body` and `upstream_done`
        in one call, with this connection already let go of."""

    def upstream_done(self) -> None: ...

    def upstream_switched(self, rest: bytes) -> None: ...

    def tunnel_from_origin(self, data: bytes) -> None: ...

    def upstream_lost(self, reason: str, got_response: bool) -> None: ...

    def upstream_pause(self) -> None: ...

    def upstream_resume(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to an origin."""

    __slots__ = (
        "_awaiting_head",
        "_head_bytes",
        "_head_raw",
        "_headers",
        "_in_message",
        "_parser",
        "_skip_body",
        "_tunnel",
        "_upgrade",
        "got_response",
        "listener",
        "open",
        "pool",
        "reused",
        "transport",
    )

    def __init__(self, pool: OriginPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.listener: UpstreamListener | None = None
        self.open = False
        self.reused = False
        self.got_response = False
        self._parser = httptools.HttpResponseParser(self)
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0  # of the headers parsed so far
        self._head_raw = 0  # of the input while a head was incomplete
        self._awaiting_head = False
        self._in_message = False  # llhttp has begun a response it has not ended
        self._skip_body = False
        self._upgrade = False  # the request asked to switch to WebSocket
        self._tunnel = False  # it did: bytes are relayed as they come

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.open = True

    def data_received(self, data: bytes) -> None:
        if self._tunnel:
            if self.listener is not None:
                self.listener.tunnel_from_origin(data)
            return
        listener = self.listener
        if listener is not None and not self._in_message and not self._skip_body:
            # Most responses arrive whole in one read, and plain: read in one call, they reach
            # the exchange without a callback per header (anything else goes to llhttp).
            whole = _WHOLE_RESPONSE(data)
            if whole is not None:
                self.got_response = True
                self._awaiting_head = False
                self.listener = None
                status, headers, keep_alive, body = whole  # named: a native call, not `*whole`
                listener.upstream_whole(status, headers, keep_alive, body)
                return
        try:
            self._parser.feed_data(data)
            if self._awaiting_head:
                # The parser keeps an unfinished header to itself: bound what it may hold.
                self._head_raw += len(data)
                if self._head_raw > MAX_RESPONSE_HEAD_BYTES:
                    raise ResponseHeadTooLarge(_HEAD_TOO_LARGE)
        except ResponseHeadTooLarge as too_large:
            self._fail(str(too_large))
        except httptools.HttpParserCallbackError as callback_error:
            if isinstance(callback_error.__context__, ResponseHeadTooLarge):
                self._fail(str(callback_error.__context__))
            else:
                self._fail(f"origin sent a malformed response: {callback_error}")
        except httptools.HttpParserUpgrade as upgrade:
            listener = self.listener
            if not self._upgrade or listener is None:
                # Only a WebSocket handshake may be answered with 101.
                self._fail("origin switched protocols (101) unasked; upgrades are not proxied")
                return
            self._tunnel = True
            listener.upstream_switched(data[int(upgrade.args[0]) :])
        except httptools.HttpParserError as exc:
            self._fail(f"origin sent a malformed response: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self.pool.forget(self)
        listener, self.listener = self.listener, None
        if listener is not None:
            reason = (
                f"origin closed the connection: {exc}" if exc else "origin closed the connection"
            )
            listener.upstream_lost(reason, self.got_response)

    def pause_writing(self) -> None:
        if self.listener is not None:
            self.listener.upstream_pause()

    def resume_writing(self) -> None:
        if self.listener is not None:
            self.listener.upstream_resume()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = True
        self._headers = []
        self._awaiting_head = True  # again, after an interim 1xx response
        self.got_response = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        if self._head_bytes > MAX_RESPONSE_HEAD_BYTES:
            raise ResponseHeadTooLarge(_HEAD_TOO_LARGE)
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        listener = self.listener
        if listener is None:
            return
        status = self._parser.get_status_code()
        if status == 101 and self._upgrade:
            listener.upstream_head(status, self._headers, False)
            return
        if 100 <= status < 200:
            return
        listener.upstream_head(status, self._headers, self._parser.should_keep_alive())
        if self._skip_body:
            # A response to HEAD has no body whatever its headers say; httptools cannot be
            # told that, so the response ends here and the next one gets a fresh parser.
            self._parser = httptools.HttpResponseParser(self)
            self._in_message = False
            self.listener = None
            listener.upstream_done()

    def on_body(self, body: bytes) -> None:
        if self.listener is not None:
            self.listener.upstream_body(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._parser.get_status_code() < 200:
            return
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.upstream_done()

    # -- used by the exchange --------------------------------------------------------------

    def start(
        self, listener: UpstreamListener, head: bytes, *, head_request: bool, upgrade: bool = False
    ) -> None:
        """Bind this connection to an exchange and send the request head; `upgrade` when it
        is a WebSocket handshake, which the origin may answer by switching protocols."""
        self.listener = listener
        self.got_response = False
        self._skip_body = head_request
        self._upgrade = upgrade
        self._awaiting_head = True
        self._head_bytes = self._head_raw = 0
        if self.transport is None:
            listener.upstream_lost(
                "the origin connection closed before the request was sent", False
            )
            return
        self.pool.writes.write(self.transport, head)

    def write(self, data: bytes) -> None:
        if self.transport is not None and self.open:
            self.pool.writes.write(self.transport, data)

    def pause_reading(self) -> None:
        if self.transport is not None and self.open:
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and self.open:
            self.transport.resume_reading()

    def close(self) -> None:
        self.listener = None
        self.open = False
        if self.transport is not None:
            self.transport.close()

    def _fail(self, reason: str) -> None:
        listener, self.listener = self.listener, None
        if self.transport is not None:
            self.transport.close()
        self.open = False
        if listener is not None:
            listener.upstream_lost(reason, self.got_response)


class OriginUnreachableError(Exception):
    """A connection to the origin could not be opened (refused, unreachable, timed out)."""


class OriginPool:
    """Idle keep-alive connections to one server of an origin."""

    def __init__(
        self,
        origin: Origin,
        url: str,
        writes: WriteBatch,
        index: int = 0,
        max_idle: int = MAX_IDLE_PER_ORIGIN,
    ) -> None:
        parts = urlsplit(url)
        self.writes = writes
        self.url = url
        self.index = index
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if origin.tls else 80)
        self.authority = f"{self.host}:{self.port}".encode()
        self.max_idle = max_idle
        self._idle: list[UpstreamConnection] = []
        self._tls: ssl.SSLContext | None = None
        self._server_name: str | None = None
        if origin.tls:
            # Certificate and host name are verified (PROTOCOL_TLS_CLIENT's defaults).
            self._tls = ssl.create_default_context(cadata=origin.tls_ca_pem or None)
            self._server_name = origin.tls_server_name or self.host

    def take(self) -> UpstreamConnection | None:
        """An idle open connection, most recently used first; None when a new one is needed."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.open:
                conn.reused = True
                return conn
        return None

    def give_back(self, conn: UpstreamConnection) -> None:
        if conn.open and len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self._idle:
            self._idle.remove(conn)

    async def connect(self, timeout_s: float) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):  # no second task, as wait_for would make
                _, protocol = await loop.create_connection(
                    lambda: UpstreamConnection(self),
                    self.host,
                    self.port,
                    ssl=self._tls,
                    server_hostname=self._server_name,
                )
        except TimeoutError as timeout:
            raise OriginUnreachableError(
                f"connecting to origin {self.url} timed out after {timeout_s:g}s"
            ) from timeout
        except OSError as exc:
            raise OriginUnreachableError(f"cannot connect to origin {self.url}: {exc}") from exc
        return protocol

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


class OriginServers:
    """The servers of one origin, each with its pool. `pick` hands them out in turn and leaves
    out, for `EJECT_S`, a server that could not be reached (passive health checking); when
    every server is left out it still hands one out, so marks alone never refuse a request."""

    def __init__(self, origin: Origin, writes: WriteBatch) -> None:
        self.pools = [
            OriginPool(origin, url, writes, index) for index, url in enumerate(origin.servers)
        ]
        self._down_until = [0.0] * len(self.pools)
        self._next = 0
        self.only = self.pools[0] if len(self.pools) == 1 else None
        """The server of an origin without replicas: there is nothing to pick."""

    def pick(self, now: float) -> OriginPool:
        pools = self.pools
        count = len(pools)
        if count == 1:
            return pools[0]
        start = self._next
        for step in range(count):
            index = (start + step) % count
            if self._down_until[index] <= now:
                self._next = index + 1
                return pools[index]
        self._next = start + 1
        return pools[start % count]

    def mark_down(self, pool: OriginPool, now: float) -> None:
        self._down_until[pool.index] = now + EJECT_S

    def close(self) -> None:
        for pool in self.pools:
            pool.close()


class Pools:
    """The servers of every origin (by URLs and TLS settings), kept across bundle swaps so
    connections stay warm."""

    def __init__(self, writes: WriteBatch) -> None:
        self._origins: dict[tuple[object, ...], OriginServers] = {}
        self.writes = writes
        self._last: tuple[Origin, OriginServers] | None = None
        """The origin asked for last and its servers: most requests ask for it again."""

    def for_origin(self, origin: Origin) -> OriginServers:
        last = self._last
        if last is not None and last[0] is origin:
            return last[1]
        key = (origin.url, *origin.replicas, origin.tls_server_name, origin.tls_ca_pem)
        servers = self._origins.get(key)
        if servers is None:
            servers = self._origins[key] = OriginServers(origin, self.writes)
        self._last = (origin, servers)
        return servers

    def close(self) -> None:
        for servers in self._origins.values():
            servers.close()
