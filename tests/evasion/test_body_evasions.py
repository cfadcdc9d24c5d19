"""Bodies that hide `ATTACK` from the WAF's parser while the origin's parser delivers it to
the application. Each must be blocked at the edge, or answered with the over-limit action
the bundle declares; nothing of it may reach the origin's application."""

from __future__ import annotations

import contextlib
import gzip
import json
import zlib
from pathlib import Path
from urllib.parse import urlencode

import pytest

from failsmall.model import Limits
from tests.evasion.conftest import Edge, Sent, edge_bundle_fields, running_edge, send
from tests.evasion.evasion import assert_edge_stops
from tests.evasion.origins import ATTACK, app_origin, file_origin

pytestmark = pytest.mark.asyncio(loop_scope="package")

FORM = ("Content-Type", "application/x-www-form-urlencoded")
FORM_BODY = urlencode({"q": ATTACK}).encode()
#: Deeper than any JSON depth limit the WAF declares (32 today), shallow for a JSON parser.
DEPTH = 256
#: Harmless fields in front of the payload (the WAF stops at 4,096 today).
FIELDS = 4096


def form(body: bytes, *headers: tuple[str, str]) -> Sent:
    return Sent("POST", "/submit", headers=(FORM, *headers), body=body)


def multipart(content_type: str, disposition: str, value: str) -> Sent:
    body = (
        f'--real\r\nContent-Disposition: form-data; name="q"{disposition}\r\n\r\n'
        f"{value}\r\n--real--\r\n"
    ).encode()
    return Sent("POST", "/submit", headers=(("Content-Type", content_type),), body=body)


def full_width(text: str) -> str:
    """`text` in the Unicode full-width forms of its ASCII characters (space: U+3000)."""
    return "".join(
        "\u3000" if c == " " else chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text
    )


def nested(depth: int) -> bytes:
    document: object = {"q": ATTACK}
    for _ in range(depth):
        document = {"a": document}
    return json.dumps(document).encode()


def nested_in_arrays(depth: int) -> bytes:
    """`{"q": ATTACK}` as the last element of `depth` arrays, each after a harmless string."""
    return b'["x", ' * depth + json.dumps({"q": ATTACK}).encode() + b"]" * depth


def repeated_among_many_keys(count: int, wide_key: str = "") -> bytes:
    """`q` harmless among `count` other keys of one object, then `q` again with `ATTACK` after
    as many more: the origin's json.loads keeps the last; the WAF finds the repeat through its
    keyed table of an object's keys, which it uses past the first 16. A `wide_key` between the
    two (not Latin-1) makes the walk widen its keys, and rebuild that table, in between."""
    keys = [f'"k{i}": {i}' for i in range(2 * count)]
    between = [f"{json.dumps(wide_key, ensure_ascii=False)}: 0"] if wide_key else []
    pairs = [
        *keys[:count],
        '"q": "harmless"',
        *between,
        *keys[count:],
        f'"q": {json.dumps(ATTACK)}',
    ]
    return ("{" + ", ".join(pairs) + "}").encode()


def json_body(body: bytes) -> Sent:
    return Sent("POST", "/submit", headers=(("Content-Type", "application/json"),), body=body)


PLAIN = {
    "urlencoded": form(FORM_BODY),
    "json": Sent(
        "POST",
        "/submit",
        headers=(("Content-Type", "application/json"),),
        body=json.dumps({"q": ATTACK}).encode(),
    ),
    "multipart": multipart("multipart/form-data; boundary=real", "", ATTACK),
}


@pytest.mark.parametrize("request_", PLAIN.values(), ids=PLAIN.keys())
async def test_the_payload_sent_plainly_is_blocked(edge: Edge, request_: Sent) -> None:
    await assert_edge_stops(edge, request_, "the payload")


EVASIONS = [
    pytest.param(json_body(nested(DEPTH)), id="json-nested-past-the-depth-limit"),
    # Past 512 levels the WAF's JSON walk once handed the body to json.loads, whose verdict
    # depended on how deep the caller's stack was; the origin's json.loads reads 600 levels.
    pytest.param(json_body(nested(600)), id="json-objects-600-deep"),
    pytest.param(json_body(nested_in_arrays(600)), id="json-arrays-600-deep"),
    pytest.param(json_body(repeated_among_many_keys(1500)), id="json-key-repeated-among-3000"),
    pytest.param(
        json_body(repeated_among_many_keys(1500, "ключ")),
        id="json-key-repeated-after-a-wide-key",
    ),
    pytest.param(
        form("&".join(f"f{i}=x" for i in range(FIELDS)).encode() + b"&" + FORM_BODY),
        id="payload-behind-4096-harmless-fields",
    ),
    pytest.param(
        multipart('multipart/form-data; charset="boundary=fake"; boundary=real', "", ATTACK),
        id="multipart-second-boundary-in-another-parameter",
    ),
    pytest.param(
        multipart("multipart/form-data; boundary=real", '; filename=""', ATTACK),
        id="multipart-part-with-empty-filename",
    ),
    pytest.param(
        form(gzip.compress(FORM_BODY, mtime=0), ("Content-Encoding", "gzip")),
        id="gzip-body",
    ),
    pytest.param(
        form(zlib.compress(FORM_BODY), ("Content-Encoding", "deflate")),
        id="deflate-body",
    ),
    pytest.param(
        form(urlencode({"q": full_width(ATTACK)}).encode()),
        id="full-width-payload",
    ),
]


@pytest.mark.parametrize("request_", EVASIONS)
async def test_a_body_the_origin_reads_is_inspected_the_same_way(
    edge: Edge, request_: Sent
) -> None:
    await assert_edge_stops(edge, request_, "the payload")


async def test_a_body_over_a_limit_sent_again_and_again_never_reaches_the_origin(
    tmp_path: Path,
) -> None:
    """With the WAF set to block over a limit, an attacker repeats a gzip body whose decoding
    passes `waf_max_expansion` before its payload, hoping that the edge, having seen it before,
    answers from memory without decoding it: every time, the edge blocks it and the origin,
    which decodes all of it, never reads the payload."""
    bomb = gzip.compress(json.dumps({"pad": "x" * 200_000, "q": ATTACK}).encode())
    request = Sent(
        "POST",
        "/submit",
        headers=(("Content-Type", "application/json"), ("Content-Encoding", "gzip")),
        body=bomb,
    )
    async with app_origin() as app, contextlib.AsyncExitStack() as stack:
        files = stack.enter_context(file_origin(tmp_path / "site"))
        fields = edge_bundle_fields(app.url, files.url)
        fields["limits"] = Limits(module_time_budget_us=10_000_000, waf_over_limit="block")
        async with running_edge(tmp_path / "node", fields) as port:
            edge = Edge(port, app, files)
            for _ in range(8):  # past the memo's second offer of the request, and its finding it
                await assert_edge_stops(edge, request, "the payload past the limit")


async def test_a_body_seen_before_without_its_coding_is_read_through_the_coding_it_comes_with(
    edge: Edge,
) -> None:
    """An attacker sends the gzip bytes of a payload without a Content-Encoding, harmless as
    they are, until the edge has seen them often enough to remember their scan; then the same
    bytes with `Content-Encoding: gzip`, hoping the edge answers from memory: it reads them
    through the coding and blocks them, and the origin never reads the payload."""
    packed = gzip.compress(FORM_BODY, mtime=0)
    payloads = len(edge.app.payloads)
    for _ in range(6):  # past the memo's second offer of the body, and its finding it
        answer = await send(edge.port, form(packed))  # passed, and refused by the origin
        assert answer.status == 400 and b"not UTF-8" in answer.body, answer
    assert edge.app.payloads[payloads:] == [], "the origin read a payload in the plain bytes"
    await assert_edge_stops(edge, form(packed, ("Content-Encoding", "gzip")), "the payload")
