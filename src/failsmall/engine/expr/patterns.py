"""Regular expressions for `matches()`: accepted only when they run in linear time.

A pattern is accepted when Hyperscan's compiler accepts it (no backreferences, no lookaround, no
atomic groups or possessive quantifiers: the constructs that make backtracking engines
super-linear) and Python's `re` compiles it without a warning. It is then evaluated with `re`.
CEL's `matches()` is a search (unanchored) with RE2 semantics, where `$` matches only at the very
end of the text; Python's `$` also matches before a final newline, so a bare `$` is rewritten to
`\\Z` unless the pattern turns on multi-line mode.
"""

from __future__ import annotations

import re
import warnings
from typing import Final

import hyperscan

_HYPERSCAN_FLAGS: Final = hyperscan.HS_FLAG_ALLOWEMPTY | hyperscan.HS_FLAG_UTF8
_MULTILINE_FLAG: Final = re.compile(r"\(\?[a-zA-Z]*m")


class PatternError(ValueError):
    """A pattern that is invalid or could take more than linear time; the message says why."""


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Check `pattern` for linear-time evaluation and compile it for `re.search`."""
    try:
        hyperscan.Database().compile(
            expressions=[pattern.encode("utf-8")], ids=[0], elements=1, flags=[_HYPERSCAN_FLAGS]
        )
    except hyperscan.error as exc:
        raise PatternError(
            f"pattern {pattern!r} is refused because it cannot be matched in linear time or is "
            f"invalid ({exc}); remove backreferences, lookaround, atomic groups and possessive "
            "quantifiers"
        ) from exc
    translated = _end_anchors_to_absolute(pattern)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return re.compile(translated)
        except (re.error, FutureWarning, DeprecationWarning) as exc:
            raise PatternError(
                f"pattern {pattern!r} is not valid in the supported regular-expression syntax "
                f"({exc})"
            ) from exc


def _end_anchors_to_absolute(pattern: str) -> str:
    if _MULTILINE_FLAG.search(pattern):
        return pattern
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if char == "]":
                in_class = False
        elif char == "[":
            in_class = True
            # A ']' right after '[' or '[^' is a literal member of the class.
            lookahead = pattern[i + 1 : i + 3]
            if lookahead.startswith("]") or lookahead == "^]":
                skip = 2 if lookahead.startswith("]") else 3
                out.append(pattern[i : i + skip])
                i += skip
                continue
        elif char == "$":
            out.append(r"\Z")
            i += 1
            continue
        out.append(char)
        i += 1
    return "".join(out)
