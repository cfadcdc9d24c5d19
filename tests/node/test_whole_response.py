"""`whole_response` (compiled) against llhttp (httptools), the parser the node reads origins
with: whenever it reads a response it must read what llhttp reads, on any input, hostile or not;
and it must read the plain responses origins send, or it saves nothing."""

from __future__ import annotations

import httptools
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.node import compiled_framing

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


@settings(max_examples=3000, deadline=None)
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
