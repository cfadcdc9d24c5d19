"""The request as the engine sees it, and the lazily derived views modules read from it."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar, overload
from urllib.parse import unquote

from failsmall.engine.paths import normalize_path

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request, as handed to the engine by the node (or by `inspect`/`verify`).

    `body` holds at most the WAF body buffer; `body_truncated` says the request body was longer.
    `now` is the wall-clock time in seconds, passed in because the engine reads no clocks.
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


@dataclass(eq=False)
class RequestView:
    """Derived, cached views of a request: parsed headers, args, cookies and body text.

    Each view is computed on first use and at most once per request, so a module that does not
    read the cookies costs nothing for them.
    """

    request: Request
    bot_score: int | None = None
    signature_hits: frozenset[str] = frozenset()

    @_Lazy
    def headers(self) -> dict[str, list[str]]:
        """Header values by lowercase name, in order. Fills in `header_names` on the way."""
        out: dict[str, list[str]] = {}
        names: list[str] = []
        for name, value in self.request.headers:
            lower = name.lower()
            names.append(lower)
            values = out.get(lower)
            if values is None:
                out[lower] = [value]
            else:
                values.append(value)
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
    def body_text(self) -> str:
        return self.request.body.decode("utf-8", errors="replace")

    @_Lazy
    def content_type(self) -> str:
        """The media type of the body, lowercase, without parameters ('' when absent)."""
        return self.header("content-type").split(";", 1)[0].strip().lower()

    @_Lazy
    def body(self) -> ParsedBody:
        """The body parsed by content type: urlencoded, JSON or multipart fields."""
        return parse_body(self.header("content-type"), self.request.body)

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


class BodyFormat(StrEnum):
    """How a request body was parsed."""

    EMPTY = "empty"
    URLENCODED = "urlencoded"
    JSON = "json"
    MULTIPART = "multipart"
    RAW = "raw"
    MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class ParsedBody:
    """The fields of a body. `MALFORMED` bodies have no fields and say why in `problem`."""

    format: BodyFormat
    fields: tuple[tuple[str, str], ...] = ()
    filenames: tuple[str, ...] = ()
    problem: str = ""


#: Bound on JSON nesting and multipart parts, so a hostile body cannot make parsing expensive.
MAX_BODY_DEPTH = 32
MAX_BODY_FIELDS = 4096
#: Longest Content-Disposition value parsed: bounds the parameter regex's work on hostile parts.
MAX_DISPOSITION = 2048


def parse_body(content_type: str, body: bytes) -> ParsedBody:
    """Parse `body` according to its `content_type` header; never raises."""
    if not body:
        return ParsedBody(BodyFormat.EMPTY)
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media == "application/x-www-form-urlencoded" or (
        not media and body.lstrip()[:1] not in (b"{", b"[", b"<")
    ):
        pairs = parse_form(body.decode("utf-8", errors="replace"))
        return ParsedBody(BodyFormat.URLENCODED, tuple(pairs[:MAX_BODY_FIELDS]))
    if media == "application/json" or media.endswith("+json"):
        return _parse_json(body)
    if media == "multipart/form-data":
        return _parse_multipart(params, body)
    return ParsedBody(BodyFormat.RAW)


def parse_form(text: str) -> list[tuple[str, str]]:
    """Name/value pairs of a query string or urlencoded body, blank values kept: what
    `urllib.parse.parse_qsl(text, keep_blank_values=True)` returns, without decoding the parts
    that have nothing to decode."""
    return [form_pair(part) for part in text.split("&") if part]


def form_pair(part: str) -> tuple[str, str]:
    """The decoded name and value of one `name=value` part of a query string or form body."""
    name, _, value = part.partition("=")
    return _form_decode(name), _form_decode(value)


def cookie_pair(part: str) -> tuple[str, str] | None:
    """The name and value of one `;`-separated part of a Cookie header; None when it has no
    `=` or no name (such parts are not cookies)."""
    name, sep, value = part.strip().partition("=")
    return (name, value) if sep and name else None


def _form_decode(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    if "%" in text:
        text = unquote(text, errors="replace")
    return text


def _parse_json(body: bytes) -> ParsedBody:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return ParsedBody(BodyFormat.MALFORMED, problem=f"invalid JSON body: {exc}")
    fields: list[tuple[str, str]] = []
    _flatten_json(document, "", fields, 0)
    return ParsedBody(BodyFormat.JSON, tuple(fields[:MAX_BODY_FIELDS]))


def _flatten_json(node: object, path: str, out: list[tuple[str, str]], depth: int) -> None:
    if depth > MAX_BODY_DEPTH or len(out) >= MAX_BODY_FIELDS:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            if not isinstance(value, (dict, list)):
                out.append((child, _json_scalar(value)))
            else:
                out.append((child, ""))
                _flatten_json(value, child, out, depth + 1)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            child = f"{path}.{index}" if path else str(index)
            if isinstance(value, (dict, list)):
                _flatten_json(value, child, out, depth + 1)
            else:
                out.append((child, _json_scalar(value)))
    else:
        out.append((path, _json_scalar(node)))


def _json_scalar(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


_BOUNDARY = re.compile(r'boundary\s*=\s*(?:"([^"]+)"|([^\s;]+))', re.IGNORECASE)
_DISPOSITION_PARAM = re.compile(r';\s*([a-zA-Z*]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))')


def _parse_multipart(params: str, body: bytes) -> ParsedBody:
    found = _BOUNDARY.search(params)
    if found is None:
        return ParsedBody(BodyFormat.MALFORMED, problem="multipart body without a boundary")
    delimiter = b"--" + (found.group(1) or found.group(2)).encode("latin-1", errors="replace")
    fields: list[tuple[str, str]] = []
    filenames: list[str] = []
    chunks = body.split(delimiter)
    for chunk in chunks[1 : MAX_BODY_FIELDS + 1]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.lstrip(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = chunk.lstrip(b"\r\n").partition(b"\n\n")
        if not sep:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        elif content.endswith(b"\n"):
            content = content[:-1]
        name, filename, is_file = _disposition(head.decode("utf-8", errors="replace"))
        if is_file:
            filenames.append(filename)
        else:
            fields.append((name, content.decode("utf-8", errors="replace")))
    return ParsedBody(BodyFormat.MULTIPART, tuple(fields), tuple(filenames))


def _disposition(head: str) -> tuple[str, str, bool]:
    """(field name, file name, is a file part) from a part's headers."""
    for line in head.splitlines():
        header, _, value = line.partition(":")
        if header.strip().lower() != "content-disposition":
            continue
        params = {
            key.lower(): (quoted if quoted is not None and quoted != "" else bare or "")
            for key, quoted, bare in _DISPOSITION_PARAM.findall(value[:MAX_DISPOSITION])
        }
        is_file = "filename" in params or "filename*" in params
        return params.get("name", ""), params.get("filename", params.get("filename*", "")), is_file
    return "", "", False
