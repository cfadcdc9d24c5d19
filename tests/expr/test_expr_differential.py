"""Our evaluator against the reference CEL implementation: random expressions x random requests.

Both must produce the same value, or both must fail.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from failsmall.engine.expr import ExpressionError, ExpressionEvalError, compile_expression
from failsmall.engine.expr.reference import (
    ReferenceEvalError,
    reference_evaluate,
    reference_parses,
)
from failsmall.engine.request import Request, RequestView

from .strategies import IP_LISTS, expressions, requests

_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same_value(ours: Any, theirs: Any) -> bool:
    """Equality of results as the reference returns them (uint comes back as int)."""
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return type(ours) is type(theirs) and ours == theirs
    if isinstance(ours, float) and isinstance(theirs, float):
        return (math.isnan(ours) and math.isnan(theirs)) or ours == theirs
    if isinstance(ours, list) and isinstance(theirs, list):
        return len(ours) == len(theirs) and all(map(same_value, ours, theirs))
    if isinstance(ours, dict) and isinstance(theirs, dict):
        return ours.keys() == theirs.keys() and all(same_value(ours[k], theirs[k]) for k in ours)
    if isinstance(ours, int) and isinstance(theirs, int):
        return ours == theirs
    return type(ours) is type(theirs) and ours == theirs


def check_agreement(source: str, view: RequestView) -> None:
    try:
        expression = compile_expression(source, IP_LISTS, condition=False)
    except ExpressionError as exc:
        # The generator can write what CEL's grammar forbids (e.g. !-x): both must refuse it.
        assert not reference_parses(source), f"{source!r}: only we refuse: {exc}"
        return
    ours: Any
    theirs: Any
    try:
        ours = expression.evaluate_value(view)
    except ExpressionEvalError as exc:
        ours = exc
    fresh = RequestView(view.request, view.bot_score, view.signature_hits)
    try:
        theirs = reference_evaluate(expression, fresh)
    except ReferenceEvalError as exc:
        theirs = exc
    if isinstance(ours, Exception) or isinstance(theirs, Exception):
        assert isinstance(ours, Exception) and isinstance(theirs, Exception), (
            f"{source!r}: ours {ours!r}, reference {theirs!r}"
        )
        return
    assert same_value(ours, theirs), f"{source!r}: ours {ours!r}, reference {theirs!r}"


@pytest.mark.parametrize(
    "kind", ["bool", "int", "string", "double", "uint", "bytes", "strings", "ints"]
)
def test_random_expressions_agree_with_the_reference(kind: str) -> None:
    @_SETTINGS
    @given(source=expressions(kind), view=requests())
    def agree(source: str, view: RequestView) -> None:
        check_agreement(source, view)

    agree()


@_SETTINGS
@given(view=requests())
@example(view=RequestView(Request("GET", "/a"), bot_score=None))
def test_rule_shaped_expressions_agree(view: RequestView) -> None:
    for source in (
        'http.request.uri.path.startsWith("/a") && http.request.method == "GET"',
        "bot.score < 30 || http.request.body.truncated",
        'has(http.request.cookies.session) && http.request.cookies.session[0] != ""',
        '"a" in http.request.uri.args && http.request.uri.args["a"].exists(x, x.matches("1"))',
        'http.request.headers.names.exists_one(x, x == "host")',
        'ip_in_list(ip.src, "office") ? waf.hits.size() > 0 : http.host == "example.com"',
        "size(http.request.body.raw) >= http.request.body.size / 2",
        'http.request.uri == http.request.uri.path + (http.request.uri.query == "" ? "" : "?" '
        "+ http.request.uri.query)",
    ):
        check_agreement(source, view)


_PATTERNS = [
    "^a$", "a$", "[$]", r"\$", "(?m)a$", r"\w+", r"^\w+$", r"\W", r"\s", r"\S", r"\b", r"\B",
    r"\d", r"(?i)k", r"(?i)ß", r"(?i)[a-z]", "^.$", "(?s)^.$", r"\pL", "[[:alpha:]]", r"\z",
]  # fmt: skip
_TRICKY_TEXT = st.text(
    st.one_of(
        st.sampled_from(
            ["a", "k", "K", "\u212a", "ß", "\n", "\x1c", "\u00a0", "\u0301", "1", "١", "$"]
        ),
        st.characters(),
    ),
    max_size=6,
)


@given(text=_TRICKY_TEXT, pattern=st.sampled_from(_PATTERNS))
@settings(max_examples=300, deadline=None)
def test_patterns_match_like_the_reference(text: str, pattern: str) -> None:
    view = RequestView(Request("GET", "/", body=text.encode("utf-8", "surrogatepass")))
    check_agreement(f"http.request.body.raw.matches({pattern!r})", view)


@pytest.mark.slow
@pytest.mark.timeout(1200)  # 5000 examples: minutes of CPU on a loaded machine, bounded work
@pytest.mark.parametrize(
    "kind", ["bool", "int", "string", "double", "uint", "bytes", "strings", "ints"]
)
def test_many_random_expressions_agree_with_the_reference(kind: str) -> None:
    @settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
    @given(source=expressions(kind, depth=4), view=requests())
    def agree(source: str, view: RequestView) -> None:
        check_agreement(source, view)

    agree()
