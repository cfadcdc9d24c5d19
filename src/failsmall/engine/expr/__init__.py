"""Rule expressions: CEL conditions over request fields named like Cloudflare's rules language.

    compile_expression(
        'http.request.uri.path.startsWith("/admin") && !ip_in_list(ip.src, "office")',
        ip_lists={"office": ["10.0.0.0/8"]},
    )

An expression is parsed by our own parser and compiled to Python closures, fast enough for the
request path; it is also checked with the reference CEL implementation (the `cel` package), so only
real CEL is accepted. `FIELDS` is the registry of readable fields (`failsmall expr fields`).

Supported: int, uint, double, string (raw, triple-quoted, escapes), bytes, bool and null literals;
lists and maps; field selection and indexing; `in`; `== != < <= > >=`; `&& || !` (an error on one
side is absorbed when the other side decides); `?:`; `+ - * / %`; `size`, `int`, `double`,
`string`; the string methods `contains`, `startsWith`, `endsWith`, `matches`; `has()`; the macros
`exists`, `all`, `exists_one`, `map`, `filter`; and `ip_in_list(addr, "list")`,
`ip_in_cidr(addr, "cidr")`.

Stricter than the reference, at compile time: an unknown field, variable or function; `has()` of a
field (fields are always present); a `matches()` pattern that is not a literal, not linear-time
(checked with Hyperscan) or not accepted by the reference's regex engine; an unknown IP list or a
bad CIDR. Where the reference departs from the CEL specification we follow the reference, so a
rule means one thing: `size()` of a string counts UTF-8 bytes, `-(INT_MIN)` wraps to INT_MIN, and a
comprehension stops at the first error. One departure of ours: a map literal mixing keys that
Python's dict cannot keep apart (`1` and `true`) fails at evaluation.
"""

from __future__ import annotations

from .errors import ExpressionError, ExpressionEvalError
from .expression import Expression, compile_expression
from .fields import FIELDS, FieldSpec

__all__ = [
    "FIELDS",
    "Expression",
    "ExpressionError",
    "ExpressionEvalError",
    "FieldSpec",
    "compile_expression",
]
