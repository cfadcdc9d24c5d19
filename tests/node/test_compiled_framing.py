"""The compiled framing (`_framing.c`) against the readable reference (`framing.py`): byte for
byte the same heads, whatever the headers hold (CR, LF, NUL, obs-fold, header names in any
case, Connection headers listing others, thousands of headers)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.node import compiled_framing, framing

SPECIAL = [
    b"Content-Length",
    b"content-length",
    b"Transfer-Encoding",
    b"TRANSFER-ENCODING",
    b"Connection",
    b"connection",
    b"Keep-Alive",
    b"TE",
    b"Trailer",
    b"Upgrade",
    b"Proxy-Authenticate",
    b"proxy-x",
    b"Proxy-",
    b"proxy",
    b"X-Custom",
    b"x-custom",
    b"Set-Cookie",
]
HOSTILE = st.sampled_from([b"\r\n", b"\r", b"\n", b"\x00", b"\r\n folded", b"\t", b" ", b",", b""])
BYTES = st.lists(st.one_of(st.binary(max_size=12), HOSTILE), max_size=4).map(b"".join)
NAME = st.one_of(st.sampled_from(SPECIAL), BYTES)
CONNECTION_VALUE = st.lists(
    st.one_of(st.sampled_from([*SPECIAL, b"keep-alive", b"close", b" x-custom ", b"\t"]), BYTES),
    max_size=4,
).map(b",".join)
VALUE = st.one_of(
    BYTES,
    CONNECTION_VALUE,
    st.sampled_from([b"keep-alive", b"Keep-Alive", b"close", b"Close", b"0", b"chunked"]),
)
HEADERS = st.lists(st.tuples(NAME, VALUE), max_size=12)
STATUS = st.one_of(st.sampled_from([100, 101, 200, 204, 304, 404, 502]), st.integers(0, 1200))


@settings(max_examples=500, deadline=None)
@given(
    status=STATUS,
    headers=HEADERS,
    head_request=st.booleans(),
    http10=st.booleans(),
    keep_alive=st.booleans(),
    request_id=BYTES,
    bundle_tag=BYTES,
)
def test_response_head_is_the_reference(
    status: int,
    headers: list[tuple[bytes, bytes]],
    head_request: bool,
    http10: bool,
    keep_alive: bool,
    request_id: bytes,
    bundle_tag: bytes,
) -> None:
    expected = framing.response_head(
        status,
        headers,
        head_request=head_request,
        http10=http10,
        keep_alive=keep_alive,
        request_id=request_id,
        bundle_tag=bundle_tag,
    )
    got = compiled_framing.response_head(
        status, headers, head_request, http10, keep_alive, request_id, bundle_tag
    )
    assert type(got) is framing.ResponseHead
    assert got == expected
    assert got.framing is expected.framing


@settings(max_examples=500, deadline=None)
@given(
    method=st.one_of(st.sampled_from([b"GET", b"POST", b"HEAD"]), BYTES),
    url=BYTES,
    host=BYTES,
    authority=BYTES,
    forward=HEADERS,
    xff=BYTES,
    client_ip=BYTES,
    request_id=BYTES,
    websocket=st.booleans(),
    chunked=st.booleans(),
    content_length=st.one_of(st.integers(-1, 10), st.integers(-(2**63), 2**63 - 1)),
)
def test_request_head_is_the_reference(
    method: bytes,
    url: bytes,
    host: bytes,
    authority: bytes,
    forward: list[tuple[bytes, bytes]],
    xff: bytes,
    client_ip: bytes,
    request_id: bytes,
    websocket: bool,
    chunked: bool,
    content_length: int,
) -> None:
    expected = framing.request_head(
        method,
        url,
        host,
        authority,
        forward,
        xff,
        client_ip,
        request_id,
        websocket=websocket,
        chunked=chunked,
        content_length=content_length,
    )
    got = compiled_framing.request_head(
        method,
        url,
        host,
        authority,
        forward,
        xff,
        client_ip,
        request_id,
        websocket,
        chunked,
        content_length,
    )
    assert got == b"".join(expected)


@settings(max_examples=300, deadline=None)
@given(headers=st.lists(st.tuples(st.binary(max_size=20), st.binary(max_size=40)), max_size=20))
def test_latin1_headers_decode_as_the_exchange_did(headers: list[tuple[bytes, bytes]]) -> None:
    expected = tuple((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers)
    assert compiled_framing.latin1_headers(headers) == expected


@settings(max_examples=20, deadline=None)
@given(
    count=st.integers(1000, 20000),
    listed=st.booleans(),
    value=st.binary(min_size=1, max_size=3),
)
def test_thousands_of_headers(count: int, listed: bool, value: bytes) -> None:
    """Many headers, half of them listed by Connection headers: the same head, in linear time
    (a quadratic walk would take minutes here)."""
    headers = [(b"X-%d" % i, value) for i in range(count)]
    if listed:
        headers += [(b"Connection", b"x-%d" % i) for i in range(0, count, 2)]
    expected = framing.response_head(
        200,
        headers,
        head_request=False,
        http10=False,
        keep_alive=True,
        request_id=b"id",
        bundle_tag=b"",
    )
    assert compiled_framing.response_head(200, headers, False, False, True, b"id", b"") == expected
    head = compiled_framing.request_head(
        b"GET", b"/", b"h", b"a", headers, b"", b"ip", b"id", False, False, -1
    )
    assert head == b"".join(
        framing.request_head(
            b"GET",
            b"/",
            b"h",
            b"a",
            headers,
            b"",
            b"ip",
            b"id",
            websocket=False,
            chunked=False,
            content_length=-1,
        )
    )


@pytest.mark.parametrize(
    "headers",
    [
        [(b"X-A", "text")],
        [(b"X-A",)],
        [[b"X-A", b"1"]],
        [(b"X-A", b"1", b"2")],
        None,
        [(bytearray(b"X-A"), b"1")],
    ],
)
def test_bad_headers_are_a_type_error(headers: Any) -> None:
    with pytest.raises(TypeError, match="header"):
        compiled_framing.response_head(200, headers, False, False, True, b"id", b"")
    with pytest.raises(TypeError, match=r"header|forward"):
        compiled_framing.request_head(
            b"GET", b"/", b"h", b"a", headers, b"", b"ip", b"id", False, False, -1
        )


def test_bad_scalars_are_a_type_error() -> None:
    text: Any = "not bytes"
    with pytest.raises(TypeError, match="request_id must be bytes"):
        compiled_framing.response_head(200, [], False, False, True, text, b"")
    with pytest.raises(TypeError, match="url must be bytes"):
        compiled_framing.request_head(b"GET", text, b"h", b"", [], b"", b"", b"", False, False, -1)
    loose: Any = compiled_framing.response_head
    with pytest.raises(TypeError, match="7 positional"):
        loose(200, [])
