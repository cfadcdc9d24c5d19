"""Rule expressions: CEL conditions over request fields named like Cloudflare's rules language.

    compile_expression(
        'http.request.uri.path.startsWith("/admin") && !ip_in_list(ip.src, "office")',
        ip_lists={"office": ["10.0.0.0/8"]},
    )

An expression is parsed by our own parser and compiled to Python closures, fast enough for the
request path; it is also checked with the reference CEL implementation, so only real CEL is
accepted. `FIELDS` is the registry of readable fields.
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
