"""The field registry: every name a rule expression can read, its CEL type, and how to read it.

Field names follow Cloudflare's rules language. A field is read from a `RequestView`, whose views
are computed lazily, so an expression pays only for the fields it uses.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from types import MappingProxyType
from typing import Any, Final

from failsmall.engine.request import RequestView

from .errors import ExpressionEvalError


class Kind(enum.Enum):
    """The CEL type of a value as far as the compiler knows it; `DYN` when it does not."""

    BOOL = "bool"
    INT = "int"
    UINT = "uint"
    DOUBLE = "double"
    STRING = "string"
    BYTES = "bytes"
    NULL = "null"
    LIST = "list"
    MAP = "map"
    STRING_MAP = "map<string, list<string>>"
    DYN = "dyn"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One registered field: its dotted path, CEL type, a one-line description, and its reader."""

    path: str
    cel_type: str
    kind: Kind
    doc: str
    read: Callable[[RequestView], Any]


def _bot_score(view: RequestView) -> int:
    score = view.bot_score
    if score is None:
        raise ExpressionEvalError(
            "bot.score has no value: this request was not scored; "
            "a rule that reads bot.score runs only on scored requests"
        )
    return score


def _waf_hits(view: RequestView) -> list[str]:
    return sorted(view.signature_hits)


def _body_size(view: RequestView) -> int:
    return len(view.request.body)


_STRING_MAP: Final = "map<string, list<string>>"

_SPECS: Final = (
    FieldSpec("http.request.method", "string", Kind.STRING, "The request method, e.g. GET.",
              attrgetter("request.method")),
    FieldSpec("http.host", "string", Kind.STRING,
              "The requested host (the Host header when the request carries no host).",
              attrgetter("host")),
    FieldSpec("http.request.uri", "string", Kind.STRING,
              "The normalized path and the query as received: /path?query.",
              attrgetter("normalized_uri")),
    FieldSpec("http.request.uri.path", "string", Kind.STRING,
              "The path as the origin resolves it: percent-decoded once, dot segments removed, "
              "repeated slashes merged.", attrgetter("normalized_path")),
    FieldSpec("raw.http.request.uri", "string", Kind.STRING,
              "The path and query as received: /path?query.", attrgetter("request.uri")),
    FieldSpec("raw.http.request.uri.path", "string", Kind.STRING,
              "The path as received, still percent-encoded.", attrgetter("request.path")),
    FieldSpec("http.request.uri.query", "string", Kind.STRING,
              "The query string without the '?', as received.", attrgetter("request.query")),
    FieldSpec("http.request.uri.args", _STRING_MAP, Kind.STRING_MAP,
              "Query arguments, decoded: name -> values in order.", attrgetter("args")),
    FieldSpec("http.request.headers", _STRING_MAP, Kind.STRING_MAP,
              "Request headers: lowercase name -> values in order.", attrgetter("headers")),
    FieldSpec("http.request.headers.names", "list<string>", Kind.LIST,
              "Lowercase header names in the order received, repeats included.",
              attrgetter("header_names")),
    FieldSpec("http.request.cookies", _STRING_MAP, Kind.STRING_MAP,
              "Cookies from the Cookie headers: name -> values.", attrgetter("cookies")),
    FieldSpec("http.request.body.raw", "string", Kind.STRING,
              "The inspected body as text (invalid UTF-8 replaced), up to the WAF body buffer.",
              attrgetter("body_text")),
    FieldSpec("http.request.body.truncated", "bool", Kind.BOOL,
              "Whether the body was longer than the WAF body buffer.",
              attrgetter("request.body_truncated")),
    FieldSpec("http.request.body.size", "int", Kind.INT,
              "The number of body bytes inspected.", _body_size),
    FieldSpec("http.user_agent", "string", Kind.STRING,
              "The first User-Agent header, or '' when absent.", attrgetter("user_agent")),
    FieldSpec("ip.src", "string", Kind.STRING, "The client IP address.",
              attrgetter("request.client_ip")),
    FieldSpec("bot.score", "int", Kind.INT,
              "The bot score, 1 (bot) to 99 (human); an error when the request was not scored.",
              _bot_score),
    FieldSpec("waf.hits", "list<string>", Kind.LIST,
              "Ids of the managed signatures the request matched, sorted.", _waf_hits),
)  # fmt: skip

FIELDS: Final[Mapping[str, FieldSpec]] = MappingProxyType({spec.path: spec for spec in _SPECS})
"""The registry: dotted path -> field."""

ROOTS: Final = frozenset(path.split(".", 1)[0] for path in FIELDS)
"""The first names of all fields (`http`, `ip`, ...); no variable may take one of these names."""


def reference_name(path: str) -> str:
    """The flat variable name that stands for field `path` when the reference CEL evaluates it.

    Nested maps cannot hold `http.request.uri` as a string and as the parent of `.path` at once,
    so the reference sees each field as one variable: `http.request.uri.path` becomes
    `__http_request_uri_path`.
    """
    return "__" + path.replace(".", "_")
