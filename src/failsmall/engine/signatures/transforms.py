"""The transformations a signature applies to a target value before matching.

Every transform is a total function `str -> str`: it never raises, whatever the input, so a
hostile request cannot turn a decoding step into a module failure. Each one has a fast path for
the common case where there is nothing to do, because they run on every request.
"""

from __future__ import annotations

import base64
import binascii
import html
import posixpath
import re
from collections.abc import Callable, Sequence
from urllib.parse import unquote

from failsmall.model.rules import Transform

TransformFn = Callable[[str], str]

#: How many times `url_decode` decodes a value that still changes (double, triple encoding).
URL_DECODE_ROUNDS = 3

_PERCENT_U = re.compile(r"%u([0-9a-fA-F]{4})")
_WHITESPACE_RUN = re.compile(r"\s+")
_BLOCK_COMMENT = re.compile(r"/\*!?(?:\d{5,6})?|\*/")
_CLOSED_BLOCK_COMMENT = re.compile(r"/\*(?!!).*?\*/", re.DOTALL)
_LINE_COMMENT = re.compile(r"(?:--|#)[^\n]*")
_CMD_DELETED = str.maketrans("", "", "\\\"'^")
_CMD_SEPARATORS = str.maketrans({",": " ", ";": " "})
_CMD_SPACE_BEFORE = re.compile(r"\s+(?=[/(])")
_JS_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2})|([0-7]{1,3})|(.))", re.DOTALL)
_JS_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v", "0": "\x00"}
_BASE64_SHAPE = re.compile(r"[A-Za-z0-9+/_\-]+={0,2}")


def url_decode(value: str) -> str:
    """Percent-decode (and `+` to space), repeated until stable, at most `URL_DECODE_ROUNDS`."""
    if "%" not in value and "+" not in value:
        return value
    value = value.replace("+", " ")
    for _ in range(URL_DECODE_ROUNDS):
        if "%" not in value:
            break
        decoded = unquote(value, errors="replace")
        if decoded == value:
            break
        value = decoded
    return value


def url_decode_uni(value: str) -> str:
    """`url_decode`, also decoding IIS-style `%uXXXX` escapes."""
    if "%" not in value and "+" not in value:
        return value
    if "%u" in value or "%U" in value:
        value = _PERCENT_U.sub(lambda m: chr(int(m.group(1), 16)), value.replace("%U", "%u"))
    return url_decode(value)


def html_entity_decode(value: str) -> str:
    """Decode named, decimal and hexadecimal HTML character references."""
    if "&" not in value:
        return value
    return html.unescape(value)


def lowercase(value: str) -> str:
    """Lowercase the value."""
    return value.lower()


def compress_whitespace(value: str) -> str:
    """Replace every run of whitespace with a single space."""
    return _WHITESPACE_RUN.sub(" ", value)


def remove_whitespace(value: str) -> str:
    """Delete all whitespace."""
    return _WHITESPACE_RUN.sub("", value)


def remove_nulls(value: str) -> str:
    """Delete NUL characters."""
    if "\x00" not in value:
        return value
    return value.replace("\x00", "")


def normalize_path(value: str) -> str:
    """Resolve `/./`, `/../` and `//`, treating backslashes as slashes; keep a trailing slash."""
    if "\\" in value:
        value = value.replace("\\", "/")
    if "/." not in value and "//" not in value and not value.startswith("."):
        return value
    if not value:
        return value
    normalised = posixpath.normpath(value)
    if value.startswith("//"):
        normalised = "/" + normalised.lstrip("/")
    if value.endswith("/") and not normalised.endswith("/"):
        normalised += "/"
    return normalised


def base64_decode(value: str) -> str:
    """Decode standard or URL-safe base64; a value that is not base64 passes unchanged."""
    stripped = value.strip()
    if len(stripped) < 4 or not _BASE64_SHAPE.fullmatch(stripped):
        return value
    padded = stripped + "=" * (-len(stripped.rstrip("=")) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return value
    return raw.decode("utf-8", errors="replace")


def remove_comments(value: str) -> str:
    """Remove SQL/C comments: `/* */` becomes a space, `--` and `#` run to the end of the line.

    MySQL executable comments (`/*!50000 SELECT */`) keep their content, which the server runs.
    """
    if "/*" not in value and "--" not in value and "#" not in value and "*/" not in value:
        return value
    value = _CLOSED_BLOCK_COMMENT.sub(" ", value)
    value = _BLOCK_COMMENT.sub(" ", value)
    return _LINE_COMMENT.sub("", value)


def cmd_line(value: str) -> str:
    """Normalise a shell command line the way an evasive payload would be run.

    Deletes `\\`, quotes and `^`; turns `,` and `;` into spaces; deletes spaces before `/` and
    `(`; compresses whitespace; lowercases. `c^at  /e"t"c/pass\\wd` becomes `cat/etc/passwd`.
    """
    value = value.translate(_CMD_DELETED).translate(_CMD_SEPARATORS)
    value = _WHITESPACE_RUN.sub(" ", value)
    value = _CMD_SPACE_BEFORE.sub("", value)
    return value.lower()


def _js_unescape(match: re.Match[str]) -> str:
    unicode, hex_byte, octal, other = match.groups()
    if unicode is not None:
        return chr(int(unicode, 16))
    if hex_byte is not None:
        return chr(int(hex_byte, 16))
    if octal is not None:
        return chr(int(octal, 8) & 0xFF)
    return _JS_SIMPLE.get(other, other)


def js_decode(value: str) -> str:
    """Decode JavaScript escapes: `\\uXXXX`, `\\xHH`, octal `\\OOO` and the single-letter ones."""
    if "\\" not in value:
        return value
    return _JS_ESCAPE.sub(_js_unescape, value)


TRANSFORMS: dict[Transform, TransformFn] = {
    Transform.URL_DECODE: url_decode,
    Transform.URL_DECODE_UNI: url_decode_uni,
    Transform.HTML_ENTITY_DECODE: html_entity_decode,
    Transform.LOWERCASE: lowercase,
    Transform.COMPRESS_WHITESPACE: compress_whitespace,
    Transform.REMOVE_WHITESPACE: remove_whitespace,
    Transform.REMOVE_NULLS: remove_nulls,
    Transform.NORMALIZE_PATH: normalize_path,
    Transform.BASE64_DECODE: base64_decode,
    Transform.REMOVE_COMMENTS: remove_comments,
    Transform.CMD_LINE: cmd_line,
    Transform.JS_DECODE: js_decode,
}


def chain(transforms: Sequence[Transform]) -> Callable[[str], str]:
    """One function applying `transforms` in order."""
    steps = tuple(TRANSFORMS[t] for t in transforms)

    def apply(value: str) -> str:
        for step in steps:
            value = step(value)
        return value

    return apply
