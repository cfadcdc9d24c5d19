"""The normalized path: what rules, routes and rate-limit keys read, against what real
servers resolve."""

from __future__ import annotations

import posixpath
from http.server import SimpleHTTPRequestHandler
from types import SimpleNamespace
from urllib.parse import quote, unquote, urljoin, urlsplit

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from yarl import URL

from failsmall.engine import Decision, Engine
from failsmall.engine.expr import compile_expression
from failsmall.engine.paths import normalize_path
from failsmall.engine.request import Request, RequestView
from failsmall.engine.routing import Route, Routed, Unrouted
from tests.engine.factory import bundle, request


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("/", "/"),
        ("", "/"),
        ("*", "*"),
        ("/admin", "/admin"),
        ("/admin/", "/admin/"),
        ("/%61dmin", "/admin"),
        ("/%61%64%6D%69%6E", "/admin"),
        ("/./admin", "/admin"),
        ("//admin", "/admin"),
        ("///admin//users//", "/admin/users/"),
        ("/x/../admin", "/admin"),
        ("/x/%2e%2e/admin", "/admin"),
        ("/x/%2E%2E%2Fadmin", "/admin"),
        ("/x/..%2fadmin", "/admin"),
        ("/%2e/admin", "/admin"),
        ("/../../admin", "/admin"),
        ("/a/b/../../admin", "/admin"),
        ("/admin/.", "/admin/"),
        ("/admin/x/..", "/admin/"),
        ("/..", "/"),
        ("/x/..;/admin", "/admin"),
        ("/admin/..;/admin", "/admin"),
        ("/.;/admin", "/admin"),
        ("/admin;jsessionid=1", "/admin"),
        ("/admin;a=1/users;b=2/", "/admin/users/"),
        ("/admin%3Bx", "/admin"),
        ("/;x/admin", "/admin"),
        ("/admin/;x", "/admin/"),
        ("/x\\..\\admin", "/admin"),
        ("/x/..%5cadmin", "/admin"),
        ("/a%2Fb", "/a/b"),
        ("/caf%C3%A9", "/café"),
        ("/caf%C3", "/caf\ufffd"),
        ("/admin%00", "/admin\x00"),
        ("/100%25", "/100%25"),
        ("/%2561dmin", "/%2561dmin"),
        ("/100%", "/100%25"),
        ("/%zz/%4", "/%25zz/%254"),
        ("/.well-known/x", "/.well-known/x"),
        ("/a/...", "/a/..."),
        ("admin", "/admin"),
    ],
)
def test_normalized_paths(raw: str, normalized: str) -> None:
    assert normalize_path(raw) == normalized


# Paths built from the characters and escapes that normalization is about.
_PIECES = st.sampled_from(
    ["/", "a", "admin", ".", "..", "%2e", "%2E", "%2f", "%5c", "\\", ";", ";x", "%", "%25",
     "%61", "%2561", "%c3", "%a9", "é", "%00", "?", " ", "%20"]
)  # fmt: skip
PATHS = st.lists(_PIECES, max_size=12).map(lambda pieces: "/" + "".join(pieces))


@given(PATHS)
def test_normalization_is_idempotent(raw: str) -> None:
    once = normalize_path(raw)
    assert normalize_path(once) == once


@given(st.one_of(PATHS, st.text(max_size=20)))
def test_the_normalized_path_has_no_empty_or_dot_segments(raw: str) -> None:
    path = normalize_path(raw)
    if raw == "*":
        return
    assert path.startswith("/")
    assert "//" not in path
    assert "\\" not in path
    assert ";" not in path
    assert not any(segment in (".", "..") for segment in path.split("/"))
    assert not path.endswith(("/.", "/.."))


def _served_file(raw: str) -> str:
    """The path stdlib's `http.server` file server maps `raw` to, relative to its root."""
    handler = SimpleNamespace(directory="/srv")
    translated: str = SimpleHTTPRequestHandler.translate_path(handler, raw)  # type: ignore[arg-type]
    return translated.removeprefix("/srv").replace("\\", "/") or "/"


def _resolvers(raw: str) -> dict[str, str]:
    """What real path code makes of `raw`: aiohttp's URL parser, the stdlib file server,
    RFC 3986 reference resolution (`urljoin`) after decoding, and posix path cleaning."""
    return {
        "yarl": URL.build(path=raw, encoded=True).path,
        "http.server": _served_file(raw),
        "urljoin": urlsplit(urljoin("http://origin/", quote(unquote(raw), safe="/;"))).path,
        "normpath": posixpath.normpath(unquote(raw)),
    }


_EVASIONS = st.lists(
    st.sampled_from(["/", "//", "/./", "/x/../", "/%2e/", "/x/%2e%2e/", "/x/..;/", "/.;/"]),
    min_size=1,
    max_size=3,
)


@st.composite
def disguised_admin(draw: st.DrawFn) -> str:
    """`/admin` with dot segments and extra slashes in front and letters percent-encoded."""
    prefix = "".join(draw(_EVASIONS))
    word = "".join(f"%{ord(c):02x}" if draw(st.booleans()) else c for c in "admin")
    return prefix.rstrip("/") + "/" + word


@given(disguised_admin())
def test_a_path_a_server_resolves_to_admin_is_matched_by_a_rule_for_admin(raw: str) -> None:
    resolved = _resolvers(raw)
    assume("/admin" in resolved.values())
    rule = compile_expression('http.request.uri.path == "/admin"')
    view = RequestView(Request("GET", raw))
    assert rule.evaluate(view), f"{raw!r} resolves to /admin by {resolved}"


@given(PATHS)
def test_where_real_servers_agree_normalization_agrees(raw: str) -> None:
    # A backslash, even encoded, is a separator to some origins (see `normalize_path`), not to
    # these resolvers.
    assume(
        "%" not in unquote(raw) and "\\" not in unquote(raw) and ";" not in raw and "?" not in raw
    )
    resolved = _resolvers(raw)
    cleaned = resolved["normpath"]
    assume(cleaned == resolved["http.server"] and not cleaned.startswith("//"))
    assert normalize_path(raw).rstrip("/") == cleaned.rstrip("/")


def test_raw_fields_keep_the_path_as_received() -> None:
    view = RequestView(Request("GET", "/x/../%61dmin", query="a=%2e"))
    read = {
        field: compile_expression(field, condition=False).evaluate_value(view)
        for field in (
            "http.request.uri.path",
            "http.request.uri",
            "raw.http.request.uri.path",
            "raw.http.request.uri",
        )
    }
    assert read == {
        "http.request.uri.path": "/admin",
        "http.request.uri": "/admin?a=%2e",
        "raw.http.request.uri.path": "/x/../%61dmin",
        "raw.http.request.uri": "/x/../%61dmin?a=%2e",
    }


def test_routes_match_the_normalized_path() -> None:
    engine = Engine.build(
        bundle(
            origins=[
                {"id": "web", "url": "http://127.0.0.1:9"},
                {"id": "admin", "url": "http://127.0.0.1:10"},
            ],
            routes=[{"origin": "admin", "path_prefix": "/admin/"}, {"origin": "web"}],
        )
    )
    state = engine.new_state()

    def origin(target: Engine, path: str) -> Route:
        return target.evaluate(request(path), state).route

    for raw in ("/admin/x", "/%61dmin/x", "//admin/x", "/static/../admin/x", "/a/..;/admin/x"):
        assert origin(engine, raw) == Routed(engine.bundle.origins[1]), raw
    assert origin(engine, "/%2561dmin/x") == Routed(engine.bundle.origins[0])
    only_admin = Engine.build(
        bundle(
            origins=[{"id": "admin", "url": "http://127.0.0.1:10"}],
            routes=[{"origin": "admin", "path_prefix": "/admin/"}],
        )
    )
    unrouted = origin(only_admin, "/admin/../etc")
    assert isinstance(unrouted, Unrouted)
    assert "path '/admin/../etc' (resolved '/etc')" in unrouted.reason


def test_a_path_rate_limit_counts_every_spelling_of_one_path() -> None:
    limit = [
        {
            "id": "login",
            "expression": 'http.request.uri.path == "/login"',
            "key": ["ip", "path"],
            "requests": 3,
            "period_s": 60,
        }
    ]
    engine = Engine.build(bundle(rate_limits=limit))
    state = engine.new_state()
    spellings = ["/login", "/%6cogin", "//login", "/./login", "/x/../login", "/%6C%6F%67%69%6E"]
    verdicts = [engine.evaluate(request(raw, now=10.0), state).decision for raw in spellings]
    assert verdicts == [Decision.ALLOW] * 3 + [Decision.BLOCK] * 3
