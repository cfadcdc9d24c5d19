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


class ReferenceRefusal(Exception):
    """The reference implementation refuses an expression or a pattern; the message is its own."""


def reference_check_parse(source: str) -> None:
    """Raise `ReferenceRefusal` unless the reference parses `source`."""
    try:
        cel.compile(source)
    except ValueError as exc:
        raise ReferenceRefusal(str(exc)) from exc


def reference_parses(source: str) -> bool:
    """Whether the reference parses `source`."""
    try:
        reference_check_parse(source)
    except ReferenceRefusal:
        return False
    return True


def reference_check_pattern(pattern: str) -> None:
    """Raise `ReferenceRefusal` unless the reference's regular-expression engine accepts
    `pattern`."""
    try:
        _PATTERN_PROBE.execute({"text": "", "pattern": pattern})
    except (RuntimeError, ValueError) as exc:
        lines = [line.strip() for line in str(exc).splitlines()]
        raise ReferenceRefusal(
            next((line for line in lines if line.startswith("error:")), lines[0])
        ) from exc


def reference_activation(expression: Expression, view: RequestView) -> dict[str, Any]:
    """The reference's variables and functions for `expression` on `view`: the fields it reads
    (under their flat names) and `ip_in_list` / `ip_in_cidr` over its address sets."""
    activation: dict[str, Any] = {}
    for path in expression.fields:
        try:
            activation[reference_name(path)] = FIELDS[path].read(view)
        except ExpressionEvalError:
            # A field without a value (bot.score when unscored) is left undefined.
            continue
    sets = expression.address_sets

    def ip_in_list(address: Any, name: Any) -> bool:
        return sets[name].contains(address)

    def ip_in_cidr(address: Any, cidr: Any) -> bool:
        return sets[f"cidr:{cidr}"].contains(address)

    activation["ip_in_list"] = ip_in_list
    activation["ip_in_cidr"] = ip_in_cidr
    return activation


def reference_context(expression: Expression, view: RequestView) -> cel.Context:
    """The same activation as a `cel.Context`, the reference's faster form for repeated use."""
    context = cel.Context()
    for name, value in reference_activation(expression, view).items():
        if callable(value):
            context.add_function(name, value)
        else:
            context.add_variable(name, value)
    return context


def reference_evaluate(expression: Expression, view: RequestView) -> Any:
    """Evaluate `expression` on `view` with the reference implementation.

    Raises `ReferenceEvalError` when the reference reports an evaluation error.
    """
    program = cel.compile(expression.reference_source)
    try:
        return program.execute(reference_activation(expression, view))
    except (RuntimeError, ValueError, TypeError, KeyError, IndexError, ArithmeticError) as exc:
        raise ReferenceEvalError(f"{type(exc).__name__}: {exc}") from exc
