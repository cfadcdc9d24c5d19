"""`json.loads` without recursion: the same document, or the same refusal, at any depth.

`json.loads` recurses once per nested container on the Python stack, so where it gives up with
RecursionError depends on how deep its caller already is. `load_json` reads containers with a
list as its stack and reuses `json`'s own pieces for the rest (`json.decoder.scanstring` for
strings, `json.detect_encoding` for bytes), so a body is a document or a ValueError whatever
its depth and wherever it is called from: the rule `engine/_jsonwalk.c` follows, in readable
form.
"""

from __future__ import annotations

import json
import json.decoder
import re
from collections.abc import Callable

#: json's string reader (the compiled one where there is one), which typeshed does not declare.
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_SPACE = re.compile(r"[ \t\n\r]*")
#: CPython's `_json` scanner reads ASCII digits only (the `\d` of json.scanner.NUMBER_RE would
#: take any Unicode digit).
_NUMBER = re.compile(r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_CONSTANTS: tuple[tuple[str, object], ...] = (
    ("null", None),
    ("true", True),
    ("false", False),
    ("NaN", float("nan")),
    ("Infinity", float("inf")),
    ("-Infinity", float("-inf")),
)


def load_json(body: bytes) -> object:
    """What `json.loads(body)` gives with an unlimited recursion: the document, or ValueError
    (JSONDecodeError, UnicodeDecodeError, or int's digit limit) when `body` is not JSON."""
    return load_json_text(body.decode(json.detect_encoding(body), "surrogatepass"))


def load_json_text(text: str) -> object:
    """The document `text` holds; raises ValueError when it holds none."""
    open_containers: list[tuple[dict[str, object] | list[object], str]] = []
    i = _space(text, 0)
    while True:
        value, i, opened = _value(text, i)
        if opened is not None:
            open_containers.append(opened)
            continue
        while True:  # `value` is complete: it goes into its container, which may close
            if not open_containers:
                end = _space(text, i)
                if end != len(text):
                    raise json.JSONDecodeError("Extra data", text, end)
                return value
            container, key = open_containers[-1]
            if isinstance(container, dict):
                container[key] = value
            else:
                container.append(value)
            i = _space(text, i)
            follows = text[i : i + 1]
            if follows == ",":
                i = _space(text, i + 1)
                if isinstance(container, dict):
                    key, i = _key(text, i)
                    open_containers[-1] = (container, key)
                break
            if follows != ("}" if isinstance(container, dict) else "]"):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
            open_containers.pop()
            value, i = container, i + 1


def _value(
    text: str, i: int
) -> tuple[object, int, tuple[dict[str, object] | list[object], str] | None]:
    """The value starting at `i` and the index after it, or a container just opened (with its
    first key, for an object) and the index of its first value."""
    first = text[i : i + 1]
    if first == "{":
        i = _space(text, i + 1)
        if text[i : i + 1] == "}":
            return {}, i + 1, None
        key, i = _key(text, i)
        return None, i, ({}, key)
    if first == "[":
        i = _space(text, i + 1)
        if text[i : i + 1] == "]":
            return [], i + 1, None
        return None, i, ([], "")
    if first == '"':
        string, end = _scanstring(text, i + 1, True)
        return string, end, None
    for word, constant in _CONSTANTS:
        if text.startswith(word, i):
            return constant, i + len(word), None
    number = _NUMBER.match(text, i)
    if number is None:
        raise json.JSONDecodeError("Expecting value", text, i)
    integer, fraction, exponent = number.groups()
    if fraction or exponent:
        return float(integer + (fraction or "") + (exponent or "")), number.end(), None
    return int(integer), number.end(), None


def _key(text: str, i: int) -> tuple[str, int]:
    """The object key at `i` and the index of its value."""
    if text[i : i + 1] != '"':
        raise json.JSONDecodeError("Expecting property name enclosed in double quotes", text, i)
    key, i = _scanstring(text, i + 1, True)
    i = _space(text, i)
    if text[i : i + 1] != ":":
        raise json.JSONDecodeError("Expecting ':' delimiter", text, i)
    return key, _space(text, i + 1)


def _space(text: str, i: int) -> int:
    match = _SPACE.match(text, i)
    assert match is not None  # the pattern matches the empty string
    return match.end()
