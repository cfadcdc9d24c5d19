"""The reference CEL implementation (the `cel` package), used to check our evaluator.

Every expression must also parse with the reference, and every `matches()` pattern must be accepted
by its regular-expression engine: we accept only real CEL. The reference is too slow for the request
path, so it is used at build time, by `failsmall verify --reference` and by the differential tests.

The reference sees each field as a flat variable (see `fields.reference_name`), because in nested
maps `http.request.uri` could not be both a string and the parent of `http.request.uri.path`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import cel

from failsmall.engine.request import RequestView

from .errors import ExpressionEvalError
from .fields import FIELDS, reference_name

if TYPE_CHECKING:
    from .expression import Expression

_PATTERN_PROBE: Final = cel.compile("text.matches(pattern)")


class ReferenceEvalError(Exception):
    """The reference implementation failed to evaluate an expression; the message is its own."""


def reference_parse_error(source: str) -> str | None:
    """Why the reference refuses to parse `source`, or None when it parses."""
    try:
        cel.compile(source)
    except ValueError as exc:
        return str(exc)
    return None


def reference_pattern_error(pattern: str) -> str | None:
    """Why the reference's regular-expression engine refuses `pattern`, or None."""
    try:
        _PATTERN_PROBE.execute({"text": "", "pattern": pattern})
    except (RuntimeError, ValueError) as exc:
        return str(exc).split("\n", 1)[0]
    return None


def reference_context(expression: Expression, view: RequestView) -> cel.Context:
    """A reference evaluation context holding the fields `expression` reads from `view`, and the
    `ip_in_list` / `ip_in_cidr` functions over the expression's address sets."""
    context = cel.Context()
    for path in expression.fields:
        try:
            value = FIELDS[path].read(view)
        except ExpressionEvalError:
            # A field without a value (bot.score when unscored) is left undefined.
            continue
        context.add_variable(reference_name(path), value)
    sets = expression.address_sets

    def ip_in_list(address: Any, name: Any) -> bool:
        return sets[name].contains(address)

    def ip_in_cidr(address: Any, cidr: Any) -> bool:
        return sets[f"cidr:{cidr}"].contains(address)

    context.add_function("ip_in_list", ip_in_list)
    context.add_function("ip_in_cidr", ip_in_cidr)
    return context


def reference_evaluate(expression: Expression, view: RequestView) -> Any:
    """Evaluate `expression` on `view` with the reference implementation.

    Raises `ReferenceEvalError` when the reference reports an evaluation error.
    """
    program = cel.compile(expression.reference_source)
    try:
        return program.execute(reference_context(expression, view))
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, ArithmeticError) as exc:
        raise ReferenceEvalError(f"{type(exc).__name__}: {exc}") from exc
