"""The transformations a signature applies to a target value before matching.

Every transform is a total function `str -> str`: it never raises, whatever the input, so a
hostile request cannot turn a decoding step into a module failure. Each one has a fast path for
the common case where there is nothing to do, because they run on every request.
"""

from __future__ import annotations

import binascii
import html
import posixpath
import re
from collections.abc import Callable, Sequence
from html.entities import html5 as html5_entities

from failsmall.engine.signatures.entities import LOOSE_ENTITIES as _LOOSE_ENTITIES
from failsmall.engine.text_case import lower_text
from failsmall.model.rules import Transform

TransformFn = Callable[[str], str]

#: How many times `url_decode` decodes a value that still changes (double, triple encoding).
URL_DECODE_ROUNDS = 3

_PERCENT_U = re.compile(r"%u([0-9a-fA-F]{4})")
_LINE_COMMENT = re.compile(r"(?:--|#)[^\n]*")
_CMD_DELETED_CHARS = ("\\", '"', "'", "^")
_JS_SIMPLE = {"n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f", "v": "\v", "0": "\x00"}
# In any ASCII case only: a caseless Unicode regex also takes `ſ`, `ı` and `İ` for letters,
# whose `.lower()` is no key of the table.
_LOOSE_ENTITY = re.compile("&(" + "|".join(_LOOSE_ENTITIES) + ");", re.IGNORECASE | re.ASCII)
_BASE64_SHAPE = re.compile(r"[A-Za-z0-9+/_\-]+={0,2}")


def url_decode(value: str) -> str:
    """Percent-decode, repeated until stable, at most `URL_DECODE_ROUNDS` times.

    `+` is left alone: parsed arguments are already form-decoded, and a literal `+` in them is
    meaningful (`~+`, `1+1`).
    """
    if "%" not in value:
        return value
    for _ in range(URL_DECODE_ROUNDS):
        if "%" not in value:
            break
        decoded = percent_decode(value)
        if decoded == value:
            break
        value = decoded
    return value


_PERCENT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")


def _decode_run(match: re.Match[str]) -> str:
    return bytes.fromhex(match.group().replace("%", "")).decode("utf-8", "replace")


def percent_decode(value: str) -> str:
    """`urllib.parse.unquote(value, errors="replace")`, one call per run of escapes rather
    than per escape: linear in the value with a small constant, also on binary bodies."""
    return _PERCENT_RUN.sub(_decode_run, value)


def url_decode_uni(value: str) -> str:
    """`url_decode`, also decoding IIS-style `%uXXXX` escapes."""
    if "%" not in value:
        return value
    if "%u" in value or "%U" in value:
        value = _PERCENT_U.sub(lambda m: chr(int(m.group(1), 16)), value.replace("%U", "%u"))
    return url_decode(value)


# Where `html.unescape` can change anything: a numeric reference, a reference ending in `;`,
# or a legacy name that HTML decodes without its `;` (`&para`, `&not`, ...). Checking this with
# one regex first skips unescape's per-`&` Python callback for query strings like `a=1&b=2`.
_LEGACY_NAMES = sorted((n for n in html5_entities if not n.endswith(";")), key=len, reverse=True)


def _by_first_letter(names: Sequence[str]) -> str:
    """An alternation of `names` grouped by first letter (`a(?:acute|grave)|...`): the same
    strings as `a|b|...`, but at each `&` the regex tries one group instead of every name."""
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(name[0], []).append(re.escape(name[1:]))
    return "|".join(f"{re.escape(first)}(?:{'|'.join(rest)})" for first, rest in groups.items())


_CHARREF_START = re.compile("&(?:#|[^\t\n\f <&#;]{1,32};|" + _by_first_letter(_LEGACY_NAMES) + ")")
# What `_CHARREF_START` can find in a value without `;`: a numeric or a legacy reference.
_CHARREF_START_NO_SEMICOLON = re.compile("&(?:#|" + _by_first_letter(_LEGACY_NAMES) + ")")


# A numeric reference's digits, past its leading zeros. `html.unescape` reads them with `int`,
# which refuses more than 4,300 digits (`sys.get_int_max_str_digits`): `_short_number` writes
# each number with at most 8, the same number or one as far past Unicode.
_NUMBER = re.compile(r"&#(?:([xX])0*([0-9a-fA-F]+)|0*([0-9]+))")


def _short_number(match: re.Match[str]) -> str:
    x, hexadecimal, decimal = match.groups()
    if x is not None:
        return f"&#{x}{hexadecimal if len(hexadecimal) <= 8 else 'FFFFFFFF'}"
    return f"&#{decimal if len(decimal) <= 8 else '99999999'}"


def html_entity_decode(value: str) -> str:
    """Decode named, decimal and hexadecimal HTML character references.

    Named references are also decoded case-insensitively for the punctuation and whitespace
    entities browsers accept in any case (`&TAB;`, `&newline;`, `&colon;`), a common way to
    split `javascript:`.
    """
    if "&" not in value:
        return value
    if _CHARREF_START.search(value) is not None:
        if "&#" in value:
            value = _NUMBER.sub(_short_number, value)
        value = html.unescape(value)
    if "&" not in value or ";" not in value:  # every loose entity ends with `;`
        return value
    return _LOOSE_ENTITY.sub(lambda m: _LOOSE_ENTITIES[m.group(1).lower()], value)


def lowercase(value: str) -> str:
    """Lowercase the value, as `str.lower` does (request text may be any Unicode)."""
    return lower_text(value)


def compress_whitespace(value: str) -> str:
    """Replace every run of whitespace with a single space."""
    if "  " not in value and value.isprintable():
        return value
    return _compress(value)


def _compress(value: str) -> str:
    # str.split() runs in C and is several times faster than a `\s+` substitution.
    parts = value.split()
    out = " ".join(parts)
    if value[:1].isspace():
        out = " " + out
    if parts and value[-1:].isspace():
        out += " "
    return out


def remove_whitespace(value: str) -> str:
    """Delete all whitespace."""
    if " " not in value and value.isprintable():
        return value
    return "".join(value.split())


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
    if len(stripped) < 4:
        return value
    if not (stripped.isascii() and stripped.isalnum()) and not _BASE64_SHAPE.fullmatch(stripped):
        return value
    core = stripped.rstrip("=")
    if len(core) % 4 == 1:  # no base64 string has such a length, padded or not
        return value
    padded = core + "=" * (-len(core) % 4)
    if "-" in padded or "_" in padded:
        padded = padded.replace("-", "+").replace("_", "/")
    # `base64.b64decode(padded, validate=True)` without its wrapping: `padded` is ASCII.
    try:
        raw = binascii.a2b_base64(padded, strict_mode=True)
    except binascii.Error:
        return value
    return raw.decode("utf-8", "replace")


def remove_comments(value: str) -> str:
    """Remove SQL/C comments: `/* */` becomes a space, `--` and `#` run to the end of the line.

    MySQL executable comments (`/*!50000 SELECT */`) keep their content, which the server runs;
    an unterminated `/*` comments out the rest. One forward pass, linear in the value's length
    (a lazy regex from each `/*` to the next `*/` is quadratic on many unclosed `/*`).
    """
    if "/*" not in value and "--" not in value and "#" not in value and "*/" not in value:
        return value
    if "/*" in value or "*/" in value:
        value = _strip_block_comments(value)
    return _LINE_COMMENT.sub("", value)


def _strip_block_comments(value: str) -> str:
    parts: list[str] = []
    position = 0
    while True:
        start = value.find("/*", position)
        if start < 0:
            parts.append(value[position:])
            break
        parts.append(value[position:start])
        parts.append(" ")
        if value.startswith("/*!", start):
            position = start + 3
            while position < len(value) and position - start < 9 and value[position].isdigit():
                position += 1
            continue
        end = value.find("*/", start + 2)
        if end < 0:
            position = len(value)
            continue
        position = end + 2
    return "".join(parts).replace("*/", " ")


def cmd_line(value: str) -> str:
    """Normalise a shell command line the way an evasive payload would be run.

    Deletes `\\`, quotes and `^`; turns `,` into a space; deletes spaces before `/` and `(`;
    compresses whitespace. `c^at  /e"t"c/pass\\wd` becomes `cat/etc/passwd`. Unlike
    ModSecurity's cmdLine it keeps `;`, which separates commands that rules look for, and the
    case of letters (patterns are caseless; chain `lowercase` where case matters).
    """
    for deleted in _CMD_DELETED_CHARS:  # str.replace is C all the way; translate is not
        if deleted in value:
            value = value.replace(deleted, "")
    if "," in value:
        value = value.replace(",", " ")
    return _compress(value).replace(" /", "/").replace(" (", "(")


_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
#: Escapes that stand for their character, the most common in JSON text.
_JS_PLAIN_ESCAPES = (('\\"', '"'), ("\\/", "/"), ("\\'", "'"))
_HEX2 = re.compile(r"[0-9a-fA-F]{2}")
_OCTAL = re.compile(r"[0-7]{1,3}")


def js_decode(value: str) -> str:
    """Decode JavaScript escapes: `\\uXXXX`, `\\xHH`, octal `\\OOO` and the single-letter ones.

    The same as one left-to-right substitution of each escape, in C where it can be: escaped
    backslashes pair up from the left (`str.split`), and between them every backslash starts
    an escape, so the quotes and slashes JSON text escapes by the thousand are `str.replace`d;
    what is left is decoded escape by escape.
    """
    if "\\" not in value:
        return value
    if "\\\\" in value:
        return "\\".join(map(_js_decode_unpaired, value.split("\\\\")))
    return _js_decode_unpaired(value)


def _js_decode_unpaired(value: str) -> str:
    """`js_decode` of a value without two backslashes in a row."""
    if "\\" not in value:
        return value
    for escaped, char in _JS_PLAIN_ESCAPES:
        if escaped in value:
            value = value.replace(escaped, char)
    if "\\" not in value:
        return value
    pieces = value.split("\\")
    out = [pieces[0]]
    for piece in pieces[1:]:
        if not piece:  # only a backslash ending the value leaves an empty piece: it stays
            out.append("\\")
            continue
        first = piece[0]
        if first == "u" and _HEX4.match(piece, 1):
            out.append(chr(int(piece[1:5], 16)))
            out.append(piece[5:])
        elif first == "x" and _HEX2.match(piece, 1):
            out.append(chr(int(piece[1:3], 16)))
            out.append(piece[3:])
        elif "0" <= first <= "7":
            digits = _OCTAL.match(piece)
            assert digits is not None
            out.append(chr(int(digits.group(), 8) & 0xFF))
            out.append(piece[digits.end() :])
        else:
            out.append(_JS_SIMPLE.get(first, first))
            out.append(piece[1:])
    return "".join(out)


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


#: Features of a value that a transform may act on. `features(value)` computes them once per
#: value; a transform whose trigger features are all absent leaves the value unchanged, and so
#: does a chain none of whose transforms is triggered (each step passes the value on as is).
PERCENT = 1 << 0
AMPERSAND = 1 << 1
BACKSLASH = 1 << 2
NUL = 1 << 3
SPACE = 1 << 4
ODD_WHITESPACE = 1 << 5
UPPER_OR_WIDE = 1 << 6
PATH_DOTS = 1 << 7
BASE64_SHAPE = 1 << 8
COMMENT = 1 << 9
SHELL_PUNCTUATION = 1 << 10

_BASE64_CANDIDATE = re.compile(r"\s*[A-Za-z0-9+/_\-]+={0,2}\s*")

TRIGGERS: dict[Transform, int] = {
    Transform.URL_DECODE: PERCENT,
    Transform.URL_DECODE_UNI: PERCENT,
    Transform.HTML_ENTITY_DECODE: AMPERSAND,
    Transform.LOWERCASE: UPPER_OR_WIDE,
    Transform.COMPRESS_WHITESPACE: ODD_WHITESPACE,
    Transform.REMOVE_WHITESPACE: SPACE | ODD_WHITESPACE,
    Transform.REMOVE_NULLS: NUL,
    Transform.NORMALIZE_PATH: BACKSLASH | PATH_DOTS,
    Transform.BASE64_DECODE: BASE64_SHAPE,
    Transform.REMOVE_COMMENTS: COMMENT,
    Transform.CMD_LINE: BACKSLASH | SHELL_PUNCTUATION | ODD_WHITESPACE,
    Transform.JS_DECODE: BACKSLASH,
}


ALL_FEATURES = (1 << 11) - 1


def features(value: str, wanted: int = ALL_FEATURES) -> int:
    """The trigger features present in `value` (see `TRIGGERS`), among those `wanted`.

    A feature may be reported where the transform then finds nothing to do (a superset is
    sound: the chain runs and returns the value unchanged), never the other way round.
    """
    if value.isalnum():
        return _alphanumeric_features(value) & wanted
    # (A value with an `&`, like a query string or a URI, is never plain: no regex for it.)
    if "&" not in value and _PLAIN.fullmatch(value) is not None:
        return _plain_features(value, wanted)
    return _features(value, wanted)


#: ASCII words joined by single separators, maybe between slashes (`/products/42`, `item 42`,
#: `en-GB`, `shop.example`, `a=1`): no `%&\`, no control, no `/.`, `//`, `/*`, `*/`, `--`,
#: `  `, ` /` and nothing else `_features` looks for but a space, case and base64 shape.
_PLAIN = re.compile(r"/?[A-Za-z0-9]++(?:[ .:?=+/_-][A-Za-z0-9]++)*+/?")


def _alphanumeric_features(value: str) -> int:
    """`_features` of a value of letters and digits only, which has no punctuation, no
    whitespace and no control characters: only case and base64 shape are left to look at."""
    found = 0
    if not value.isascii() or value.lower() != value:
        found |= UPPER_OR_WIDE
    if len(value) >= 4 and value.isascii():
        found |= BASE64_SHAPE
    return found


def _plain_features(value: str, wanted: int) -> int:
    """`_features` of a value `_PLAIN` matches: only space, case and base64 shape are left."""
    found = 0
    if " " in value:
        found |= SPACE  # and then it is not base64-shaped: its spaces are inner ones
    elif wanted & BASE64_SHAPE and len(value) >= 4 and _base64_shaped(value):
        found |= BASE64_SHAPE
    if value.lower() != value:
        found |= UPPER_OR_WIDE
    return found & wanted


def _features(value: str, wanted: int) -> int:
    found = 0
    # Two-character needles are only searched for when their first character occurs at all:
    # single-character `in` is a memchr, which keeps large bodies cheap.
    has_space = " " in value
    has_slash = "/" in value
    if wanted & PERCENT and "%" in value:
        found |= PERCENT
    # An `&` that starts no character reference (`a=1&b=2`) gives `html_entity_decode` nothing
    # to do: loose entities end with `;`, and the rest are what `_CHARREF_START` finds.
    if (
        wanted & AMPERSAND
        and "&" in value
        and (";" in value or _CHARREF_START_NO_SEMICOLON.search(value) is not None)
    ):
        found |= AMPERSAND
    if wanted & BACKSLASH and "\\" in value:
        found |= BACKSLASH
    if wanted & NUL and "\x00" in value:
        found |= NUL
    if wanted & SPACE and has_space:
        found |= SPACE
    # Every whitespace character but the space is unprintable to Python, as are controls.
    if wanted & ODD_WHITESPACE and ((has_space and "  " in value) or not value.isprintable()):
        found |= ODD_WHITESPACE
    # An ASCII value has upper case letters if lowering changes it; any other value is wide.
    if wanted & UPPER_OR_WIDE and (not value.isascii() or value.lower() != value):
        found |= UPPER_OR_WIDE
    if wanted & PATH_DOTS and (
        value.startswith(".") or (has_slash and ("/." in value or "//" in value))
    ):
        found |= PATH_DOTS
    if wanted & BASE64_SHAPE and len(value) >= 4 and _base64_shaped(value):
        found |= BASE64_SHAPE
    if wanted & COMMENT and (
        "#" in value
        or (has_slash and ("/*" in value or "*/" in value))
        or ("-" in value and "--" in value)
    ):
        found |= COMMENT
    if wanted & SHELL_PUNCTUATION and (
        '"' in value
        or "'" in value
        or "^" in value
        or "," in value
        or (has_space and (" /" in value or " (" in value))
    ):
        found |= SHELL_PUNCTUATION
    return found


def _base64_shaped(value: str) -> bool:
    core = value.strip().rstrip("=")
    if core.isascii() and core.isalnum():
        return True
    return _BASE64_CANDIDATE.fullmatch(value) is not None


def triggers(transforms: Sequence[Transform]) -> int:
    """The features that may make the chain `transforms` change a value."""
    mask = 0
    for transform in transforms:
        mask |= TRIGGERS[transform]
    return mask


def chain(transforms: Sequence[Transform]) -> Callable[[str], str]:
    """One function applying `transforms` in order."""
    steps = tuple(TRANSFORMS[t] for t in transforms)

    def apply(value: str) -> str:
        for step in steps:
            value = step(value)
        return value

    return apply
