"""The path prefixes read off an expression's syntax are a promise: on a path that starts with
none of them, the expression is false (never true, never an error), and the index built from
them selects exactly the items whose expressions are not false on the path."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine.expr import ExpressionEvalError, compile_expression
from failsmall.engine.path_index import PathIndex
from failsmall.engine.request import Request, RequestView

PATH = "http.request.uri.path"
PATHS = ["/", "/a", "/ab", "/a/b", "/admin", "/administrator", "/api/v1", "/login", "/x", ""]
# Conditions on the path, and others that the prefixes must see through or give up on.
ATOMS = [
    *(f'{PATH}.startsWith("{p}")' for p in PATHS),
    *(f'{PATH} == "{p}"' for p in PATHS[:6]),
    *(f'"{p}" == {PATH}' for p in PATHS[3:6]),
    f'{PATH} in ["/a", "/login"]',
    f"{PATH} in []",
    f'{PATH}.endsWith("b")',
    f'{PATH}.contains("dm")',
    f'{PATH} != "/a"',
    f'!{PATH}.startsWith("/a")',
    'http.request.method == "POST"',
    'http.request.headers["x-missing"][0] == "1"',  # an error
    'http.request.uri.args["q"][0]',  # a string when q is present, not a bool
    "bot.score < 30",  # an error without a bot score
    "true",
    "false",
]


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> str:
    if depth >= 3 or draw(st.booleans()):
        return draw(st.sampled_from(ATOMS))
    op = draw(st.sampled_from(["&&", "||"]))
    return f"({draw(expressions(depth + 1))}) {op} ({draw(expressions(depth + 1))})"


def view(path: str, query: str) -> RequestView:
    return RequestView(Request("GET", path, query))


@settings(max_examples=800, deadline=None)
@given(
    source=expressions(),
    path=st.sampled_from([*PATHS, "/ad", "/apix", "/b/a", "/a%2fb", "/login/"]),
    query=st.sampled_from(["", "q=1"]),
)
def test_an_expression_is_false_on_a_path_none_of_its_prefixes_starts(
    source: str, path: str, query: str
) -> None:
    expression = compile_expression(source, condition=False)
    prefixes = expression.path_prefixes
    request = view(path, query)
    if prefixes is None or any(request.normalized_path.startswith(p) for p in prefixes):
        return
    assert expression.evaluate_value(request) is False


def test_prefixes_are_read_off_the_syntax() -> None:
    def prefixes(source: str) -> tuple[str, ...] | None:
        return compile_expression(source).path_prefixes

    assert prefixes(f'{PATH}.startsWith("/api/")') == ("/api/",)
    assert prefixes(f'{PATH} == "/login" && http.request.method == "POST"') == ("/login",)
    assert prefixes(f'bot.score < 30 && {PATH} == "/login"') == ("/login",)
    assert prefixes(f'{PATH}.startsWith("/a") || {PATH} in ["/b", "/c"]') == ("/a", "/b", "/c")
    assert prefixes(f'{PATH}.startsWith("/a") || bot.score < 30') is None
    assert prefixes(f'!{PATH}.startsWith("/a")') is None
    assert prefixes(f'raw.{PATH}.startsWith("/a")') is None
    assert prefixes('ip_in_cidr(ip.src, "10.0.0.0/8")') is None


@settings(max_examples=400, deadline=None)
@given(
    sources=st.lists(expressions(), max_size=6),
    path=st.sampled_from([*PATHS, "/ad", "/apix", "/b/a", "/login/"]),
)
def test_the_index_selects_every_item_that_may_be_true_on_the_path(
    sources: list[str], path: str
) -> None:
    compiled = [compile_expression(s, condition=False) for s in sources]
    index = PathIndex.build([(i, e.path_prefixes) for i, e in enumerate(compiled)])
    kept = PathIndex.build([(i, e.path_prefixes) for i, e in enumerate(compiled)], lambda i: -1)
    request = view(path, "q=1")
    selected = index.select(request.normalized_path)
    assert list(selected) == sorted(selected)
    assert len(kept.select(request.normalized_path)) == len(compiled)
    for i, expression in enumerate(compiled):
        if i in selected:
            assert kept.select(request.normalized_path)[i] == i
            continue
        assert kept.select(request.normalized_path)[i] == -1
        try:
            assert expression.evaluate_value(request) is False
        except ExpressionEvalError as exc:  # pragma: no cover - the assertion below explains
            raise AssertionError(f"{sources[i]!r} errs on {path!r}, though left out") from exc
