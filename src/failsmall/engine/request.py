"""The request as the engine sees it, and the lazily derived views modules read from it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar, overload

from failsmall.engine.body import BodyFormat, ParsedBody, parse_body
from failsmall.engine.content_coding import DecodedBody, content_codings, decode_body
from failsmall.engine.forms import cookie_pair, form_pair, parse_form
from failsmall.engine.native import index_headers
from failsmall.engine.paths import normalize_path
from failsmall.engine.work import LimitReached
from failsmall.model.traffic import Limits

__all__ = [
    "BodyFormat",
    "ParsedBody",
    "Request",
    "RequestView",
    "cookie_pair",
    "form_pair",
    "parse_body",
    "parse_form",
]

T = TypeVar("T")
DEFAULT_LIMITS = Limits()


class Request(NamedTuple):
    """One HTTP request, as handed to the engine by the node (or by `inspect`/`verify`).

    `body` holds at most the WAF body buffer; `body_truncated` says the request body was longer.
    `now` is the wall-clock time in seconds, passed in because the engine reads no clocks.

    Immutable; a `NamedTuple` because one is made for every request the node reads, and one is
    made in a fifth of the time of a frozen dataclass (a copy with other fields: `_replace`).
    """

    method: str
    path: str
    query: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    body_truncated: bool = False
    client_ip: str = "127.0.0.1"
    host: str = ""
    now: float = 0.0

    @property
    def uri(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path


class _Lazy(Generic[T]):
    """A value computed on first read and stored in the instance dict, where later reads find
    it without calling anything: `functools.cached_property` without the lock it takes on every
    first read in Python 3.11 (a view is used by one request, on one thread)."""

    def __init__(self, compute: Callable[[RequestView], T]) -> None:
        self._compute = compute
        self._name = compute.__name__
        self.__doc__ = compute.__doc__

    @overload
    def __get__(self, view: None, owner: type[RequestView]) -> _Lazy[T]: ...

    @overload
    def __get__(self, view: RequestView, owner: type[RequestView]) -> T: ...

    def __get__(self, view: RequestView | None, owner: type[RequestView]) -> T | _Lazy[T]:
        if view is None:
            return self
        value = self._compute(view)
        view.__dict__[self._name] = value
        return value


@dataclass(eq=False, init=False)
class RequestView:
    """Derived, cached views of a request: parsed headers, args, cookies and body text.

    Each view is computed on first use and at most once per request, so a module that does not
    read the cookies costs nothing for them.
    """

    request: Request
    bot_score: int | None = None
    signature_hits: frozenset[str] = frozenset()
    # The bundle's limits: they bound body decoding and parsing (see `failsmall.engine.work`).
    limits: Limits = DEFAULT_LIMITS

    def __init__(
        self,
        request: Request,
        bot_score: int | None = None,
        signature_hits: frozenset[str] = frozenset(),
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        """The dataclass's own `__init__`, less the fields left at their defaults: those read
        as the class's (one view is made per request, and most set only `limits`)."""
        self.request = request
        self.limits = limits
        if bot_score is not None:
            self.bot_score = bot_score
        if signature_hits:
            self.signature_hits = signature_hits

    @_Lazy
    def headers(self) -> dict[str, list[str]]:
        """Header values by lowercase name, in order. Fills in `header_names` on the way."""
        out, names = index_headers(self.request.headers)
        self.__dict__["header_names"] = names
        return out

    @_Lazy
    def header_names(self) -> list[str]:
        """Lowercase header names in the order received, repeats included."""
        if "headers" not in self.__dict__:
            self.headers  # noqa: B018 - indexing the headers lists their names too
        names: list[str] = self.__dict__["header_names"]
        return names

    def header(self, name: str) -> str:
        """The first value of header `name` (lowercase), or '' when absent."""
        values = self.headers.get(name)
        return values[0] if values else ""

    @_Lazy
    def host(self) -> str:
        return self.request.host or self.header("host")

    @_Lazy
    def user_agent(self) -> str:
        return self.header("user-agent")

    @_Lazy
    def args(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for name, value in parse_form(self.request.query):
            values = out.get(name)
            if values is None:
                out[name] = [value]
            else:
                values.append(value)
        return out

    @_Lazy
    def normalized_path(self) -> str:
        """The path as the origin will resolve it (`engine/paths.py`)."""
        return normalize_path(self.request.path)

    @_Lazy
    def normalized_uri(self) -> str:
        """The normalized path and the query as received: /path?query."""
        query = self.request.query
        return f"{self.normalized_path}?{query}" if query else self.normalized_path

    @_Lazy
    def cookies(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for raw in self.headers.get("cookie", ()):
            for part in raw.split(";"):
                pair = cookie_pair(part)
                if pair is not None:
                    out.setdefault(pair[0], []).append(pair[1])
        return out

    @_Lazy
    def decoded(self) -> DecodedBody:
        """The body decoded through its Content-Encoding, as the origin will read it."""
        codings = content_codings(self.headers.get("content-encoding", []))
        return decode_body(codings, self.request.body, self.request.body_truncated, self.limits)

    @_Lazy
    def body_text(self) -> str:
        return self.decoded.data.decode("utf-8", errors="replace")

    @_Lazy
    def content_type(self) -> str:
        """The media type of the body, lowercase, without parameters ('' when absent)."""
        return self.header("content-type").split(";", 1)[0].strip().lower()

    @_Lazy
    def body(self) -> ParsedBody:
        """The body parsed by content type: urlencoded, JSON or multipart fields."""
        return parse_body(
            self.header("content-type"),
            self.decoded.data,
            self.request.body_truncated,
            self.limits,
        )

    def body_parsed(self, body: ParsedBody) -> None:
        """Take `body` as the parsed body (one that parsing the body would give: the signature
        scanner's walk of a JSON body), so it is not parsed again."""
        self.__dict__["body"] = body

    @_Lazy
    def body_limits(self) -> tuple[LimitReached, ...]:
        """The work limits decoding and parsing the body reached (none for most bodies)."""
        if not self.request.body:
            return ()
        return tuple(r for r in (self.decoded.reached, self.body.reached) if r is not None)

    @_Lazy
    def body_args(self) -> dict[str, list[str]]:
        """Body fields by name (JSON leaves by dotted path; multipart non-file fields)."""
        out: dict[str, list[str]] = {}
        for name, value in self.body.fields:
            out.setdefault(name, []).append(value)
        return out

    @_Lazy
    def body_arg_names(self) -> list[str]:
        return [name for name, _ in self.body.fields]

    @_Lazy
    def body_arg_values(self) -> list[str]:
        return [value for _, value in self.body.fields]

    @_Lazy
    def filenames(self) -> list[str]:
        """File names of multipart file parts, as the client sent them."""
        return list(self.body.filenames)
