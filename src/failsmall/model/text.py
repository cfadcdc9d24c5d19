"""Text that people read: which characters must never reach a terminal as themselves.

Control characters (C0, DEL, C1: the ESC of a terminal escape sequence, CSI, carriage return,
backspace ...), line and paragraph separators and the bidirectional overrides that make text
display in another order than it reads (CVE-2021-42574). The API refuses them in the free text
it stores (reasons, principal names); the CLI shows any that arrive from elsewhere escaped.
"""

from __future__ import annotations

import unicodedata

_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)


def is_unsafe(char: str) -> bool:
    """Whether `char` changes what a terminal shows instead of showing itself."""
    return unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS


def unsafe_characters(text: str) -> list[str]:
    """The unsafe characters of `text`, as escapes a person can read (`\\x1b`, `\\u202e`)."""
    return sorted({_escape(c) for c in text if is_unsafe(c)})


def printable(text: str) -> str:
    """`text` with every unsafe character replaced by its visible escape."""
    if not any(is_unsafe(c) for c in text):
        return text
    return "".join(_escape(c) if is_unsafe(c) else c for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
