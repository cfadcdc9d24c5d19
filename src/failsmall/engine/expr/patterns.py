"""Regular expressions for `matches()`: linear-time only, with exactly CEL's semantics.

A pattern must pass Hyperscan's compiler (no backreferences, no lookaround, no atomic groups or
possessive quantifiers: the constructs that make backtracking engines super-linear). It is then
compiled with Rust's `regex` crate (through `rurex`), the engine the reference CEL implementation
uses, so `\\w`, `\\s`, `$`, case folding and every other detail mean what they mean in CEL, and
matching takes linear time in the text. Python's `re` would differ: its `$` also matches before a
final newline, its `\\s` includes \\x1c-\\x1f, its `\\w` excludes combining marks.
CEL's `matches()` is a search: the pattern may match anywhere unless anchored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import hyperscan
import rurex

_HYPERSCAN_FLAGS: Final = hyperscan.HS_FLAG_ALLOWEMPTY | hyperscan.HS_FLAG_UTF8

Search = Callable[[str], Any]
"""`search(text)` returns a match object or None, as `re.Pattern.search` does."""


class PatternError(ValueError):
    """A pattern that is invalid or could take more than linear time; the message says why."""


def compile_pattern(pattern: str) -> Search:
    """Check `pattern` for linear-time evaluation and compile it; returns its search function."""
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
    try:
        compiled = rurex.compile(pattern)
    except rurex.error as exc:
        raise PatternError(
            f"pattern {pattern!r} is not a valid regular expression ({exc})"
        ) from exc
    search: Search = compiled.search
    return search
