"""The node's framing as pure functions: what it writes, read back by another HTTP/1.1
implementation (h11), must say what was meant: the same headers in order, none of the
hop-by-hop ones, and the same body bytes whatever the re-framing."""

from __future__ import annotations

import h11
from hypothesis import given
from hypothesis import strategies as st

from failsmall.node import framing, wire
from failsmall.node.framing import BodyFraming

TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
    min_size=1,
    max_size=12,
)
VALUE = st.from_regex(r"\A[!-~]([ !-~]{0,20}[!-~])?\Z", fullmatch=True)
PROXY_SETS = {
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-request-id",
    b"via",
}
HOP = [b"Connection", b"Keep-Alive", b"TE", b"Trailer", b"Upgrade", b"Proxy-Authorization"]


def end_to_end(name: str) -> bool:
    lower = name.lower().encode()
    return not wire.is_hop_by_hop(lower, frozenset()) and lower not in {
        b"host",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-request-id",
        b"via",
        b"content-type",
        b"x-cache",
        b"x-failsmall-bundle",
        b"server",
        b"expect",
    }


HEADERS = st.lists(
    st.tuples(TOKEN.filter(end_to_end), VALUE).map(lambda h: (h[0].encode(), h[1].encode())),
    max_size=6,
)
BODY = st.lists(st.binary(min_size=1, max_size=50), max_size=4)


def read_message(
    conn: h11.Connection, data: bytes, *, closes: bool = False
) -> tuple[object, bytes]:
    """The head event and the body bytes of the one message `data` holds, as h11 reads it."""
    conn.receive_data(data)
    if closes:
        conn.receive_data(b"")
    head: object = None
    body = b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Request | h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return head, body
        else:
            raise AssertionError(f"the message did not end: {event!r}")


def server_reads(data: bytes) -> tuple[h11.Request, bytes]:
    request, body = read_message(h11.Connection(h11.SERVER), data)
    assert isinstance(request, h11.Request)
    return request, body


def client_reads(method: bytes, data: bytes, *, closes: bool) -> tuple[h11.Response, bytes]:
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "o")]))
    conn.send(h11.EndOfMessage())
    response, body = read_message(conn, data, closes=closes)
    assert isinstance(response, h11.Response)
    return response, body


@given(
    method=st.sampled_from([b"GET", b"POST", b"PUT", b"DELETE", b"PATCH"]),
    path=st.from_regex(r"\A/[a-z0-9/._~-]{0,20}(\?[a-z0-9=&]{0,10})?\Z", fullmatch=True),
    host=st.sampled_from([b"", b"shop.example", b"shop.example:8080"]),
    forward=HEADERS,
    xff=st.sampled_from([b"", b"198.51.100.4", b"198.51.100.4, 10.0.0.1"]),
    chunked=st.booleans(),
    pieces=BODY,
)
def test_the_request_head_and_body_read_back_as_sent(
    method: bytes,
    path: str,
    host: bytes,
    forward: list[tuple[bytes, bytes]],
    xff: bytes,
    chunked: bool,
    pieces: list[bytes],
) -> None:
    body = b"".join(pieces)
    sent = [(b"Host", host), *forward] if host else forward
    head = framing.request_head(
        method,
        path.encode(),
        host,
        b"127.0.0.1:8001",
        sent,
        xff,
        b"192.0.2.7",
        b"rid-1",
        websocket=False,
        chunked=chunked,
        content_length=-1 if chunked else len(body),
    )
    wire_bytes = b"".join(head) + b"".join(framing.request_body(p, chunked=chunked) for p in pieces)
    if chunked:
        wire_bytes += wire.LAST_CHUNK
    request, got = server_reads(wire_bytes)
    assert request.method == method and request.target == path.encode()
    headers = [(n.lower(), v) for n, v in request.headers]
    names = [n for n, _ in headers]
    added = {b"host", b"content-length", b"transfer-encoding", *PROXY_SETS}
    kept = [h for h in headers if h[0] not in added]
    assert kept == [(n.lower(), v) for n, v in forward]
    assert dict(headers)[b"x-forwarded-for"] == (xff + b", 192.0.2.7" if xff else b"192.0.2.7")
    assert dict(headers)[b"host"] == (host or b"127.0.0.1:8001")
    assert dict(headers)[b"x-forwarded-host"] == host and dict(headers)[b"via"] == wire.VIA
    assert names.count(b"host") == 1
    assert (b"transfer-encoding" in names) is chunked
    assert got == body


@given(
    status=st.sampled_from([200, 201, 204, 206, 301, 304, 404, 500, 503]),
    forward=HEADERS,
    hop=st.lists(st.sampled_from(HOP), max_size=3),
    length_kind=st.sampled_from(["length", "chunked", "eof"]),
    listed=st.booleans(),
    head_request=st.booleans(),
    keep_alive=st.booleans(),
    pieces=BODY,
)
def test_the_response_reads_back_as_the_origin_meant_it(
    status: int,
    forward: list[tuple[bytes, bytes]],
    hop: list[bytes],
    length_kind: str,
    listed: bool,
    head_request: bool,
    keep_alive: bool,
    pieces: list[bytes],
) -> None:
    body = b"".join(pieces)
    origin = [(name, b"keep-alive") for name in hop] + list(forward)  # names no header
    if listed and forward:
        # The origin's Connection header names one of its headers: hop-by-hop too.
        origin.append((b"Connection", forward[0][0]))
    if length_kind == "length":
        origin.append((b"Content-Length", b"%d" % len(body)))
    elif length_kind == "chunked":
        origin.append((b"Transfer-Encoding", b"chunked"))
    head = framing.response_head(
        status,
        origin,
        head_request=head_request,
        http10=False,
        keep_alive=keep_alive,
        request_id=b"rid-1",
        bundle_tag=b"abc",
    )
    bodiless = head_request or status in (204, 304)
    expected = b"" if bodiless else body
    sent = head.head
    if not bodiless:
        sent += b"".join(framing.response_body(p, head.framing) for p in pieces)
        if head.framing is BodyFraming.CHUNKED:
            sent += wire.LAST_CHUNK
    closes = head.framing is BodyFraming.CLOSE
    response, got = client_reads(b"HEAD" if head_request else b"GET", sent, closes=closes)
    assert response.status_code == status
    headers = [(n.lower(), v) for n, v in response.headers]
    dropped = {forward[0][0].lower()} if listed and forward else set()
    kept = [(n.lower(), v) for n, v in forward if n.lower() not in dropped]
    assert [h for h in headers if h[0] in {n for n, _ in kept}] == kept
    names = {n for n, _ in headers}
    assert not names & {b"keep-alive", b"te", b"trailer", b"upgrade", b"proxy-authorization"}
    assert not names & dropped
    assert got == expected
    assert head.until_eof is (length_kind == "eof" and not bodiless)
    assert (dict(headers).get(b"connection") == b"close") is (not head.keep_alive)
    assert head.keep_alive is keep_alive
    assert dict(headers)[b"x-failsmall-bundle"] == b"abc"


def test_an_http10_client_gets_a_body_of_unknown_length_delimited_by_close() -> None:
    for origin in ([(b"Transfer-Encoding", b"chunked")], []):
        head = framing.response_head(
            200,
            origin,
            head_request=False,
            http10=True,
            keep_alive=True,
            request_id=b"r",
            bundle_tag=b"",
        )
        assert head.framing is BodyFraming.CLOSE and not head.keep_alive
        assert b"Transfer-Encoding" not in head.head and b"Connection: close\r\n" in head.head
        assert b"X-Failsmall-Bundle" not in head.head
        assert framing.response_body(b"abc", head.framing) == b"abc"
    kept = framing.response_head(
        200,
        [(b"Content-Length", b"3")],
        head_request=False,
        http10=True,
        keep_alive=True,
        request_id=b"r",
        bundle_tag=b"",
    )
    assert kept.framing is BodyFraming.AS_SENT and kept.keep_alive
    assert kept.head.endswith(
        b"Content-Length: 3\r\nVia: 1.1 failsmall\r\nX-Request-Id: r\r\n"
        b"Connection: keep-alive\r\n\r\n"
    )


@given(headers=HEADERS, body=st.binary(max_size=64), head_request=st.booleans())
def test_a_cached_response_reads_back_with_its_headers_and_a_fresh_length(
    headers: list[tuple[bytes, bytes]], body: bytes, head_request: bool
) -> None:
    stored = [
        (b"Content-Type", b"text/html"),
        *headers,
        (b"Transfer-Encoding", b"chunked"),
        (b"Content-Length", b"999"),
    ]
    sent = framing.cached_response(
        200,
        stored,
        body,
        keep_alive=True,
        head_request=head_request,
        request_id=b"r",
        bundle_tag=b"t",
    )
    response, got = client_reads(b"HEAD" if head_request else b"GET", sent, closes=False)
    got_headers = [(n.lower(), v) for n, v in response.headers]
    assert [h for h in got_headers if h[0] in {n.lower() for n, _ in headers}] == [
        (n.lower(), v) for n, v in headers
    ]
    assert dict(got_headers)[b"content-type"] == b"text/html"
    assert dict(got_headers)[b"x-cache"] == b"HIT"
    assert dict(got_headers)[b"content-length"] == b"%d" % len(body)
    assert b"transfer-encoding" not in dict(got_headers)
    assert got == (b"" if head_request else body)


def test_a_websocket_request_and_its_101_carry_the_upgrade_headers() -> None:
    head = b"".join(
        framing.request_head(
            b"GET",
            b"/ws",
            b"h",
            b"o:1",
            [(b"Host", b"h"), (b"Sec-WebSocket-Key", b"k")],
            b"",
            b"192.0.2.7",
            b"r",
            websocket=True,
            chunked=False,
            content_length=-1,
        )
    )
    assert head.endswith(b"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert b"Content-Length" not in head
    switched = framing.switching_protocols_head(
        [(b"Sec-WebSocket-Accept", b"a"), (b"Connection", b"upgrade"), (b"Upgrade", b"x")],
        b"r",
        b"",
    )
    assert switched == (
        b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: a\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Via: 1.1 failsmall\r\nX-Request-Id: r\r\n\r\n"
    )
