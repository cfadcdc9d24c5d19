"""Request bodies parsed once, by content type, for every module to share."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from hypothesis import example, given, settings
from hypothesis import strategies as st

from failsmall.engine.body import ParsedBody
from failsmall.engine.multipart import Ambiguous, _delimiter_lines
from failsmall.engine.request import BodyFormat, Request, RequestView, parse_form
from failsmall.engine.request import parse_body as parse_with_limits
from failsmall.model.traffic import Limits

LIMITS = Limits()


def parse_body(content_type: str, body: bytes) -> ParsedBody:
    return parse_with_limits(content_type, body, False, LIMITS)


def view(content_type: str, body: bytes) -> RequestView:
    headers = (("Content-Type", content_type),) if content_type else ()
    return RequestView(Request(method="POST", path="/", headers=headers, body=body))


def test_urlencoded_fields() -> None:
    v = view("application/x-www-form-urlencoded", b"name=O%27Brien&q=rock+%26+roll&q=2")
    assert v.body.format is BodyFormat.URLENCODED
    assert v.body_args == {"name": ["O'Brien"], "q": ["rock & roll", "2"]}
    assert v.body_arg_names == ["name", "q", "q"]
    assert v.content_type == "application/x-www-form-urlencoded"


def test_a_body_without_content_type_is_read_as_a_form_unless_it_looks_structured() -> None:
    assert view("", b"a=1&b=2").body.format is BodyFormat.URLENCODED
    assert view("", b"database(").body_arg_names == ["database("]
    assert view("", b'{"a": 1}').body.format is BodyFormat.RAW
    assert view("", b"<x/>").body.format is BodyFormat.RAW


def test_json_fields_are_leaves_by_dotted_path() -> None:
    v = view(
        "application/json; charset=utf-8",
        b'{"user": {"name": "Zo\\u00eb", "tags": ["a", {"deep": true}]}, "n": 3}',
    )
    assert v.body.format is BodyFormat.JSON
    assert v.body_args == {
        "user": [""],
        "user.name": ["Zoë"],
        "user.tags": [""],
        "user.tags.0": ["a"],
        "user.tags.1.deep": ["true"],
        "n": ["3"],
    }


def test_malformed_json_has_no_fields_and_says_why() -> None:
    v = view("application/json", b'{"a": ')
    assert v.body.format is BodyFormat.MALFORMED
    assert "invalid JSON" in v.body.problem
    assert v.body_args == {}


def test_multipart_fields_and_file_names() -> None:
    body = (
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="title"\r\n\r\n'
        b"Rock & roll\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="upload"; filename="Invoice O\'Brien.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n"
        b"%PDF-1.7 \x00\xff binary\r\n"
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="0"\r\n\r\n'
        b'["$K1"]\r\n'
        b"--XyZ--\r\n"
    )
    v = view('multipart/form-data; boundary="XyZ"', body)
    assert v.body.format is BodyFormat.MULTIPART
    assert v.body_args == {"title": ["Rock & roll"], "0": ['["$K1"]']}
    assert v.filenames == ["Invoice O'Brien.pdf"]
    assert v.body.reached is None


def test_multipart_without_boundary_reaches_the_framing_limit() -> None:
    parsed = parse_body("multipart/form-data", b"--x\r\n\r\n")
    assert parsed.format is BodyFormat.MULTIPART
    assert parsed.reached is not None and parsed.reached.limit == "multipart_framing"
    assert "boundary" in parsed.reached.detail


def test_other_media_types_are_raw_and_empty_bodies_empty() -> None:
    assert view("application/xml", b"<a/>").body.format is BodyFormat.RAW
    assert view("application/json", b"").body.format is BodyFormat.EMPTY


@settings(max_examples=200, deadline=None)
@given(
    content_type=st.sampled_from(
        [
            "",
            "application/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=b",
            'multipart/form-data; boundary="b"',
            "text/plain",
        ]
    ),
    body=st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(str.encode),
        st.lists(st.sampled_from([b"--b", b"\r\n", b"\n", b"name=", b'"', b"{", b"[", b"="])).map(
            b"".join
        ),
    ),
)
def test_parsing_never_raises(content_type: str, body: bytes) -> None:
    parsed = parse_body(content_type, body)
    assert isinstance(parsed.format, BodyFormat)
    assert all(isinstance(n, str) and isinstance(v, str) for n, v in parsed.fields)


def test_json_deeper_than_the_limit_reaches_it_rather_than_stopping_silently() -> None:
    for levels in (LIMITS.waf_max_body_depth + 1, 500, 5000):
        body = b'{"a":' * levels + b'"x"' + b"}" * levels
        parsed = parse_body("application/json", body)
        assert parsed.reached is not None and parsed.reached.limit == "waf_max_body_depth"
    body = b'{"a":' * LIMITS.waf_max_body_depth + b'"x"' + b"}" * LIMITS.waf_max_body_depth
    parsed = parse_body("application/json", body)
    assert parsed.reached is None and parsed.fields[-1][1] == "x"


form_text = st.lists(
    st.sampled_from(["&", "=", "+", "%", "%2", "%20", "%41", "%zz", "%C3%A9", "%FF", "a", "é"]),
    max_size=16,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(form_text, st.text(max_size=40)))
def test_parse_form_is_parse_qsl_keeping_blank_values(text: str) -> None:
    assert parse_form(text) == parse_qsl(text, keep_blank_values=True)


#: RFC 2046's delimiter lines: each owns the CRLF before it and the CRLF after it, so matches
#: do not overlap (in `--b\r\n--b` the second `--b` is a line of the part: aiohttp agrees).
_STRICT = re.compile(rb"(?:\A|\r\n)(--b)(--)?[ \t]*(?:\r\n|\Z)")
#: Every `--b` a lenient origin could take for a delimiter line: at the start of any line (a
#: bare LF, or the LF ending the line before), ending with LF, CRLF, a bare CR or the end.
_LOOSE = re.compile(rb"(?:\A|(?<=\n))--b(?:--)?[ \t]*\r?(?=\n|\Z)")


@settings(max_examples=3000, deadline=None)
@given(
    body=st.lists(
        st.sampled_from([b"--b", b"--", b"\r\n", b"\n", b"\r", b" ", b"x"]), max_size=14
    ).map(b"".join)
)
@example(body=b"\n--b\r\n--b")
@example(body=b"--b\r\n--b")
@example(body=b"--b--\r\n--b\r\n")
def test_delimiter_lines_are_the_rfc_2046_regex_or_ambiguous(body: bytes) -> None:
    """The parser finds exactly RFC 2046's delimiter lines, or says the body is ambiguous
    when a lenient origin could see a delimiter line RFC 2046 does not."""
    strict = [(m.start(), m.end(), bool(m.group(2))) for m in _STRICT.finditer(body)]
    strict_at = [m.start(1) for m in _STRICT.finditer(body)]
    loose_at = [m.start() for m in _LOOSE.finditer(body)]
    try:
        lines = _delimiter_lines(body, b"--b")
    except Ambiguous:
        assert loose_at != strict_at
        return
    assert loose_at == strict_at
    assert [(line.start, line.end, line.close) for line in lines] == strict
