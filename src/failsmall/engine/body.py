"""Request bodies parsed by content type, within the bundle's WAF work limits.

urlencoded, JSON and multipart bodies become named fields; anything else is raw text. A body
past a limit (more fields than `waf_max_values`, JSON or multipart nested deeper than
`waf_max_body_depth`, multipart framing an origin could read otherwise) keeps the fields parsed
within the limits and says which limit it reached: inspection never stops silently.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from enum import IntEnum, StrEnum
from typing import assert_never

from failsmall.engine.forms import parse_form
from failsmall.engine.json_document import load_json, load_json_text
from failsmall.engine.multipart import Ambiguous, PartLimit, boundary_of, split_parts
from failsmall.engine.native import flatten_json, json_fields, json_pruned
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
        parsed = _json_body([], FLATTENED[walk], limits)

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
    flattening ends, or with a body that is not JSON (at any depth), or with a JSON body whose
    fields it leaves to the document (an object with a repeated key)."""

    COMPLETE = 0
    TOO_MANY = 1
    TOO_DEEP = 2
    TOO_LONG = 3
    INVALID = 4
    UNDECIDED = 5


# Each walk's and flattening's member by its value (the C walk returns ints): indexing a tuple,
# where calling an enum with a value goes through `EnumType.__call__` in Python.
JSON_WALKS: tuple[JsonWalk, ...] = tuple(JsonWalk)
FLATTENED: tuple[Flattened, ...] = tuple(Flattened)

#: Why a JSON body is malformed: the walk says whether, not where.
NOT_JSON = "invalid JSON body: not JSON as json.loads reads it"


def not_json() -> ParsedBody:
    """What a body sent as JSON that is not JSON parses to."""
    return ParsedBody(BodyFormat.MALFORMED, problem=NOT_JSON)


def _parse_json(body: bytes, limits: Limits) -> ParsedBody:
    """The body's fields from one compiled pass over its bytes; an object with a repeated key
    (a dict keeps the last value at the first key's place) is read as a document first."""
    fields, status = json_fields(
        body, limits.waf_max_values, limits.waf_max_body_depth, limits.waf_max_transformed_chars
    )
    match JSON_WALKS[status]:
        case JsonWalk.INVALID:
            return not_json()
        case JsonWalk.UNDECIDED:
            return _json_body(*_document_fields(body, limits), limits)
        case walked:
            return _json_body(fields, FLATTENED[walked], limits)


def _document_fields(body: bytes, limits: Limits) -> tuple[list[tuple[str, str]], Flattened]:
    """The fields of a body the walk found to be JSON, from its document. Containers nested
    `waf_max_body_depth` deep or more are read empty (`json_pruned`: flattening stops at them
    whatever they hold), so `json.loads` and the compiled flattening recurse no deeper than
    that; where the Python stack has no room even for that, `load_json_text` and
    `flatten_json_reference` give the same fields without recursion."""
    pruned = json_pruned(body, limits.waf_max_body_depth)
    args = (limits.waf_max_values, limits.waf_max_body_depth, limits.waf_max_transformed_chars)
    try:
        fields, status = flatten_json(json.loads(pruned), *args, json.dumps)
        return fields, FLATTENED[status]
    except RecursionError:
        return flatten_json_reference(load_json_text(pruned), *args)


def parse_json_reference(body: bytes, limits: Limits) -> ParsedBody:
    """What `_parse_json` gives, the readable way: the document (`load_json`: `json.loads`
    at any depth), then its fields (`flatten_json_reference`)."""
    try:
        document = load_json(body)
    except ValueError:
        return ParsedBody(BodyFormat.MALFORMED, problem=NOT_JSON)
    flattened = flatten_json_reference(
        document, limits.waf_max_values, limits.waf_max_body_depth, limits.waf_max_transformed_chars
    )
    return _json_body(*flattened, limits)


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
    every path), or at the container nested `max_depth` deep. Its stack is a list: any depth
    of document, from any depth of caller."""
    flattening = _Flattening(max_values, max_depth, max_name_chars)
    try:
        flattening.document(document)
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

    def document(self, document: object) -> None:
        if not isinstance(document, (dict, list)):
            self.append("", _json_scalar(document))
            return
        if self.max_depth <= 0:
            raise _JsonLimit(Flattened.TOO_DEEP)
        # The open containers: their items still to flatten, their path and their depth.
        stack = [(_items(document), "", 0)]
        while stack:
            items, path, depth = stack[-1]
            for key, value, in_object in items:
                child = f"{path}.{key}" if path else str(key)
                if isinstance(value, (dict, list)):
                    if in_object:
                        self.append(child, "")
                    if depth + 1 >= self.max_depth:
                        raise _JsonLimit(Flattened.TOO_DEEP)
                    stack.append((_items(value), child, depth + 1))
                    break
                self.append(child, _json_scalar(value))
            else:
                stack.pop()

    def append(self, path: str, value: str) -> None:
        if len(self.fields) >= self.max_values:
            raise _JsonLimit(Flattened.TOO_MANY)
        if self.name_chars + len(path) > self.max_name_chars:
            raise _JsonLimit(Flattened.TOO_LONG)
        self.name_chars += len(path)
        self.fields.append((path, value))


def _items(
    container: dict[str, object] | list[object],
) -> Iterator[tuple[object, object, bool]]:
    """A container's keys (or indexes) and values, and whether it is an object."""
    if isinstance(container, dict):
        return ((key, value, True) for key, value in container.items())
    return ((index, value, False) for index, value in enumerate(container))


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
