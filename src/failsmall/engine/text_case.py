"""Lowercasing request text exactly as CPython's `str.lower` does.

The engine's modules are compiled by mypyc (pyproject.toml's `[tool.failsmall]`), which replaces
`text.lower()` with its own lowercasing; on Python 3.11 that lacks the final-sigma rule
(CPython lowers 'ΑΣ' to 'ας', mypyc's to 'ασ'). Text that may be any Unicode (decoded as
UTF-8 from a request) is lowercased with `lower_text`: `str.lower` called as a plain function,
which mypyc leaves to CPython. Names decoded as Latin-1 have no sigma and keep `.lower()`.
"""

from __future__ import annotations

from collections.abc import Callable

lower_text: Callable[[str], str] = str.lower
