"""The compiled engine part on hostile input: nothing an attacker sends (or a caller passes) may
crash the process or disagree with the readable reference. Deep documents, escapes that decode
to surrogates or wide characters, NULs, lone surrogates, empty and buffer-sized values."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from failsmall.engine import _native
from failsmall.engine.body import BodyFormat, JsonWalk, parse_body, parse_json_reference
from failsmall.engine.native import json_fields
from failsmall.engine.request import Request, RequestView
from failsmall.engine.signatures.transforms import ALL_FEATURES, AMPERSAND, PERCENT, TRANSFORMS
from failsmall.engine.signatures.transforms import features as reference_features
from failsmall.model.rules import Transform
from failsmall.model.traffic import Limits
from tests.waf.test_native_scanner import request_scanners, scanners

MIB = 1024 * 1024


def test_a_document_nested_past_the_stack_raises_recursion_error_instead_of_crashing() -> None:
    """A document built in Python can be nested deeper than `json.loads` allows: with a
    `max_depth` out of the way, flattening it must raise RecursionError (as the reference
    does), not overflow the C stack. Run in a child process, which a crash would kill."""
    program = textwrap.dedent(
        """
        import json
        from failsmall.engine.native import flatten_json
        top = node = []
        for _ in range(1_000_000):
            child = []
            node.append(child)
            node = child
        try:
            flatten_json(top, 10**6, 10**7, 10**9, json.dumps)
        except RecursionError:
            print("RecursionError")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip() == "RecursionError"


@pytest.mark.parametrize("depth", [63, 64, 65, 256, 2_000, 100_000])
@pytest.mark.parametrize("opening", ["[", '{"a":', '[{"\\ud800":'])
def test_a_deep_json_body_stops_at_the_depth_limit(opening: str, depth: int) -> None:
    closing = {"[": "]", '{"a":': "}", '[{"\\ud800":': "}]"}[opening]
    body = (opening * depth + "1" + closing * depth).encode()
    limits = Limits(waf_max_body_depth=64)
    parsed = parse_body("application/json", body, False, limits)
    assert parsed.format is BodyFormat.JSON
    nested = depth * (2 if opening.startswith("[{") else 1)
    assert (parsed.reached is not None) == (nested > 64)
    assert parsed.reached is None or parsed.reached.limit == "waf_max_body_depth"


def test_a_wide_document_stops_at_the_value_limit() -> None:
    document = json.dumps({f"k{i}": [i, None, "\x00"] for i in range(100_000)}).encode()
    limits = Limits()
    parsed = parse_body("application/json", document, False, limits)
    assert parsed.reached is not None and parsed.reached.limit == "waf_max_values"
    assert len(parsed.fields) == limits.waf_max_values


def test_a_chain_whose_triggers_no_step_has_is_refused() -> None:
    """A scan starts a triggered chain at its first step with a present trigger: a chain whose
    triggers are not its steps' would run off the end of its steps."""
    step = (0, Transform.URL_DECODE.value, TRANSFORMS[Transform.URL_DECODE], PERCENT)
    with pytest.raises(ValueError, match="triggers must be those of its steps"):
        _native.ValueScanner(
            [b"abc"], [8], ["k"], [1], [1], [(1, 1, AMPERSAND, [step])], reference_features, []
        )


#: Values that decode to more, wider or odder characters than they hold, or hold what C
#: strings cannot: escapes of surrogates and of the largest code points, cut-off escapes,
#: NULs, lone surrogates, and the empty value.
HOSTILE_VALUES = [
    "",
    "\x00",
    "\x00" * 4096,
    "\ud800",
    "\udfff\ud800",
    "%ud800%udfff",
    "%uD83D%uDE00",
    "%UFFFF%u",
    "%u%U%u0",
    "%ed%a0%80%f4%90%80%80%c0%af",
    "%f0%9f%98%80" * 3000,
    "%" * 5000,
    "%25" * 5000,
    "%252525252541",
    "\\uD800\\uDFFF\\u",
    "\\x\\x4\\777\\0\\00\\000\\0000\\",
    "\\" * 4097,
    "\\u00e9" * 3000,
    "&#xD800;&#1114112;&#x110000;&#0;&#",
    "/*!" + "9" * 50 + "*/--#\n/*",
    "/*" * 3000,
    "\U0010ffff\u0085\u00ad\ufeff\u2028" * 500,
    "ＳＥＬＥＣＴ ﬁ İ ß \u3000 \u00a0",
    "a" * MIB,
    "%u0041" * (MIB // 6),
    "\\u0041" * (MIB // 6),
    "é%41\\x41 /*x*/" * (MIB // 16),
    "&ſol;&İ;&ıı;&SOL;&lt&#x&#&",
    "&" * 100_000,
    "&amp" * (MIB // 4),
    "&#" + "9" * 100_000 + ";&#x" + "f" * 100_000,
    "&CounterClockwiseContourIntegral;&notinva&" * 3000,
    "&" + "a" * 31 + "é;" + "&" + "\U0010ffff" * 40,
    "Q2FsbA" * (MIB // 6) + "==",
    "\u3000" + "-_" * 1000 + "=\x1c",
]


@pytest.mark.parametrize("value", HOSTILE_VALUES, ids=range(len(HOSTILE_VALUES)))
def test_hostile_values_transform_and_scan_as_the_reference_does(value: str) -> None:
    for transform in Transform:
        reference = TRANSFORMS[transform]
        assert _native.transform(transform.value, value, reference) == reference(value), transform
    assert _native.features(value, ALL_FEATURES, reference_features) == reference_features(
        value, ALL_FEATURES
    )
    native, reference_scanner = scanners()
    assert native.scan_value(value, 0xFFFF) == reference_scanner.scan_value(value, 0xFFFF)


@pytest.mark.parametrize("letter", ["ſ", "ı", "İ", "\u212a"])
def test_a_loose_reference_with_a_letter_only_unicode_folds_to_ascii_is_left_as_written(
    letter: str,
) -> None:
    """A caseless Unicode regex takes `ſ` for `s` (and `ı`, `İ` for `i`); the loose references
    are decoded in ASCII case only, so `&ſol;` stays as written instead of failing the lookup
    of its name (which made the WAF's outcome `errored`, and let the request through)."""
    value = f"&{letter}ol;&sem{letter};&{letter}emi;"
    reference = TRANSFORMS[Transform.HTML_ENTITY_DECODE]
    assert reference(value) == value
    assert _native.transform("html_entity_decode", value, reference) == value
    request = Request("GET", "/", "q=" + value, (), b"")
    native, reference_scanner = request_scanners()
    limits = Limits()
    expected = reference_scanner.inspect(RequestView(request, limits=limits))
    assert native.inspect(RequestView(request, limits=limits)) == expected


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"\\ud800": "\\udfff", "a\\u0000b": [%s]}' % b"1," * 200 + b"1]}"),
        ("application/json", b'{"a": "%s"}' % (b"\\u0000" * 100_000)),
        ("application/x-www-form-urlencoded", b"%u0000=%ud800&" * 5_000),
        ("application/x-www-form-urlencoded", b"\xff\xfe\x00=\xed\xa0\x80&" * 5_000),
        ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=x\r\n"),
        ("text/plain", b"\x00\xc0\xaf%c0%af\\x00" * (MIB // 16)),
    ],
    ids=["json-surrogates", "json-nuls", "form-escapes", "form-bad-utf8", "multipart-cut", "raw"],
)
def test_hostile_bodies_get_the_references_hits_and_work(content_type: str, body: bytes) -> None:
    request = Request("POST", "/", "", (("Content-Type", content_type),), body)
    native, reference = request_scanners()
    native._clear_memos()
    reference._clear_memos()
    limits = Limits()
    expected = reference.inspect(RequestView(request, limits=limits))
    assert native.inspect(RequestView(request, limits=limits)) == expected


#: JSON bodies an attacker can send to the compiled walk (`_jsonwalk.c`): nesting past its own
#: stack and past the parser's, numbers Python refuses or rounds, strings and keys of a
#: mebibyte and more, broken UTF-8 far into a body, objects with many keys and a repeated one.
HOSTILE_JSON = {
    "open-1e6": b"[" * 1_000_000,
    "nested-1e6": b"[" * 1_000_000 + b"]" * 1_000_000,
    "objects-1e5": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "nested-511": b'["x",' * 511 + b"1" + b"]" * 511,
    "nested-512": b'["x",' * 512 + b"1" + b"]" * 512,
    "nested-513": b'["x",' * 513 + b"1" + b"]" * 513,
    "nested-513-cut": b'["x",' * 513 + b"1" + b"]" * 512,
    "int-4300": b"[" + b"7" * 4300 + b"]",
    "int-4301": b"[1, " + b"7" * 4301 + b"]",
    "int-1e7-past-limit": b"[" + b"0," * 20_000 + b"7" * 10_000_000 + b"]",
    "float-1e6-digits": b"[0." + b"3" * 1_000_000 + b"e-99999, 1" + b"0" * 400 + b".5e400]",
    "numbers-16MiB": b"[" + b"-1234567.5e-3," * (16 * MIB // 14) + b"0]",
    "string-32MiB": b'{"k": "' + b"\\u00e9\\ud800" * (MIB // 2) + b"x" * 16 * MIB + b'"}',
    "key-8MiB": b'{"' + b"k" * 8 * MIB + b'": {"' + b"k" * 8 * MIB + b'": 1}}',
    "bad-utf8-at-the-end": b'{"a": "' + b"x" * MIB + b'\xff"}',
    "surrogate-bytes": b'{"\xed\xa0\x80": "\xed\xbf\xbf\xf4\x8f\xbf\xbf"}',
    "keys-1e5": b"{" + b",".join(b'"k%d": %d' % (i, i) for i in range(100_000)) + b"}",
    "keys-1e5-repeated": b"{"
    + b",".join(b'"k%d": %d' % (i % 99_999, i) for i in range(100_000))
    + b"}",
    "repeated-key-then-nested-1e5": b'{"a": 1, "a": 2, "b": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
    "repeated-key-then-cut": b'{"a": 1, "a": 2, "b": ' + b"[" * 100_000 + b"]" * 99_999 + b"}",
    "repeated-key-past-the-depth-limit": b"[" * 64 + b'{"a": 1, "a": 2}' + b"]" * 64,
    "utf-32": '{"a": ["\U0001f600", "\\ud83d\\ude00"]}'.encode("utf-32"),
    "long-key-over-a-long-array": b'{"' + b"k" * 60_000 + b'": [' + b"1," * 30_000 + b"1]}",
}


@pytest.mark.parametrize("body", HOSTILE_JSON.values(), ids=HOSTILE_JSON.keys())
def test_hostile_json_bodies_parse_as_the_reference_parses_them(body: bytes) -> None:
    limits = Limits()
    assert parse_body("application/json", body, False, limits) == parse_json_reference(body, limits)


@pytest.mark.slow
def test_a_hundred_mebibytes_of_numbers_is_walked_to_the_value_limit() -> None:
    """Past the value limit the walk only checks the rest is JSON: 100 MB of numbers give the
    fields and limit that the first 2 MB give, in counted work and no more memory than the
    text."""
    unit = b"-1234567.5e-3,"
    limits = Limits()
    small = b"[" + unit * (2 * MIB // len(unit)) + b"0]"
    huge = b"[" + unit * (100 * 1_000_000 // len(unit)) + b"0]"
    expected = parse_json_reference(small, limits)
    assert expected.reached is not None and expected.reached.limit == "waf_max_values"
    assert parse_body("application/json", huge, False, limits) == expected
    assert parse_body("application/json", huge[:-1], False, limits).format is BodyFormat.MALFORMED


@pytest.mark.parametrize(
    ("name", "walked"),
    [
        ("open-1e6", JsonWalk.INVALID),
        ("nested-1e6", JsonWalk.TOO_DEEP),
        ("objects-1e5", JsonWalk.TOO_DEEP),
        ("nested-512", JsonWalk.TOO_DEEP),
        ("nested-513", JsonWalk.TOO_DEEP),
        ("nested-513-cut", JsonWalk.INVALID),
        ("int-4300", JsonWalk.COMPLETE),
        ("int-4301", JsonWalk.INVALID),
        ("int-1e7-past-limit", JsonWalk.INVALID),
        ("float-1e6-digits", JsonWalk.COMPLETE),
        ("numbers-16MiB", JsonWalk.TOO_MANY),
        ("string-32MiB", JsonWalk.COMPLETE),
        ("key-8MiB", JsonWalk.TOO_LONG),
        ("bad-utf8-at-the-end", JsonWalk.INVALID),
        ("surrogate-bytes", JsonWalk.COMPLETE),
        ("keys-1e5", JsonWalk.TOO_MANY),
        ("keys-1e5-repeated", JsonWalk.UNDECIDED),
        ("repeated-key-then-nested-1e5", JsonWalk.UNDECIDED),
        ("repeated-key-then-cut", JsonWalk.INVALID),
        ("repeated-key-past-the-depth-limit", JsonWalk.TOO_DEEP),
        ("utf-32", JsonWalk.COMPLETE),
        ("long-key-over-a-long-array", JsonWalk.TOO_LONG),
    ],
)
def test_the_walk_decides_hostile_json_bodies_itself_unless_a_key_repeats(
    name: str, walked: JsonWalk
) -> None:
    """At any depth the walk decides whether a body is JSON and how deep it nests; only the
    fields of a JSON body with a repeated key (above the depth limit) are left to the
    document."""
    limits = Limits()
    _, status = json_fields(
        HOSTILE_JSON[name],
        limits.waf_max_values,
        limits.waf_max_body_depth,
        limits.waf_max_transformed_chars,
    )
    assert JsonWalk(status) is walked


def test_a_long_key_over_a_long_array_stops_at_the_characters_limit() -> None:
    """Each element's path repeats its array's key: 120 KB of body would make 16,384 paths of
    60,000 characters (a gibibyte). The paths stop at `waf_max_transformed_chars` in all, and
    the body is an over-limit outcome that names that limit."""
    limits = Limits()
    parsed = parse_body(
        "application/json", HOSTILE_JSON["long-key-over-a-long-array"], False, limits
    )
    assert parsed.reached is not None and parsed.reached.limit == "waf_max_transformed_chars"
    assert sum(len(name) for name, _ in parsed.fields) <= limits.waf_max_transformed_chars
    assert len(parsed.fields) == limits.waf_max_transformed_chars // 60_002
