"""The request as the engine sees it, and the lazily derived views modules read from it."""

from __future__ import annotations

from typing import Final, NamedTuple

from failsmall.engine.body import BodyFormat, ParsedBody, parse_body
from failsmall.engine.content_coding import DecodedBody, content_codings, decode_body
from failsmall.engine.forms import cookie_pair, form_pair, parse_form
from failsmall.engine.native import has_header, index_headers, tuple_of
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

DEFAULT_LIMITS: Final = Limits()
NO_HITS: Final[frozenset[str]] = frozenset()


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


#: Read from a C static where called for each request, not looked up in the module's globals
#: (what mypyc does for a name that is not `Final`).
_TUPLE_OF: Final = tuple_of
_REQUEST: Final = Request
_HAS_HEADER: Final = has_header


def request_of(
    method: str,
    path: str,
    query: str,
    headers: tuple[tuple[str, str], ...],
    body: bytes,
    body_truncated: bool,
    client_ip: str,
    host: str,
    now: float,
) -> Request:
    """A `Request` of every field, in order, made by `tuple_of` (one C call) rather than by
    the NamedTuple's generated `__new__`, which runs interpreted: the node makes one per
    request it reads."""
    return _TUPLE_OF(
        _REQUEST, method, path, query, headers, body, body_truncated, client_ip, host, now
    )


class RequestView:
    """Derived, cached views of a request: parsed headers, args, cookies and body text.

    Each view is computed on first use and at most once per request, so a module that does not
    read the cookies costs nothing for them. A view not computed yet is None in its slot
    (compiled, each is a field of the object: reading one that is known costs no call).
    """

    def __init__(
        self,
        request: Request,
        bot_score: int | None = None,
        signature_hits: frozenset[str] = NO_HITS,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.request = request
        self.bot_score = bot_score
        self.signature_hits = signature_hits
        # The bundle's limits: they bound body decoding and parsing (see `failsmall.engine.work`).
        self.limits = limits
        self._headers: dict[str, list[str]] | None = None
        self._header_names: list[str] | None = None
        self._host: str | None = None
        self._user_agent: str | None = None
        self._args: dict[str, list[str]] | None = None
        self._normalized_path: str | None = None
        self._normalized_uri: str | None = None
        self._cookies: dict[str, list[str]] | None = None
        self._body_head: tuple[str, tuple[str, ...]] | None = None
        self._decoded: DecodedBody | None = None
        self._body_text: str | None = None
        self._content_type: str | None = None
        self._body: ParsedBody | None = None
        self._body_limits: tuple[LimitReached, ...] | None = None
        self._body_args: dict[str, list[str]] | None = None
        self._body_arg_names: list[str] | None = None
        self._body_arg_values: list[str] | None = None
        self._filenames: list[str] | None = None

    def __repr__(self) -> str:
        return (
            f"RequestView(request={self.request!r}, bot_score={self.bot_score!r}, "
            f"signature_hits={self.signature_hits!r})"
        )

    @property
    def headers(self) -> dict[str, list[str]]:
        """Header values by lowercase name, in order."""
        headers = self._headers
        if headers is None:
            headers = self._index_headers()[0]
        return headers

    @property
    def header_names(self) -> list[str]:
        """Lowercase header names in the order received, repeats included."""
        names = self._header_names
        if names is None:
            names = self._index_headers()[1]
        return names

    def _index_headers(self) -> tuple[dict[str, list[str]], list[str]]:
        """Both `headers` and `header_names`, indexed in one walk of the request's headers."""
        indexed = index_headers(self.request.headers)
        self._headers, self._header_names = indexed
        return indexed

    def has_header(self, name: str) -> bool:
        """Whether the request has header `name` (lowercase): `name in self.headers`, without
        indexing the headers when nothing has yet (one pass over them, nothing made)."""
        headers = self._headers
        if headers is None:
            return _HAS_HEADER(self.request.headers, name)
        return name in headers

    def header(self, name: str) -> str:
        """The first value of header `name` (lowercase), or '' when absent."""
        values = self.headers.get(name)
        return values[0] if values else ""

    @property
    def host(self) -> str:
        host = self._host
        if host is None:
            host = self._host = self.request.host or self.header("host")
        return host

    @property
    def user_agent(self) -> str:
        agent = self._user_agent
        if agent is None:
            agent = self._user_agent = self.header("user-agent")
        return agent

    @property
    def args(self) -> dict[str, list[str]]:
        args = self._args
        if args is None:
            args = {}
            for name, value in parse_form(self.request.query):
                values = args.get(name)
                if values is None:
                    args[name] = [value]
                else:
                    values.append(value)
            self._args = args
        return args

    @property
    def normalized_path(self) -> str:
        """The path as the origin will resolve it (`engine/paths.py`)."""
        path = self._normalized_path
        if path is None:
            path = self._normalized_path = normalize_path(self.request.path)
        return path

    def resolved_path(self, path: str) -> None:
        """Take `path` as `normalize_path` of the request's path, so it is not resolved again."""
        self._normalized_path = path

    @property
    def normalized_uri(self) -> str:
        """The normalized path and the query as received: /path?query."""
        uri = self._normalized_uri
        if uri is None:
            query = self.request.query
            uri = f"{self.normalized_path}?{query}" if query else self.normalized_path
            self._normalized_uri = uri
        return uri

    @property
    def cookies(self) -> dict[str, list[str]]:
        cookies = self._cookies
        if cookies is None:
            cookies = {}
            for raw in self.headers.get("cookie", ()):
                for part in raw.split(";"):
                    pair = cookie_pair(part)
                    if pair is not None:
                        cookies.setdefault(pair[0], []).append(pair[1])
            self._cookies = cookies
        return cookies

    @property
    def body_head(self) -> tuple[str, tuple[str, ...]]:
        """What reading the body takes from the head: the first Content-Type value (the parser,
        the boundary) and every Content-Encoding value. With the body's bytes, whether they were
        cut at the buffer, and the limits, it is all that `decoded`, `body_text`, `body` and
        what they give depend on (so the signature scanner can remember a body's scan by them)."""
        head = self._body_head
        if head is None:
            head = self._body_head = (
                self.header("content-type"),
                tuple(self.headers.get("content-encoding", ())),
            )
        return head

    @property
    def decoded(self) -> DecodedBody:
        """The body decoded through its Content-Encoding, as the origin will read it."""
        decoded = self._decoded
        if decoded is None:
            codings = content_codings(self.body_head[1])
            request = self.request
            decoded = decode_body(codings, request.body, request.body_truncated, self.limits)
            self._decoded = decoded
        return decoded

    @property
    def body_text(self) -> str:
        text = self._body_text
        if text is None:
            text = self._body_text = self.decoded.data.decode("utf-8", errors="replace")
        return text

    @property
    def content_type(self) -> str:
        """The media type of the body, lowercase, without parameters ('' when absent)."""
        media = self._content_type
        if media is None:
            media = self.body_head[0].split(";", 1)[0].strip().lower()
            self._content_type = media
        return media

    @property
    def body(self) -> ParsedBody:
        """The body parsed by content type: urlencoded, JSON or multipart fields."""
        body = self._body
        if body is None:
            body = self._body = parse_body(
                self.body_head[0],
                self.decoded.data,
                self.request.body_truncated,
                self.limits,
            )
        return body

    def body_parsed(self, body: ParsedBody) -> None:
        """Take `body` as the parsed body (one that parsing the body would give: the signature
        scanner's walk of a JSON body), so it is not parsed again."""
        self._body = body

    @property
    def has_parsed_body(self) -> bool:
        """Whether the body has been parsed (or taken as parsed) already."""
        return self._body is not None

    @property
    def body_read(self) -> bool:
        """Whether anything has read the body: decoded it, or parsed it."""
        return self._decoded is not None or self._body is not None

    @property
    def body_limits(self) -> tuple[LimitReached, ...]:
        """The work limits decoding and parsing the body reached (none for most bodies)."""
        reached = self._body_limits
        if reached is None:
            if not self.request.body:
                reached = ()
            else:
                found = (self.decoded.reached, self.body.reached)
                reached = tuple(r for r in found if r is not None)
            self._body_limits = reached
        return reached

    @property
    def body_args(self) -> dict[str, list[str]]:
        """Body fields by name (JSON leaves by dotted path; multipart non-file fields)."""
        args = self._body_args
        if args is None:
            args = {}
            for name, value in self.body.fields:
                args.setdefault(name, []).append(value)
            self._body_args = args
        return args

    @property
    def body_arg_names(self) -> list[str]:
        names = self._body_arg_names
        if names is None:
            names = self._body_arg_names = [name for name, _ in self.body.fields]
        return names

    @property
    def body_arg_values(self) -> list[str]:
        values = self._body_arg_values
        if values is None:
            values = self._body_arg_values = [value for _, value in self.body.fields]
        return values

    @property
    def filenames(self) -> list[str]:
        """File names of multipart file parts, as the client sent them."""
        names = self._filenames
        if names is None:
            names = self._filenames = list(self.body.filenames)
        return names
