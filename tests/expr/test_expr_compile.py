"""Compile-time behaviour: what is accepted, what is refused, and how the refusal reads."""

from __future__ import annotations

import pytest

from failsmall.engine.expr import FIELDS, ExpressionError, compile_expression


def refusal(source: str, **lists: list[str]) -> str:
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source, lists)
    return str(caught.value)


def test_fields_lists_the_registry_paths_an_expression_reads() -> None:
    expression = compile_expression(
        'http.request.uri.path.startsWith("/a") && bot.score < 30 && '
        'http.request.headers["host"][0] == "x" && has(http.request.cookies.s)'
    )
    assert expression.fields == frozenset(
        {"http.request.uri.path", "bot.score", "http.request.headers", "http.request.cookies"}
    )


def test_the_longest_registered_path_wins() -> None:
    assert compile_expression('http.request.uri == "/"').fields == {"http.request.uri"}
    assert compile_expression('http.request.uri.path == "/"').fields == {"http.request.uri.path"}
    assert compile_expression("size(http.request.headers.names) > 0").fields == {
        "http.request.headers.names"
    }
    # A name below a map field is a key of that map.
    assert compile_expression('http.request.headers.accept[0] == "x"').fields == {
        "http.request.headers"
    }


def test_every_field_has_a_type_and_a_description() -> None:
    for path, spec in FIELDS.items():
        assert spec.path == path
        assert spec.cel_type and spec.doc.endswith(".")


def test_unknown_field_names_the_position_and_suggests_a_field() -> None:
    message = refusal('http.request.uri.pth == "/"')
    assert "line 1, column 18" in message  # at "pth"
    assert "did you mean http.request.uri.path" in message
    message = refusal('http.requst.method == "GET"')
    assert "unknown field 'http.requst.method'" in message
    assert "http.request.method" in message


def test_a_name_that_is_no_field_or_variable_is_refused() -> None:
    assert "unknown name 'foo'" in refusal("foo == 1")
    assert "'http.request' is not a field" in refusal('http.request == "x"')


def test_selecting_into_a_string_field_is_refused() -> None:
    assert "has no field 'x'" in refusal('http.request.method.x == "GET"')


def test_syntax_errors_point_at_the_offending_token() -> None:
    message = refusal('http.request.method == "GET" &&')
    assert "column 32" in message
    assert "^" in message
    assert "unterminated string" in refusal('http.host == "abc')
    assert "empty" in refusal("   ")
    assert "reserved word" in refusal("[1].exists(var, var == 1)")


def test_int_literals_must_fit() -> None:
    assert compile_expression("-9223372036854775808 < 0").source
    assert "out of range" in refusal("9223372036854775808 > 0")
    assert "out of range" in refusal("--9223372036854775808 > 0")


def test_a_condition_must_be_boolean() -> None:
    assert "must be a condition" in refusal("http.request.uri.path")
    assert compile_expression("http.request.uri.path", condition=False).fields


def test_patterns_that_are_not_linear_time_are_refused() -> None:
    assert "linear time" in refusal(r'http.request.uri.path.matches("(a)\\1")')
    assert "linear time" in refusal('http.request.uri.path.matches("(?=a)b")')
    assert "linear time" in refusal('http.request.uri.path.matches("(?<!a)b")')
    assert "linear time" in refusal('http.request.uri.path.matches("a++")')


def test_invalid_patterns_are_refused() -> None:
    assert "pattern" in refusal('http.request.uri.path.matches("[")')
    # Accepted by Hyperscan and by Python's re, not by CEL's regex engine.
    assert "not a valid regular expression" in refusal(r'http.request.uri.path.matches("\\Z")')


def test_patterns_must_be_literals() -> None:
    assert "string literal" in refusal("http.request.uri.path.matches(http.host)")


def test_ip_lists_must_exist_and_hold_addresses() -> None:
    assert "unknown IP list 'nope'" in refusal('ip_in_list(ip.src, "nope")', office=["10.0.0.0/8"])
    assert "not an IP address" in refusal('ip_in_list(ip.src, "office")', office=["10.0.0.300"])
    assert "not an IP address" in refusal('ip_in_cidr(ip.src, "10.0.0.0/33")')
    assert "string literal" in refusal("ip_in_cidr(ip.src, http.host)")


def test_unknown_functions_and_methods_are_refused_with_the_supported_ones() -> None:
    message = refusal("sizee(http.host) == 1")
    assert "did you mean size()" in message
    assert "not available" in refusal('http.host.lowerAscii() == "a"')
    assert "unknown method" in refusal('http.host.trim() == "a"')


def test_has_on_a_field_is_refused() -> None:
    assert "always present" in refusal("has(http.request.uri.path)")


def test_comprehension_variables_cannot_shadow_fields() -> None:
    assert "taken by fields" in refusal("[1].exists(ip, ip == 1)")


def test_what_the_reference_refuses_is_refused() -> None:
    # Our parser accepts a trailing comma in a call's argument list? No: both refuse it; and the
    # reference is consulted for every expression that we accept.
    assert "expected" in refusal('http.host.startsWith("a",)')


def test_constant_errors_are_left_for_evaluation() -> None:
    # CEL reports 1 / 0 when evaluating, not when compiling; so do we.
    assert compile_expression("1 / 0 == 1 || true").source


@pytest.mark.parametrize(
    "source",
    [
        "1 + " * 3000 + "1 == 1",
        "!(" * 3000 + "true" + ")" * 3000,
        "[" * 3000 + "]" * 3000 + " == []",
        "true && " * 3000 + "true",
    ],
)
def test_expressions_too_deep_for_the_stack_are_refused_with_a_clear_error(source: str) -> None:
    assert "nests" in refusal(source)


def test_long_but_reasonable_chains_compile() -> None:
    assert compile_expression("true && " * 150 + "true").source
    assert compile_expression("(" * 30 + "true" + ")" * 30).source
