"""One strict multipart/form-data parser (RFC 2046 framing, RFC 7578 form data).

The boundary is the `boundary` parameter of the Content-Type header, parsed as RFC 2045 header
parameters are (tokens and quoted strings, names without case): a `boundary=` inside another
parameter's quoted value is that value, not the boundary. A part is a file only when its
Content-Disposition has a non-empty `filename` (or `filename*`); `filename=""` is a form field,
as origins read it. Whatever the WAF cannot frame the one way an origin would (two boundary
parameters, a delimiter line missing, a part without a header block, a disposition given twice)
is `Ambiguous`: the caller answers it with the bundle's over-limit action rather than a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote

from failsmall.engine.text_case import lower_text

#: RFC 2046 boundary: 1 to 70 characters of `bchars`, not ending with a space.
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_SPACES = " \t"
#: Longest part header block read; a longer one is ambiguous.
MAX_PART_HEAD = 8192


class Ambiguous(Exception):
    """Framing an origin could read otherwise than the WAF; the message says where."""


class BadParameters(Exception):
    """Header parameters that do not parse (an unclosed quote, a name without a value)."""


def header_parameters(value: str) -> tuple[str, dict[str, str]]:
    """The value before the first `;` (lowercase, stripped) and its parameters by lowercase
    name. Raises BadParameters on a malformed list and Ambiguous on a parameter given twice."""
    head, sep, rest = _split_value(value)
    params: dict[str, str] = {}
    position = 0
    while sep and position < len(rest):
        while position < len(rest) and rest[position] in _SPACES + ";":
            position += 1
        if position >= len(rest):
            break
        name_match = _TOKEN.match(rest, position)
        if name_match is None:
            raise BadParameters(f"parameter name expected at {rest[position : position + 20]!r}")
        name = name_match.group().lower()
        position = _skip_spaces(rest, name_match.end())
        if position >= len(rest) or rest[position] != "=":
            raise BadParameters(f"parameter {name!r} has no value")
        position = _skip_spaces(rest, position + 1)
        if position < len(rest) and rest[position] == '"':
            parameter, position = _quoted(rest, position)
        else:
            token = _TOKEN.match(rest, position)
            if token is None:
                raise BadParameters(f"parameter {name!r} has no value")
            parameter, position = token.group(), token.end()
        if name in params:
            raise Ambiguous(f"parameter {name!r} is given twice")
        params[name] = parameter
        position = _skip_spaces(rest, position)
        if position < len(rest) and rest[position] != ";":
            raise BadParameters(f"';' expected after parameter {name!r}")
    return head.strip().lower(), params


def _split_value(value: str) -> tuple[str, str, str]:
    return value.partition(";")


def _skip_spaces(text: str, position: int) -> int:
    while position < len(text) and text[position] in _SPACES:
        position += 1
    return position


def _quoted(text: str, position: int) -> tuple[str, int]:
    """A quoted string starting at `position` (its `"`), unescaped, and the position after it."""
    out: list[str] = []
    index = position + 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            out.append(text[index + 1])
            index += 2
            continue
        if char == '"':
            return "".join(out), index + 1
        out.append(char)
        index += 1
    raise BadParameters("a quoted parameter value is not closed")


def boundary_of(content_type: str) -> str:
    """The boundary of a multipart Content-Type. Raises Ambiguous when it is absent, given
    twice, or not an RFC 2046 boundary."""
    try:
        _, params = header_parameters(content_type)
    except BadParameters as exc:
        raise Ambiguous(f"Content-Type parameters do not parse: {exc}") from exc
    boundary = params.get("boundary")
    if boundary is None:
        raise Ambiguous("multipart body without a boundary parameter")
    if _BOUNDARY.fullmatch(boundary) is None:
        raise Ambiguous(f"boundary {boundary[:80]!r} is not an RFC 2046 boundary")
    return boundary


@dataclass
class Part:
    """One body part: its Content-Disposition name, its filename when it is a file, its media
    type (lowercase, with its parameters), and its content."""

    name: str
    filename: str | None
    content_type: str
    content: bytes
    params: dict[str, str] = field(default_factory=dict)

    @property
    def is_file(self) -> bool:
        return self.filename is not None


def split_parts(body: bytes, boundary: str, truncated: bool, max_parts: int) -> list[Part]:
    """The parts of a multipart body, at most `max_parts`.

    Raises Ambiguous for framing an origin might read otherwise (see the module docstring).
    A body cut at the WAF buffer (`truncated`) may end inside a part: the parts up to there are
    returned, the last one as far as it goes.
    """
    found = _delimiter_lines(body, b"--" + boundary.encode("latin-1"))
    if not found:
        if truncated:
            return []
        raise Ambiguous("no delimiter line for the boundary")
    parts: list[Part] = []
    closed = False
    for index, line in enumerate(found):
        if line.close:  # the close delimiter: whatever follows is epilogue
            closed = True
            break
        start = line.end
        end = found[index + 1].start if index + 1 < len(found) else len(body)
        last = index + 1 >= len(found)
        if last and not truncated:
            raise Ambiguous("the body ends without a close delimiter")
        if len(parts) >= max_parts:
            raise PartLimit(len(parts))
        parts.append(_part(body[start:end], cut=last))
    if not closed and not truncated:
        raise Ambiguous("the body ends without a close delimiter")
    return parts


@dataclass(frozen=True, slots=True)
class _Line:
    """A delimiter line: where it starts (its CRLF included), where the part after it starts,
    and whether it is the close delimiter."""

    start: int
    end: int
    close: bool


_BLANKS = frozenset(b" \t")


def _delimiter_lines(body: bytes, delimiter: bytes) -> list[_Line]:
    """Every delimiter line of `body` (RFC 2046: CRLF, `--boundary`, maybe `--`, maybe spaces,
    then CRLF or the end), found with `bytes.find` so a large file part costs a memchr pass.
    Raises Ambiguous for a line an origin could take for a delimiter that RFC 2046 does not:
    one after a bare LF, or ending with one, or one right after a delimiter line, whose CRLF
    is that line's end and not this one's start (RFC 2046 and aiohttp read `--b` there as a
    line of the part; a lenient parser reads an empty part)."""
    lines: list[_Line] = []
    size = len(body)
    consumed = 0  # the end of the last delimiter line: its CRLF is not the next one's
    position = body.find(delimiter)
    while position >= 0:
        after_crlf = position - 2 >= consumed and body[position - 2 : position] == b"\r\n"
        after_lf = position >= 1 and body[position - 1] == 0x0A
        end = position + len(delimiter)
        close = body.startswith(b"--", end)
        cursor = end + 2 if close else end
        while cursor < size and body[cursor] in _BLANKS:
            cursor += 1
        starts_line = position == 0 or after_lf
        if starts_line and body[cursor:] == b"\r":
            raise Ambiguous("a delimiter line ends with a bare CR, which origins read otherwise")
        if cursor >= size or body.startswith(b"\r\n", cursor):
            if starts_line and not (position == 0 or after_crlf):
                raise Ambiguous(
                    "a delimiter line follows a bare LF or the previous delimiter line, "
                    "which origins read differently"
                )
            if starts_line:
                consumed = min(cursor + 2, size)
                lines.append(_Line(position - 2 if after_crlf else position, consumed, close))
        elif starts_line and body[cursor] == 0x0A:
            raise Ambiguous("a delimiter line ends with a bare LF, which origins read otherwise")
        position = body.find(delimiter, end)
    return lines


class PartLimit(Exception):
    """More parts than the caller may inspect."""

    def __init__(self, parts: int) -> None:
        super().__init__(f"more than {parts} parts")
        self.parts = parts


def _part(chunk: bytes, cut: bool) -> Part:
    head, sep, content = chunk.partition(b"\r\n\r\n")
    if not sep:
        if chunk.startswith(b"\r\n"):  # no header lines at all
            head, content = b"", chunk[2:]
        elif cut:
            head, content = chunk, b""
        else:
            raise Ambiguous("a part has no blank line after its headers")
    if len(head) > MAX_PART_HEAD:
        raise Ambiguous(f"a part's headers are longer than {MAX_PART_HEAD} bytes")
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").split("\r\n"):
        if not line:
            continue
        if line[0] in _SPACES:
            raise Ambiguous("a part header is folded over lines")
        name, colon, value = line.partition(":")
        if not colon or name != name.strip():
            raise Ambiguous(f"part header line {line[:60]!r} is not `name: value`")
        key = lower_text(name)  # decoded as UTF-8: any Unicode
        if key in headers:
            raise Ambiguous(f"part header {key!r} is given twice")
        headers[key] = value.strip()
    disposition = headers.get("content-disposition", "")
    try:
        kind, params = header_parameters(disposition)
    except BadParameters as exc:
        raise Ambiguous(f"Content-Disposition does not parse: {exc}") from exc
    if disposition and kind != "form-data":
        raise Ambiguous(f"Content-Disposition {kind!r} is not form-data")
    filename = params.get("filename") or _extended(params.get("filename*", ""))
    return Part(
        name=params.get("name", ""),
        filename=filename or None,
        content_type=headers.get("content-type", ""),
        content=content,
        params=params,
    )


def _extended(value: str) -> str:
    """An RFC 5987 extended value (`utf-8''na%C3%AFve.txt`), decoded."""
    if not value:
        return ""
    charset, _, rest = value.partition("'")
    _, _, encoded = rest.partition("'")
    codec = charset.lower() if charset.lower() in ("utf-8", "iso-8859-1") else "utf-8"
    return unquote(encoded, encoding=codec, errors="replace")
