"""Request bodies parsed by content type, within the bundle's WAF work limits.

urlencoded, JSON and multipart bodies become named fields; anything else is raw text. A body
past a limit (more fields than `waf_max_values`, JSON or multipart nested deeper than
`waf_max_body_depth`, multipart framing an origin could read otherwise) keeps the fields parsed
within the limits and says which limit it reached: inspection never stops silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import IntEnum, StrEnum
from typing import assert_never

from failsmall.engine.forms import parse_form
from failsmall.engine.multipart import Ambiguous, PartLimit, boundary_of, split_parts
from failsmall.engine.native import flatten_json, json_fields
from failsmall.engine.work import LimitReached
from failsmall.model.traffic import Limits


class BodyFormat(StrEnum):
    """How a request body was parsed."""

    EMPTY = "empty"
    URLENCODED = "urlencoded"
    JSON = "json"
    MULTIPART = "multipart"
    RAW = "raw"
    MALFORMED = "malformed"


Fields = tuple[tuple[str, str], ...]


class ParsedBody:
    """The fields of a body. `MALFORMED` bodies have no fields and say why in `problem`;
    `reached` is the work limit that stopped parsing, if one did.

    A JSON body the signature scanner walked and scanned in one call (`walked_json`) makes its
    fields only when something reads them (a rule on body fields, an exception, a log).
    """

    __slots__ = ("_fields", "_make_fields", "filenames", "format", "problem", "reached")

    def __init__(
        self,
        format: BodyFormat,
        fields: Fields = (),
        filenames: tuple[str, ...] = (),
        problem: str = "",
        reached: LimitReached | None = None,
    ) -> None:
        self.format = format
        self._fields = fields
        self._make_fields: Callable[[], Fields] | None = None
        self.filenames = filenames
        self.problem = problem
        self.reached = reached

    @classmethod
    def walked_json(cls, body: bytes, walk: JsonWalk, limits: Limits) -> ParsedBody:
        """The JSON `body` whose compiled walk ended with `walk` (a limit or complete), its
        fields made by `json_fields` when first read."""
        parsed = _json_body([], Flattened(walk), limits)

        def make_fields() -> Fields:
            fields, status = json_fields(
                body,
                limits.waf_max_values,
                limits.waf_max_body_depth,
                limits.waf_max_transformed_chars,
            )
            assert status == walk, "the same walk of the same body"
            return tuple(fields)

        parsed._make_fields = make_fields
        return parsed

    @property
    def fields(self) -> Fields:
        """The fields as (name, value) pairs: JSON leaves by dotted path, form and multipart
        fields by name."""
        if self._make_fields is not None:
            self._fields = self._make_fields()
            self._make_fields = None
        return self._fields

    def _key(self) -> tuple[object, ...]:
        return (self.format, self.fields, self.filenames, self.problem, self.reached)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParsedBody):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ParsedBody({self.format!r}, {self.fields!r}, {self.filenames!r}, "
            f"{self.problem!r}, {self.reached!r})"
        )


def is_json(media: str) -> bool:
    """Whether a body of the media type `media` (lowercase, without parameters) is parsed as
    JSON."""
    return media == "application/json" or media.endswith("+json")


def parse_body(content_type: str, body: bytes, truncated: bool, limits: Limits) -> ParsedBody:
    """Parse `body` (already content-decoded) by its `content_type` header; never raises."""
    if not body:
        return ParsedBody(BodyFormat.EMPTY)
    media = content_type.partition(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded" or (
        not media and body.lstrip()[:1] not in (b"{", b"[", b"<")
    ):
        return _parse_urlencoded(body, limits)
    if is_json(media):
        return _parse_json(body, limits)
    if media == "multipart/form-data":
        return _parse_multipart(content_type, body, truncated, limits, 1)
    return ParsedBody(BodyFormat.RAW)


def _too_many(limits: Limits) -> LimitReached:
    return LimitReached("waf_max_values", f"more than {limits.waf_max_values} body fields")


def _too_deep(limits: Limits, what: str) -> LimitReached:
    return LimitReached(
        "waf_max_body_depth", f"{what} nested deeper than {limits.waf_max_body_depth} levels"
    )


def _parse_urlencoded(body: bytes, limits: Limits) -> ParsedBody:
    parts = body.decode("utf-8", errors="replace").split("&", limits.waf_max_values)
    reached = None
    if len(parts) > limits.waf_max_values:
        parts.pop()
        reached = _too_many(limits)
    pairs = parse_form("&".join(parts))
    return ParsedBody(BodyFormat.URLENCODED, tuple(pairs), reached=reached)


class Flattened(IntEnum):
    """How flattening a JSON document ended: every leaf, or stopped at a limit (too many
    fields, nested too deep, or field names too long in all)."""

    COMPLETE = 0
    TOO_MANY = 1
    TOO_DEEP = 2
    TOO_LONG = 3


class JsonWalk(IntEnum):
    """How the compiled walk of a JSON body (`json_fields`, in `_jsonwalk.c`) ended: as
    flattening ends, or with a body that is not JSON, or with one it leaves to `json.loads`
    (an object with a repeated key, nesting past 512 levels)."""

    COMPLETE = 0
    TOO_MANY = 1
    TOO_DEEP = 2
    TOO_LONG = 3
    INVALID = 4
    UNDECIDED = 5


def _parse_json(body: bytes, limits: Limits) -> ParsedBody:
    """The body's fields from one compiled pass over its bytes; `json.loads` says why a body
    is not JSON, and decides what the walk leaves to it."""
    fields, status = json_fields(
        body, limits.waf_max_values, limits.waf_max_body_depth, limits.waf_max_transformed_chars
    )
    match JsonWalk(status):
        case JsonWalk.INVALID | JsonWalk.UNDECIDED:
            return parse_json_reference(body, limits, _flatten_compiled)
        case walked:
            return _json_body(fields, Flattened(walked), limits)


def parse_json_reference(
    body: bytes,
    limits: Limits,
    flatten: Callable[[object, int, int, int], tuple[list[tuple[str, str]], Flattened]]
    | None = None,
) -> ParsedBody:
    """What `_parse_json` gives, the readable way: `json.loads`, then the document flattened
    (by `flatten_json_reference` unless `flatten` is given)."""
    try:
        document = json.loads(body)
    except RecursionError:
        return ParsedBody(BodyFormat.JSON, reached=_too_deep(limits, "JSON"))
    except ValueError as exc:
        return ParsedBody(BodyFormat.MALFORMED, problem=f"invalid JSON body: {exc}")
    flattened = (flatten or flatten_json_reference)(
        document, limits.waf_max_values, limits.waf_max_body_depth, limits.waf_max_transformed_chars
    )
    return _json_body(*flattened, limits)


def _flatten_compiled(
    document: object, max_values: int, max_depth: int, max_name_chars: int
) -> tuple[list[tuple[str, str]], Flattened]:
    fields, status = flatten_json(document, max_values, max_depth, max_name_chars, json.dumps)
    return fields, Flattened(status)


def _json_body(fields: list[tuple[str, str]], status: Flattened, limits: Limits) -> ParsedBody:
    match status:
        case Flattened.COMPLETE:
            return ParsedBody(BodyFormat.JSON, tuple(fields))
        case Flattened.TOO_MANY:
            return ParsedBody(BodyFormat.JSON, tuple(fields), reached=_too_many(limits))
        case Flattened.TOO_DEEP:
            return ParsedBody(BodyFormat.JSON, tuple(fields), reached=_too_deep(limits, "JSON"))
        case Flattened.TOO_LONG:
            reached = LimitReached(
                "waf_max_transformed_chars",
                f"JSON field names longer than {limits.waf_max_transformed_chars} characters "
                "in all",
            )
            return ParsedBody(BodyFormat.JSON, tuple(fields), reached=reached)
        case unknown:
            assert_never(unknown)


def flatten_json_reference(
    document: object, max_values: int, max_depth: int, max_name_chars: int
) -> tuple[list[tuple[str, str]], Flattened]:
    """What the compiled `flatten_json` does, in Python: the leaves of `document` (and each
    object key, with an empty value) as dotted paths, depth first in document order, stopping
    before the field past `max_values`, before a field whose path would take the paths past
    `max_name_chars` characters in all (a long key over a long array would otherwise repeat in
    every path), or at the container nested `max_depth` deep."""
    flattening = _Flattening(max_values, max_depth, max_name_chars)
    try:
        flattening.node(document, "", 0)
    except _JsonLimit as exc:
        return flattening.fields, exc.status
    return flattening.fields, Flattened.COMPLETE


class _JsonLimit(Exception):
    """Flattening a JSON document reached a limit."""

    def __init__(self, status: Flattened) -> None:
        super().__init__(status.name)
        self.status = status


class _Flattening:
    def __init__(self, max_values: int, max_depth: int, max_name_chars: int) -> None:
        self.fields: list[tuple[str, str]] = []
        self.name_chars = 0
        self.max_values = max_values
        self.max_depth = max_depth
        self.max_name_chars = max_name_chars

    def node(self, node: object, path: str, depth: int) -> None:
        if isinstance(node, (dict, list)):
            if depth >= self.max_depth:
                raise _JsonLimit(Flattened.TOO_DEEP)
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                child = f"{path}.{key}" if path else str(key)
                if isinstance(value, (dict, list)):
                    if isinstance(node, dict):
                        self.append(child, "")
                    self.node(value, child, depth + 1)
                else:
                    self.append(child, _json_scalar(value))
        else:
            self.append(path, _json_scalar(node))

    def append(self, path: str, value: str) -> None:
        if len(self.fields) >= self.max_values:
            raise _JsonLimit(Flattened.TOO_MANY)
        if self.name_chars + len(path) > self.max_name_chars:
            raise _JsonLimit(Flattened.TOO_LONG)
        self.name_chars += len(path)
        self.fields.append((path, value))


def _json_scalar(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _parse_multipart(
    content_type: str, body: bytes, truncated: bool, limits: Limits, depth: int
) -> ParsedBody:
    fields: list[tuple[str, str]] = []
    filenames: list[str] = []
    reached = _multipart_into(content_type, body, truncated, limits, depth, fields, filenames)
    return ParsedBody(BodyFormat.MULTIPART, tuple(fields), tuple(filenames), reached=reached)


def _multipart_into(
    content_type: str,
    body: bytes,
    truncated: bool,
    limits: Limits,
    depth: int,
    fields: list[tuple[str, str]],
    filenames: list[str],
) -> LimitReached | None:
    if depth > limits.waf_max_body_depth:
        return _too_deep(limits, "multipart")
    try:
        boundary = boundary_of(content_type)
        room = limits.waf_max_values - len(fields) - len(filenames)
        parts = split_parts(body, boundary, truncated, max(room, 0))
    except Ambiguous as exc:
        return LimitReached("multipart_framing", str(exc))
    except PartLimit:
        return _too_many(limits)
    for part in parts:
        if part.content_type.lower().startswith("multipart/"):
            reached = _multipart_into(
                part.content_type, part.content, truncated, limits, depth + 1, fields, filenames
            )
            if reached is not None:
                return reached
        elif part.filename is not None:
            filenames.append(part.filename)
        else:
            fields.append((part.name, part.content.decode("utf-8", errors="replace")))
    return None
