"""Bodies read the way origins read them: multipart framing, content codings, compatibility
characters. What the WAF cannot read as the origin would gets the over-limit action."""

from __future__ import annotations

import gzip
import random
import zlib
from functools import cache

import brotli
import pytest
from aiohttp import BodyPartReader, ClientSession, web
from aiohttp.http_exceptions import HttpProcessingError

from failsmall.engine import Decision, Engine, Request, RequestView, Verdict
from failsmall.managed.measure import managed_bundle
from failsmall.model.traffic import Limits
from failsmall.transport.natsd import free_port

SQLI = b"1' UNION SELECT username, password FROM users--"


@cache
def engine(**limits: object) -> Engine:
    """The managed ruleset's engine with `limits`, sharing the compiled signatures of the one
    with default limits, as a node reuses them when only the limits change."""
    bundle = managed_bundle()
    if limits:
        bundle = bundle.model_copy(update={"limits": Limits.model_validate(limits)})
    return Engine.build(bundle, reuse=engine() if limits else None)


def post(
    body: bytes,
    content_type: str,
    encoding: str = "",
    truncated: bool = False,
) -> Request:
    headers = [("Host", "shop.example"), ("Content-Type", content_type)]
    if encoding:
        headers.append(("Content-Encoding", encoding))
    return Request("POST", "/upload", headers=tuple(headers), body=body, body_truncated=truncated)


def verdict(request: Request, **limits: object) -> Verdict:
    e = engine(**limits)
    return e.evaluate(request, e.new_state())


def limits_of(v: Verdict) -> list[str]:
    return [r.limit for r in v.over_limits]


def part(name: str, content: bytes, extra: str = "") -> bytes:
    return b'--real\r\nContent-Disposition: form-data; name="%s"%s\r\n\r\n%s\r\n' % (
        name.encode(),
        extra.encode(),
        content,
    )


MULTIPART = part("note", b"hello") + part("q", SQLI) + b"--real--\r\n"


# ---- multipart ---------------------------------------------------------------------------


def test_the_real_boundary_parameter_frames_the_body() -> None:
    for content_type in (
        "multipart/form-data; boundary=real",
        'multipart/form-data; boundary="real"',
        'multipart/form-data; charset="boundary=fake"; boundary=real',
        'multipart/form-data; x="a;boundary=fake"; boundary=real',
        "multipart/form-data; BOUNDARY=real",
    ):
        view = RequestView(post(MULTIPART, content_type), limits=Limits())
        assert view.body.reached is None, content_type
        assert view.body_args == {"note": ["hello"], "q": [SQLI.decode()]}, content_type
        v = verdict(post(MULTIPART, content_type))
        assert v.decision is Decision.BLOCK and not v.over_limits, content_type


@pytest.mark.parametrize(
    ("content_type", "why"),
    [
        ("multipart/form-data; boundary=fake; boundary=real", "given twice"),
        ("multipart/form-data", "without a boundary"),
        ('multipart/form-data; boundary="real', "not closed"),
        ("multipart/form-data; boundary=" + "x" * 71, "not an RFC 2046 boundary"),
    ],
)
def test_a_boundary_the_waf_cannot_be_sure_of_gets_the_over_limit_action(
    content_type: str, why: str
) -> None:
    v = verdict(post(MULTIPART.replace(SQLI, b"harmless"), content_type))
    assert v.decision is Decision.BLOCK
    assert limits_of(v) == ["multipart_framing"]
    assert why in v.over_limits[0].detail


def test_an_empty_filename_is_a_form_field_and_is_inspected() -> None:
    body = part("q", SQLI, '; filename=""') + b"--real--\r\n"
    view = RequestView(post(body, "multipart/form-data; boundary=real"), limits=Limits())
    assert view.body_args == {"q": [SQLI.decode()]} and view.filenames == []
    assert verdict(post(body, "multipart/form-data; boundary=real")).decision is Decision.BLOCK


def test_a_part_with_a_filename_is_a_file_whose_name_is_inspected() -> None:
    body = part("upload", b"%PDF-1.7 binary", '; filename="invoice.pdf"') + b"--real--\r\n"
    view = RequestView(post(body, "multipart/form-data; boundary=real"), limits=Limits())
    assert view.filenames == ["invoice.pdf"] and view.body_args == {}
    request = post(body, "multipart/form-data; boundary=real")
    assert verdict(request).decision is Decision.ALLOW
    star = part("upload", b"data", "; filename*=utf-8''na%C3%AFve.txt") + b"--real--\r\n"
    view = RequestView(post(star, "multipart/form-data; boundary=real"), limits=Limits())
    assert view.filenames == ["naïve.txt"]


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (MULTIPART.replace(b"\r\n--real\r\n", b"\n--real\n"), "bare LF"),
        (MULTIPART.removesuffix(b"--real--\r\n"), "close delimiter"),
        (b"--real\r\nContent-Disposition: form-data; name=a\r\nhello\r\n--real--\r\n", "blank"),
        (
            b'--real\r\nContent-Disposition: form-data; name="a"; name="b"\r\n\r\nx\r\n'
            b"--real--\r\n",
            "twice",
        ),
        (
            b"--real\r\nContent-Disposition: form-data; name=a\r\n"
            b"Content-Disposition: form-data; name=b\r\n\r\nx\r\n--real--\r\n",
            "twice",
        ),
        (  # 'Σ' and 'ς' at the end of a word both lower to 'ς' (str.lower's final sigma)
            "--real\r\nContent-Disposition: form-data; name=a\r\nXΣ: 1\r\nXς: 2\r\n\r\n"
            "x\r\n--real--\r\n".encode(),
            "twice",
        ),
    ],
)
def test_ambiguous_framing_gets_the_over_limit_action(body: bytes, why: str) -> None:
    v = verdict(post(body.replace(SQLI, b"harmless"), "multipart/form-data; boundary=real"))
    assert v.decision is Decision.BLOCK
    assert limits_of(v) == ["multipart_framing"] and why in v.over_limits[0].detail


async def _origin_fields(body: bytes, content_type: str) -> list[tuple[str, str]] | str:
    """The fields a real origin (aiohttp's multipart reader, on a loopback socket) reads from
    `body`, or the error it refuses the body with."""

    async def handler(request: web.Request) -> web.Response:
        try:
            fields: list[tuple[str, str]] = []
            async for field in await request.multipart():
                assert isinstance(field, BodyPartReader)
                fields.append((field.name or "", (await field.read()).decode("latin-1")))
        except HttpProcessingError as exc:  # InvalidHeader, BadHttpMessage
            return web.json_response({"error": repr(exc)})
        return web.json_response({"fields": fields})

    app = web.Application()
    app.router.add_post("/upload", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        async with ClientSession() as client:
            url = f"http://127.0.0.1:{port}/upload"
            async with client.post(url, data=body, headers={"Content-Type": content_type}) as r:
                answer = await r.json()
    finally:
        await runner.cleanup()
    if "error" in answer:
        return str(answer["error"])
    return [(name, value) for name, value in answer["fields"]]


@pytest.mark.parametrize(
    "body",
    [
        # A `--real` line right after a delimiter line: RFC 2046 and aiohttp read it as a line
        # of the part (a header that does not parse), a lenient parser as an empty part.
        b"--real\r\n" + MULTIPART,
        part("note", b"hello") + b"--real\r\n" + MULTIPART.removeprefix(part("note", b"hello")),
        # With a blank line of its own, it is a delimiter for everyone: an empty part.
        b"--real\r\n\r\n" + MULTIPART,
        MULTIPART,
    ],
    ids=["after-first-line", "after-a-part", "after-an-empty-part", "plain"],
)
async def test_a_delimiter_line_is_one_where_a_real_origin_reads_one(body: bytes) -> None:
    """The WAF reads the fields the origin reads, or calls the framing ambiguous (and gets the
    over-limit action): it never inspects fields other than those the origin acts on."""
    content_type = "multipart/form-data; boundary=real"
    origin = await _origin_fields(body, content_type)
    request = post(body, content_type)
    v = verdict(request)
    if limits_of(v) == ["multipart_framing"]:
        assert v.decision is Decision.BLOCK
        return
    assert limits_of(v) == []
    seen = RequestView(request, limits=Limits()).body.fields
    assert isinstance(origin, list), f"the origin refused the body ({origin}); the WAF read {seen}"
    assert [(name, value) for name, value in seen if name] == [f for f in origin if f[0]]
    assert v.decision is Decision.BLOCK  # the SQL injection in field q is seen


def test_a_body_cut_at_the_buffer_is_inspected_as_far_as_it_goes() -> None:
    cut = MULTIPART[: MULTIPART.index(b"--real--")]
    request = post(cut + b"more", "multipart/form-data; boundary=real", truncated=True)
    view = RequestView(request, limits=Limits())
    assert view.body.reached is None
    assert verdict(request).decision is Decision.BLOCK


def test_multipart_nested_deeper_than_the_limit_reaches_the_depth_limit() -> None:
    inner = part("q", b"x").replace(b"real", b"inner") + b"--inner--\r\n"
    outer = (
        b"--real\r\nContent-Disposition: form-data; name=files\r\n"
        b"Content-Type: multipart/mixed; boundary=inner\r\n\r\n" + inner + b"\r\n--real--\r\n"
    )
    request = post(outer, "multipart/form-data; boundary=real")
    assert RequestView(request, limits=Limits()).body.reached is None
    v = verdict(request, waf_max_body_depth=1)
    assert limits_of(v) == ["waf_max_body_depth"] and v.decision is Decision.BLOCK


# ---- content codings ---------------------------------------------------------------------

FORM = b"comment=" + SQLI


@pytest.mark.parametrize(
    ("encoding", "encode"),
    [
        ("gzip", gzip.compress),
        ("x-gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda data: zlib.compress(data, wbits=-zlib.MAX_WBITS)),
        ("br", brotli.compress),
        ("gzip, br", lambda data: brotli.compress(gzip.compress(data))),
        ("identity", lambda data: data),
    ],
)
def test_encoded_bodies_are_decoded_for_inspection(encoding: str, encode: object) -> None:
    assert callable(encode)
    request = post(encode(FORM), "application/x-www-form-urlencoded", encoding)
    view = RequestView(request, limits=Limits())
    assert view.body_args == {"comment": [SQLI.decode()]}
    v = verdict(request)
    assert v.decision is Decision.BLOCK and not v.over_limits
    clean = post(encode(b"comment=lovely"), "application/x-www-form-urlencoded", encoding)
    assert verdict(clean).decision is Decision.ALLOW


def test_a_zip_bomb_reaches_the_expansion_limit_after_bounded_work() -> None:
    bomb = gzip.compress(b"a" * (20 * 1024 * 1024))
    assert len(bomb) < 64 * 1024
    request = post(bomb, "text/plain", "gzip")
    view = RequestView(request, limits=Limits())
    assert len(view.decoded.data) <= Limits().waf_body_buffer
    v = verdict(request)
    assert v.decision is Decision.BLOCK
    assert limits_of(v)[0] in ("waf_max_expansion", "waf_body_buffer")
    small_ratio = gzip.compress(b"b" * 5000)
    v = verdict(post(small_ratio, "text/plain", "gzip"), waf_max_expansion=10)
    assert limits_of(v) == ["waf_max_expansion"]


def test_a_bomb_under_inspect_partial_is_inspected_up_to_the_bound() -> None:
    bomb = gzip.compress(FORM + b"&pad=" + b"a" * (10 * 1024 * 1024))
    v = verdict(
        post(bomb, "application/x-www-form-urlencoded", "gzip"), waf_over_limit="inspect_partial"
    )
    assert v.decision is Decision.BLOCK and v.over_limits


@pytest.mark.parametrize(
    ("encoding", "body", "limit"),
    [
        ("compress", b"\x1f\x9d...", "content_encoding"),
        ("gzip", b"not gzip at all", "content_encoding"),
        ("gzip", gzip.compress(FORM)[:-12], "content_encoding"),
        (
            "gzip, gzip, gzip",
            gzip.compress(gzip.compress(gzip.compress(FORM))),
            "waf_max_decode_depth",
        ),
    ],
)
def test_a_body_the_waf_cannot_decode_gets_the_over_limit_action(
    encoding: str, body: bytes, limit: str
) -> None:
    v = verdict(post(body, "application/x-www-form-urlencoded", encoding))
    assert v.decision is Decision.BLOCK and limits_of(v) == [limit]


def test_a_stream_cut_at_the_buffer_is_decoded_as_far_as_it_goes() -> None:
    padding = random.Random(1).randbytes(5000).hex().encode()  # does not compress
    encoded = gzip.compress(FORM + b"&more=" + padding)
    request = post(encoded[: len(encoded) // 2], "application/x-www-form-urlencoded", "gzip", True)
    v = verdict(request)
    assert not v.over_limits and v.decision is Decision.BLOCK


# ---- compatibility characters ------------------------------------------------------------


def test_full_width_payloads_are_caught() -> None:
    wide = "１' ＵＮＩＯＮ ＳＥＬＥＣＴ username, password ＦＲＯＭ users--"
    request = Request("GET", "/search", query="q=" + wide, host="shop.example")
    assert verdict(request).decision is Decision.BLOCK
    script = "＜ｓｃｒｉｐｔ＞alert(1)＜／ｓｃｒｉｐｔ＞"
    body = ("comment=" + script).encode()
    assert verdict(post(body, "application/x-www-form-urlencoded")).decision is Decision.BLOCK
    plain = "ｈｅｌｌｏ ｗｏｒｌｄ".encode()
    assert verdict(post(b"comment=" + plain, "application/x-www-form-urlencoded")).decision is (
        Decision.ALLOW
    )


def test_the_fields_named_for_a_verdict_are_read_with_the_bundles_limits() -> None:
    """Three gzip layers are within a bundle allowing three: the SQL injection is found in the
    `comment` field, and that is the field named (read with the default two layers, the body
    would be undecodable and no field would be named)."""
    from failsmall.engine.signatures.fields import signature_fields

    body = gzip.compress(gzip.compress(gzip.compress(FORM)))
    request = post(body, "application/x-www-form-urlencoded", "gzip, gzip, gzip")
    e = engine(waf_max_decode_depth=3)
    v = e.evaluate(request, e.new_state())
    assert v.decision is Decision.BLOCK and not v.over_limits
    fields = signature_fields(e.waf, request, v.matched_rules, e.limits)
    assert fields
    assert all(names == ("body.comment",) for names in fields.values()), fields
