"""Evaluation against requests: fields, CEL's semantics, and the errors."""

from __future__ import annotations

from typing import Any

import pytest

from failsmall.engine.expr import ExpressionEvalError, compile_expression
from failsmall.engine.request import Request, RequestView

REQUEST = Request(
    method="POST",
    path="/admin/a%20b",
    query="id=1&id=2&q=x%20y",
    headers=(
        ("Host", "example.com"),
        ("User-Agent", "curl/8.1"),
        ("Cookie", "session=abc; theme=dark"),
        ("X-Forwarded-For", "1.1.1.1"),
        ("x-forwarded-for", "2.2.2.2"),
    ),
    body=b'{"user": "\xc3\xa9"}',
    body_truncated=True,
    client_ip="10.1.2.3",
)


def view(**changes: Any) -> RequestView:
    return RequestView(REQUEST, **changes)


def evaluate(source: str, request_view: RequestView | None = None, **lists: list[str]) -> Any:
    expression = compile_expression(source, lists, condition=False)
    return expression.evaluate_value(request_view or view())


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("http.request.method", "POST"),
        ("http.host", "example.com"),
        ("http.request.uri", "/admin/a b?id=1&id=2&q=x%20y"),
        ("http.request.uri.path", "/admin/a b"),
        ("raw.http.request.uri", "/admin/a%20b?id=1&id=2&q=x%20y"),
        ("raw.http.request.uri.path", "/admin/a%20b"),
        ("http.request.uri.query", "id=1&id=2&q=x%20y"),
        ("http.request.uri.args", {"id": ["1", "2"], "q": ["x y"]}),
        ("http.request.headers['x-forwarded-for']", ["1.1.1.1", "2.2.2.2"]),
        ("http.request.headers.names[1]", "user-agent"),
        ("http.request.cookies.session", ["abc"]),
        ("http.request.body.raw", '{"user": "é"}'),
        ("http.request.body.truncated", True),
        ("http.request.body.size", 14),
        ("http.user_agent", "curl/8.1"),
        ("ip.src", "10.1.2.3"),
    ],
)
def test_fields_read_the_request(source: str, value: Any) -> None:
    assert evaluate(source) == value


def test_bot_score_and_waf_hits_come_from_the_view() -> None:
    scored = view(bot_score=12, signature_hits=frozenset({"xss-2", "sqli-1"}))
    assert evaluate("bot.score", scored) == 12
    assert evaluate("waf.hits", scored) == ["sqli-1", "xss-2"]


def test_an_unscored_request_makes_bot_score_an_error() -> None:
    with pytest.raises(ExpressionEvalError, match="not scored"):
        compile_expression("bot.score < 30").evaluate(view())


def test_and_or_absorb_errors_like_cel() -> None:
    unscored = view()
    assert evaluate("bot.score < 30 && false", unscored) is False
    assert evaluate("false && bot.score < 30", unscored) is False
    assert evaluate("bot.score < 30 || true", unscored) is True
    assert evaluate("true || bot.score < 30", unscored) is True
    with pytest.raises(ExpressionEvalError):
        evaluate("bot.score < 30 && true", unscored)
    with pytest.raises(ExpressionEvalError):
        evaluate("false || bot.score < 30", unscored)
    assert evaluate("1 && false") is False
    with pytest.raises(ExpressionEvalError, match="no such overload"):
        evaluate("true && 1")


def test_evaluate_requires_a_boolean_result() -> None:
    expression = compile_expression('http.request.cookies.session[0] == "abc" ? 1 : true')
    with pytest.raises(ExpressionEvalError, match="not a bool"):
        expression.evaluate(view())


@pytest.mark.parametrize(
    ("source", "value"),
    [
        ("-5 / 2", -2),
        ("-5 % 3", -2),
        ("5 % -3", 2),
        ("1 == 1.0", True),
        ("1 == 1u", True),
        ("true == 1", False),
        ("[1, 2] == [1, 2.0]", True),
        ("{'a': 1} == {'a': 1.0}", True),
        ("'a' < 'b'", True),
        ("1.0 / 0.0", float("inf")),
        ("size('héllo')", 6),
        ("string(1.5e-7)", "0.00000015"),
        ("string(100.0)", "100"),
        ("int('-12')", -12),
        ("int(-1.9)", -1),
        ("double('inf')", float("inf")),
        ("[1, 0].exists(x, 1 / x == 1)", True),
        ("[1, 2, 3].filter(x, x > 1).map(x, x * 10)", [20, 30]),
        ("[1, 2, 3].map(x, x > 1, x * 10)", [20, 30]),
        ("[1, 2].exists_one(x, x > 1)", True),
        ("{'a': 1}.all(k, k == 'a')", True),
        ("'a' in {'a': 1}", True),
        ("2 in [1, 2.0]", True),
        ("r'a\\d' + \"\\x41\\101\\u00e9\"", "a\\dAAé"),
        ("b'\\xff' == b'\\377'", True),
        ("-(-9223372036854775807 - 1)", -9223372036854775808),
        ("true ? 1 : 'a'", 1),
        ("{'a': true}['a']", True),
        ("{'a': {'b': 2}}.a.b", 2),
    ],
)
def test_cel_semantics(source: str, value: Any) -> None:
    result = evaluate(source)
    assert result == value
    assert type(result) is type(value)


@pytest.mark.parametrize(
    "source",
    [
        "1 / 0",
        "1 % 0",
        "9223372036854775807 + 1",
        "1u - 2u",
        "1 + 1u",
        "1 + 1.0",
        "5.5 % 2.0",
        "[1][1]",
        "[1][-1]",
        "{'a': 1}['b']",
        "{1: 'x'}[1u]",
        "{1: 'x'}[1.0]",
        "'abc'[0]",
        "'a' in 'abc'",
        "[0, 1].exists(x, 1 / x == 1)",
        "[1, 2].exists(x, x)",
        "int('1.0')",
        "int(' 1')",
        "int(9.3e18)",
        "double(' 1')",
        "string(true)",
        "!1",
        "1 ? 2 : 3",
        "double('nan') < 1.0",
        "http.request.cookies.missing[0] == 'x'",
        "http.request.headers.names.size() > 2 && http.request.headers['nope'][0] == ''",
        "size(1)",
        "has(http.request.headers.names.x)",
    ],
)
def test_runtime_errors(source: str) -> None:
    with pytest.raises(ExpressionEvalError):
        evaluate(source)


def test_ip_functions() -> None:
    lists = {"office": ["10.0.0.0/8", "2001:db8::1"], "other": ["192.168.0.1"]}
    assert evaluate('ip_in_list(ip.src, "office")', **lists) is True
    assert evaluate('ip_in_list(ip.src, "other")', **lists) is False
    assert evaluate('ip_in_list("2001:db8::1", "office")', **lists) is True
    assert evaluate('ip_in_cidr(ip.src, "10.1.0.0/16")') is True
    assert evaluate('ip_in_cidr("not an address", "0.0.0.0/0")') is False
    broken = RequestView(Request("GET", "/", client_ip="garbage"))
    assert evaluate('ip_in_cidr(ip.src, "0.0.0.0/0")', broken) is False
    with pytest.raises(ExpressionEvalError, match="must be a string"):
        evaluate('ip_in_cidr(1, "0.0.0.0/0")')


def test_matches_is_a_search_and_dollar_means_the_end_of_the_text() -> None:
    assert evaluate('"xadminx".matches("admin")') is True
    assert evaluate('"admin\\n".matches("^admin$")') is False
    assert evaluate('"admin".matches("^admin$")') is True
    assert evaluate('"a$b".matches("a[$]b")') is True
    assert evaluate('"a\\nb".matches("(?m)a$")') is True


@pytest.mark.parametrize(
    ("text", "pattern", "matched"),
    [
        ("a\u0301", "^\\w+$", True),  # a combining mark is a word character in CEL
        ("\x1c", "\\s", False),  # a file separator is not whitespace in CEL
        ("\u00a0", "\\s", True),
        ("\u212a", "(?i)k", True),  # the Kelvin sign folds to k
        ("é", "\\pL", True),
    ],
)
def test_patterns_mean_what_they_mean_in_cel(text: str, pattern: str, matched: bool) -> None:
    request_view = RequestView(Request("GET", "/", body=text.encode()))
    source = f"http.request.body.raw.matches({pattern!r})"
    assert compile_expression(source).evaluate(request_view) is matched


def test_fields_are_read_lazily() -> None:
    request_view = view()
    compile_expression('http.request.method == "POST"').evaluate(request_view)
    # a derived field not computed yet is None in its slot
    assert request_view._cookies is None and request_view._body_text is None
    compile_expression("has(http.request.cookies.session)").evaluate(request_view)
    assert request_view._cookies is not None and request_view._body_text is None


def test_an_expression_is_reusable_across_requests_and_nested_scopes() -> None:
    expression = compile_expression(
        'http.request.headers.names.exists(n, [n, "z"].exists(n, n == "host") && n != "")'
    )
    assert expression.evaluate(view()) is True
    assert expression.evaluate(RequestView(Request("GET", "/"))) is False
