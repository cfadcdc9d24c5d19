"""`whole_request` and `whole_response` (compiled) against llhttp (httptools), the parser the
node reads clients and origins with: whenever one reads a message it must read what llhttp reads,
on any input, hostile or not; and it must read the plain messages clients and origins send, or it
saves nothing."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine.native import index_headers
from failsmall.node import compiled_framing
from failsmall.node.exchange import Exchange, RequestRejected
from failsmall.node.proxy import ClientConnection, ProxyContext, _take_noted
from failsmall.node.serving import NO_BUNDLE_LIMITS, ServingSlot

Read = tuple[int, list[tuple[bytes, bytes]], bool, bytes]


class _Recorder:
    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.begun = 0
        self.complete = 0
        self.status = 0
        self.keep_alive = False
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""

    def on_message_begin(self) -> None:
        self.begun += 1

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete += 1


def llhttp_reads(data: bytes) -> Read | str:
    """One whole response as llhttp reads `data`, or why it does not read one."""
    recorder = _Recorder()
    try:
        recorder.parser.feed_data(data)
    except httptools.HttpParserError as exc:
        return f"refused: {exc}"
    if recorder.begun != 1 or recorder.complete != 1:
        return f"{recorder.begun} begun, {recorder.complete} complete"
    return recorder.status, recorder.headers, recorder.keep_alive, recorder.body


HOSTILE = st.sampled_from(
    [b"\r\n", b"\r", b"\n", b"\x00", b"\r\n ", b"\t", b" ", b"\x7f", b"\x80\xff", b":", b""]
)
PIECE = st.lists(st.one_of(st.binary(max_size=8), HOSTILE, st.just(b"text")), max_size=3).map(
    b"".join
)
NAMES = [
    b"Content-Length",
    b"content-length",
    b"Connection",
    b"Transfer-Encoding",
    b"Upgrade",
    b"Proxy-Connection",
    b"Content-Type",
    b"X-A",
    b"Date",
]
NAME = st.one_of(st.sampled_from(NAMES), PIECE)
VALUE = st.one_of(
    st.sampled_from([b"close", b"keep-alive", b"Keep-Alive", b"chunked", b"5", b"0", b"05"]),
    PIECE,
)
SEPARATOR = st.sampled_from([b": ", b":", b":  \t", b" : ", b":\t"])
LINE_END = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r"])


def mostly(
    plain: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes]
) -> st.SearchStrategy[bytes]:
    """`plain` nine times in ten, `odd` the tenth: most responses are near the plain case, so
    that the two parsers are compared where they may differ by a character."""
    return st.integers(0, 9).flatmap(lambda i: odd if i == 0 else plain)


@st.composite
def responses(draw: st.DrawFn, plain: bool = False) -> bytes:
    """A response as an origin might send it; with `plain`, always well formed."""

    def either(
        usual: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes]
    ) -> st.SearchStrategy[bytes]:
        return usual if plain else mostly(usual, odd)

    def pick(usual: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes]) -> bytes:
        return draw(either(usual, odd))

    version = pick(st.just(b"HTTP/1.1"), st.sampled_from([b"HTTP/1.0", b"HTTP/2", b"HTTP/1.1 "]))
    status = pick(
        st.sampled_from([b"200", b"404", b"503"]),
        st.sampled_from([b"100", b"101", b"204", b"304", b"199", b"999", b"20", b"2000", b"0"]),
    )
    reason = pick(st.sampled_from([b" OK", b" Not Found", b" ", b""]), PIECE)
    body = draw(st.binary(max_size=40))
    lines = [version + b" " + status + reason]
    headers = draw(
        st.lists(
            st.tuples(
                either(st.sampled_from(NAMES[6:]), NAME),
                either(st.sampled_from([b"text/plain", b"x", b"Thu, 03 Dec 2026", b""]), VALUE),
            ),
            max_size=6,
        )
    )
    declared = pick(st.just(b"%d" % len(body)), st.one_of(VALUE, st.just(b" %d" % len(body))))
    headers.insert(draw(st.integers(0, len(headers))), (b"Content-Length", declared))
    if draw(st.booleans()):
        headers.append(
            (b"Connection", pick(st.sampled_from([b"close", b"keep-alive", b"Close"]), VALUE))
        )
    for name, value in headers:
        lines.append(name + pick(st.just(b": "), SEPARATOR) + value)
    ends = [pick(st.just(b"\r\n"), LINE_END) for _ in range(len(lines) + 1)]
    head = b"".join(line + end for line, end in zip(lines, ends, strict=False)) + ends[-1]
    data = head + body
    data += pick(st.just(b""), st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"\r\n", b"x"]))
    if not plain and draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


@settings(max_examples=1500, deadline=None)
@given(responses())
def test_what_it_reads_llhttp_reads(data: bytes) -> None:
    got = compiled_framing.whole_response(data)
    if got is not None:
        assert got == llhttp_reads(data)


@settings(max_examples=300, deadline=None)
@given(responses(plain=True))
def test_it_reads_plain_responses(data: bytes) -> None:
    expected = llhttp_reads(data)
    assert not isinstance(expected, str)
    assert compiled_framing.whole_response(data) == expected


def test_a_large_head_is_left_to_llhttp() -> None:
    """A head past 64 KiB is llhttp's to read (and the node's to refuse)."""
    data = b"HTTP/1.1 200 OK\r\nX-A: %s\r\nContent-Length: 0\r\n\r\n" % (b"a" * 70000)
    assert compiled_framing.whole_response(data) is None
    assert compiled_framing.whole_response(data.replace(b"a" * 70000, b"a")) is not None


REPEATED_CONNECTION = [
    (b"close", b"keep-alive"),
    (b"keep-alive", b"close"),
    (b"close", b"close"),
    (b"keep-alive", b"Keep-Alive"),
]


@pytest.mark.parametrize(("first", "second"), REPEATED_CONNECTION)
def test_a_repeated_connection_header_is_left_to_llhttp_by_both_readers(
    first: bytes, second: bytes
) -> None:
    """Both readers take at most one Connection header: with two, llhttp's own rule (for
    HTTP/1.0, keep-alive if any says so; for HTTP/1.1, close if any says so) decides, and
    llhttp reads each of these messages."""
    headers = b"Connection: %s\r\nConnection: %s\r\n" % (first, second)
    response = b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 2\r\n\r\nok"
    assert compiled_framing.whole_response(response) is None
    assert not isinstance(llhttp_reads(response), str)
    for version in (b"1.1", b"1.0"):
        request = b"GET / HTTP/%s\r\nHost: a\r\n%s\r\n" % (version, headers)
        assert compiled_framing.whole_request(request) is None
        assert not isinstance(llhttp_reads_request(request), str)
    once = b"HTTP/1.1 200 OK\r\nConnection: %s\r\nContent-Length: 2\r\n\r\nok" % first
    assert compiled_framing.whole_response(once) == llhttp_reads(once)


# --- requests ----------------------------------------------------------------------------------

RequestRead = tuple[bytes, bytes, list[tuple[bytes, bytes]], bool, bool, bytes, int]


class _RequestRecorder(_Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.parser = httptools.HttpRequestParser(self)  # type: ignore[assignment]
        self.url = b""
        self.method = b""
        self.http10 = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_headers_complete(self) -> None:
        parser = self.parser
        assert isinstance(parser, httptools.HttpRequestParser)
        self.method = parser.get_method()
        self.http10 = parser.get_http_version() == "1.0"
        self.keep_alive = parser.should_keep_alive()


def llhttp_reads_request(data: bytes) -> RequestRead | str:
    """One whole request as llhttp reads `data` (with the head bytes as the node counts them),
    or why it does not read one."""
    recorder = _RequestRecorder()
    try:
        recorder.parser.feed_data(data)
    except httptools.HttpParserUpgrade:
        return "upgrade"
    except httptools.HttpParserError as exc:
        return f"refused: {exc}"
    if recorder.begun != 1 or recorder.complete != 1:
        return f"{recorder.begun} begun, {recorder.complete} complete"
    head_bytes = sum(len(n) + len(v) + 4 for n, v in recorder.headers)
    return (
        recorder.method,
        recorder.url,
        recorder.headers,
        recorder.http10,
        recorder.keep_alive,
        recorder.body,
        head_bytes,
    )


@st.composite
def requests(draw: st.DrawFn, plain: bool = False) -> bytes:
    """A request as a client might send it; with `plain`, always well formed."""

    def either(
        usual: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes]
    ) -> st.SearchStrategy[bytes]:
        return usual if plain else mostly(usual, odd)

    def pick(usual: st.SearchStrategy[bytes], odd: st.SearchStrategy[bytes]) -> bytes:
        return draw(either(usual, odd))

    method = pick(
        st.sampled_from([b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]),
        st.sampled_from([b"get", b"CONNECT", b"TRACE", b"FOO", b"PRI", b"G ET", b""]),
    )
    target = pick(
        st.sampled_from(
            [b"/", b"/a/b?c=d&e=%20f", b"/x;y=z", b"/~u/@:!$'()*+,=", b"/a?", b"/?x?y=/"]
        ),
        st.one_of(
            st.sampled_from([b"*", b"http://h/x", b"/a#f", b"/a b", b"/[x]", b"/|", b"/\x7f"]),
            PIECE.map(lambda p: b"/" + p),
        ),
    )
    version = pick(
        st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]),
        st.sampled_from([b"HTTP/2.0", b"HTTP/1.2", b"http/1.1", b"HTTP/1.1 ", b""]),
    )
    body = draw(st.binary(max_size=30))
    lines = [method + b" " + target + b" " + version]
    headers = draw(
        st.lists(
            st.tuples(
                either(st.sampled_from([b"Host", b"User-Agent", b"Accept", b"Expect"]), NAME),
                either(st.sampled_from([b"example.com", b"x/1", b"", b"100-continue"]), VALUE),
            ),
            max_size=6,
        )
    )
    if body or draw(st.booleans()):
        declared = pick(st.just(b"%d" % len(body)), st.one_of(VALUE, st.just(b"+1")))
        headers.insert(draw(st.integers(0, len(headers))), (b"Content-Length", declared))
    if draw(st.booleans()):
        headers.append(
            (b"Connection", pick(st.sampled_from([b"close", b"keep-alive", b"Close"]), VALUE))
        )
    for name, value in headers:
        lines.append(name + pick(st.just(b": "), SEPARATOR) + value)
    ends = [pick(st.just(b"\r\n"), LINE_END) for _ in range(len(lines) + 1)]
    head = b"".join(line + end for line, end in zip(lines, ends, strict=False)) + ends[-1]
    data = head + body
    data += pick(st.just(b""), st.sampled_from([b"GET / HTTP/1.1\r\n", b"\r\n", b"x"]))
    if not plain and draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


@settings(max_examples=1500, deadline=None)
@given(requests())
def test_what_it_reads_of_a_request_llhttp_reads(data: bytes) -> None:
    got = compiled_framing.whole_request(data)
    if got is not None:
        assert got[:7] == llhttp_reads_request(data)
        assert got[8:10] == target_as_read(got[1])
        assert got[10] == compiled_framing.latin1_headers(got[2])


@settings(max_examples=300, deadline=None)
@given(requests(plain=True))
def test_it_reads_plain_requests(data: bytes) -> None:
    expected = llhttp_reads_request(data)
    assert not isinstance(expected, str)
    got = compiled_framing.whole_request(data)
    assert got is not None and got[:7] == expected
    assert got[8:10] == target_as_read(got[1])
    assert got[10] == compiled_framing.latin1_headers(got[2])


def test_common_header_names_are_the_same_objects_in_every_message() -> None:
    """A header name most messages carry, spelled as listed or in lowercase, is one bytes and
    one str object in every message that carries it, whatever its value, and the engine's
    lowercase of it one str: no allocation for each, and a hash computed once. Other names are
    made for each message (unless the whole field came before: the next test)."""

    def read(name: bytes, value: bytes) -> tuple[bytes, str, str]:
        got = compiled_framing.whole_request(
            b"GET / HTTP/1.1\r\n" + name + b": " + value + b"\r\n\r\n"
        )
        assert got is not None
        ((raw, _),), ((text, _),) = got[2], got[10]
        return raw, text, index_headers(got[10])[1][0]

    for name in (b"User-Agent", b"user-agent", b"Sec-Fetch-Site", b"X-Odd-Name"):
        first, second = read(name, b"one value"), read(name, b"another")
        assert first == second == (name, name.decode(), name.decode().lower())
        shared = [a is b for a, b in zip(first, second, strict=True)]
        assert shared == ([False] * 3 if name == b"X-Odd-Name" else [True] * 3)

    def response_names(server: bytes) -> list[bytes]:
        got = compiled_framing.whole_response(
            b"HTTP/1.1 200 OK\r\nServer: " + server + b"\r\nContent-Length: 0\r\n\r\n"
        )
        assert got is not None
        return [name for name, _ in got[1]]

    first_names, second_names = response_names(b"a"), response_names(b"b")
    assert first_names == second_names == [b"Server", b"Content-Length"]
    assert all(a is b for a, b in zip(first_names, second_names, strict=True))


def _fields(data: bytes) -> tuple[list[tuple[bytes, bytes]], tuple[tuple[str, str], ...]]:
    got = compiled_framing.whole_request(data)
    assert got is not None
    return got[2], got[10]


def test_a_field_that_comes_again_is_the_same_objects_until_another_takes_its_slot() -> None:
    """A whole header field seen before, byte for byte, is handed out as the pairs made for it
    then (bytes and latin-1), in requests and responses alike; any number of other fields in
    between (far more than the table holds) leave every message read as llhttp reads it."""
    request = b"GET / HTTP/1.1\r\nHost: shop.example\r\nX-Odd-Name: \xe9t\xe9\r\n\r\n"
    (raw, text), (again_raw, again_text) = _fields(request), _fields(request)
    assert raw == again_raw and text == again_text == (
        ("Host", "shop.example"),
        ("X-Odd-Name", "été"),
    )
    assert all(a is b for a, b in zip(raw, again_raw, strict=True))
    assert all(a is b for a, b in zip(text, again_text, strict=True))
    response = b"HTTP/1.1 200 OK\r\nHost: shop.example\r\nContent-Length: 0\r\n\r\n"
    got = compiled_framing.whole_response(response)
    assert got is not None and got[1][0] is raw[0]  # the same field in a response
    for i in range(5000):  # distinct fields, each of which takes a slot
        data = b"GET / HTTP/1.1\r\nX-Seq: %d\r\nHost: h%d\r\n\r\n" % (i, i % 7)
        fields = _fields(data)
        expected = llhttp_reads_request(data)
        assert not isinstance(expected, str) and fields[0] == expected[2]
        assert fields[1] == compiled_framing.latin1_headers(fields[0])
    assert _fields(request) == (raw, text)


def test_fields_too_long_to_keep_are_read_anew_each_time() -> None:
    value = b"v" * 600
    request = b"GET / HTTP/1.1\r\nX-Long: " + value + b"\r\n\r\n"
    (raw, text), (again_raw, again_text) = _fields(request), _fields(request)
    assert raw == again_raw == [(b"X-Long", value)] and text == again_text
    assert raw[0] is not again_raw[0] and text[0] is not again_text[0]


def target_as_read(url: bytes) -> tuple[str, str]:
    """The path and query `ClientConnection._read_target` reads from an origin-form target."""
    exchange = _exchange(False, [])
    exchange.url = url
    ClientConnection._read_target(exchange)
    return exchange.path, exchange.query


NOTED_NAMES = [
    b"Host",
    b"host",
    b"X-Forwarded-For",
    b"x-request-id",
    b"X-Request-Id",
    b"Expect",
    b"Via",
    b"X-Forwarded-Proto",
    b"X-Forwarded-Host",
    b"Proxy-Authorization",
    b"proxy-x",
    b"Close",
    b"close",
    b"Keep-Alive",
    b"TE",
    b"Trailer",
    b"Accept",
    b"Cookie",
]


@st.composite
def noted_requests(draw: st.DrawFn) -> bytes:
    """Plain requests full of the headers the proxy notes, drops or replaces."""
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"]))
    lines = [b"GET / " + version]
    headers = draw(
        st.lists(
            st.tuples(
                st.sampled_from(NOTED_NAMES),
                st.sampled_from([b"a", b"100-continue", b"100-Continue", b"10.0.0.1", b"", b"x y"]),
            ),
            max_size=8,
        )
    )
    if draw(st.booleans()):
        headers.append((b"Connection", draw(st.sampled_from([b"close", b"keep-alive"]))))
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def _unconnected() -> ClientConnection:
    return ClientConnection(ProxyContext(ServingSlot()))


#: A connection that never connects: the client side of exchanges that only read a head.
_NO_CLIENT = asyncio.run(_unconnected())


def _exchange(http10: bool, headers: list[tuple[bytes, bytes]]) -> Exchange:
    exchange = Exchange(_NO_CLIENT, cast(Any, None), None, NO_BUNDLE_LIMITS, headers, [])
    exchange.method = b"GET"
    exchange.http10 = http10
    return exchange


def _outcome(exchange: Exchange, read: Any) -> tuple[object, ...]:
    try:
        read()
    except RequestRejected as exc:
        return (exc.status, exc.reason)
    fields = ("forward", "host", "content_length", "xff", "request_id", "expects_continue")
    return (*(getattr(exchange, name) for name in fields), exchange.websocket)


@settings(max_examples=1000, deadline=None)
@given(noted_requests())
def test_what_it_notes_of_headers_is_what_read_headers_notes(data: bytes) -> None:
    got = compiled_framing.whole_request(data)
    assert got is not None
    _, _, headers, http10, _, _, _, noted, _, _, _ = got
    by_python = _exchange(http10, list(headers))
    by_c = _exchange(http10, list(headers))
    expected = _outcome(by_python, lambda: ClientConnection._read_headers(by_python))
    assert _outcome(by_c, lambda: _take_noted(by_c, noted)) == expected
