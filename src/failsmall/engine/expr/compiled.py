"""A compiled node: a closure `run(view, scope)` and what the compiler knows about its value.

`scope` is a tuple holding the values of the comprehension variables in nesting order, so a compiled
expression keeps no mutable state and can be evaluated from several threads at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from failsmall.engine.request import Request, RequestView

from . import values as v
from .errors import ExpressionEvalError
from .fields import Kind

Scope = tuple[Any, ...]
Run = Callable[[RequestView, Scope], Any]
Read = Callable[[RequestView], Any]


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled node: its closure, the CEL type it always yields, and its value if constant.

    `read` is set when the node reads a field and nothing else: `read(view)` is `run(view, scope)`
    with one call less, for the operators that apply to fields most (comparisons with constants,
    string methods, IP lists).
    """

    run: Run
    kind: Kind
    constant: bool = False
    value: Any = None
    read: Read | None = None


def kind_of(value: object) -> Kind:
    """The static kind of a constant."""
    kind = type(value)
    if kind is bool:
        return Kind.BOOL
    if kind is int:
        return Kind.INT
    if kind is v.UInt:
        return Kind.UINT
    if kind is float:
        return Kind.DOUBLE
    if kind is str:
        return Kind.STRING
    if kind is bytes:
        return Kind.BYTES
    if kind is list:
        return Kind.LIST
    if kind is dict:
        return Kind.MAP
    return Kind.NULL


def constant(value: Any) -> Compiled:
    """A node whose value is known at compile time."""

    def run(view: RequestView, scope: Scope) -> Any:
        return value

    return Compiled(run, kind_of(value), True, value)


def fold(compiled: Compiled, *children: Compiled) -> Compiled:
    """Evaluate a pure node with constant children now; an error is left for evaluation time."""
    if not all(child.constant for child in children):
        return compiled
    try:
        value = compiled.run(_NO_VIEW, ())
    except ExpressionEvalError:
        return compiled
    return constant(value)


# Folding evaluates nodes that read no field; they are handed this request to satisfy the signature.
_NO_VIEW: Final = RequestView(Request(method="GET", path="/"))
