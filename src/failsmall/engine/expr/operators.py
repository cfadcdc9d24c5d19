"""Operators over compiled operands, each returning the closure that applies it.

Where the kinds of the operands are known exactly (fields and literals have fixed types), a direct
Python operation is emitted instead of the generic, type-checking one from `values`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, assert_never

from failsmall.engine.request import RequestView

from . import values as v
from .compiled import Compiled, Scope, fold
from .errors import ExpressionEvalError
from .fields import Kind
from .syntax import BinaryOp, UnaryOp


def unary(op: UnaryOp, operand: Compiled) -> Compiled:
    """`!operand` or `-operand`."""
    run_operand = operand.run
    match op:
        case UnaryOp.NOT:
            if operand.kind is Kind.BOOL:

                def run_not(view: RequestView, scope: Scope) -> Any:
                    return not run_operand(view, scope)

            else:

                def run_not(view: RequestView, scope: Scope) -> Any:
                    return v.logical_not(run_operand(view, scope))

            return fold(Compiled(run_not, Kind.BOOL), operand)
        case UnaryOp.NEGATE:

            def run_negate(view: RequestView, scope: Scope) -> Any:
                return v.negate(run_operand(view, scope))

            kind = operand.kind if operand.kind in (Kind.INT, Kind.DOUBLE) else Kind.DYN
            return fold(Compiled(run_negate, kind), operand)
        case _:
            assert_never(op)


def binary(op: BinaryOp, left: Compiled, right: Compiled) -> Compiled:
    """Any infix operator other than `&&` and `||`."""
    match op:
        case BinaryOp.EQ | BinaryOp.NE:
            compiled = equality(left, right, negate=op is BinaryOp.NE)
        case BinaryOp.LT | BinaryOp.LE | BinaryOp.GT | BinaryOp.GE:
            compiled = ordering(op, left, right)
        case BinaryOp.IN:
            compiled = membership(left, right)
        case BinaryOp.ADD | BinaryOp.SUB | BinaryOp.MUL | BinaryOp.DIV | BinaryOp.MOD:
            compiled = arithmetic(op, left, right)
        case _:
            assert_never(op)
    return fold(compiled, left, right)


def equality(left: Compiled, right: Compiled, negate: bool) -> Compiled:
    """`==` (or `!=` when `negate`)."""
    run_left, run_right = left.run, right.run
    if right.constant and not left.constant:
        left, right = right, left
        run_left, run_right = run_right, run_left
    # Python's == on a str or bytes constant agrees with CEL for every other operand; so does
    # == between two values of one exactly known kind.
    direct = (left.constant and left.kind in (Kind.STRING, Kind.BYTES)) or (
        left.kind is right.kind and left.kind in (Kind.STRING, Kind.INT, Kind.BOOL)
    )
    if direct and left.constant and right.read is not None:
        value, read = left.value, right.read
        if negate:
            return Compiled(lambda view, scope: read(view) != value, Kind.BOOL)
        return Compiled(lambda view, scope: read(view) == value, Kind.BOOL)
    if direct and left.constant:
        value = left.value
        if negate:

            def run(view: RequestView, scope: Scope) -> Any:
                return run_right(view, scope) != value

        else:

            def run(view: RequestView, scope: Scope) -> Any:
                return run_right(view, scope) == value

    elif direct:
        if negate:

            def run(view: RequestView, scope: Scope) -> Any:
                return run_left(view, scope) != run_right(view, scope)

        else:

            def run(view: RequestView, scope: Scope) -> Any:
                return run_left(view, scope) == run_right(view, scope)

    elif negate:

        def run(view: RequestView, scope: Scope) -> Any:
            return not v.equals(run_left(view, scope), run_right(view, scope))

    else:

        def run(view: RequestView, scope: Scope) -> Any:
            return v.equals(run_left(view, scope), run_right(view, scope))

    return Compiled(run, Kind.BOOL)


def ordering(op: BinaryOp, left: Compiled, right: Compiled) -> Compiled:
    """`<`, `<=`, `>`, `>=`."""
    run_left, run_right = left.run, right.run
    if left.kind is right.kind and left.kind in (Kind.STRING, Kind.INT):
        direct: dict[BinaryOp, Callable[[Any, Any], Any]] = {
            BinaryOp.LT: lambda a, b: a < b,
            BinaryOp.LE: lambda a, b: a <= b,
            BinaryOp.GT: lambda a, b: a > b,
            BinaryOp.GE: lambda a, b: a >= b,
        }
        if right.constant and left.read is not None:  # a field against a constant, a call less
            read, value = left.read, right.value
            match op:
                case BinaryOp.LT:
                    return Compiled(lambda view, scope: read(view) < value, Kind.BOOL)
                case BinaryOp.LE:
                    return Compiled(lambda view, scope: read(view) <= value, Kind.BOOL)
                case BinaryOp.GT:
                    return Compiled(lambda view, scope: read(view) > value, Kind.BOOL)
                case BinaryOp.GE:
                    return Compiled(lambda view, scope: read(view) >= value, Kind.BOOL)
        if right.constant:
            value = right.value
            match op:
                case BinaryOp.LT:
                    return Compiled(lambda view, scope: run_left(view, scope) < value, Kind.BOOL)
                case BinaryOp.LE:
                    return Compiled(lambda view, scope: run_left(view, scope) <= value, Kind.BOOL)
                case BinaryOp.GT:
                    return Compiled(lambda view, scope: run_left(view, scope) > value, Kind.BOOL)
                case BinaryOp.GE:
                    return Compiled(lambda view, scope: run_left(view, scope) >= value, Kind.BOOL)
        compare = direct[op]
    else:
        compare = {
            BinaryOp.LT: v.less,
            BinaryOp.LE: v.less_equal,
            BinaryOp.GT: v.greater,
            BinaryOp.GE: v.greater_equal,
        }[op]

    def run(view: RequestView, scope: Scope) -> Any:
        return compare(run_left(view, scope), run_right(view, scope))

    return Compiled(run, Kind.BOOL)


def membership(item: Compiled, container: Compiled) -> Compiled:
    """`item in container`."""
    run_item, run_container = item.run, container.run
    if (
        item.kind is Kind.STRING
        and container.constant
        and container.kind is Kind.LIST
        and all(type(element) is str for element in container.value)
    ):
        members = frozenset(container.value)

        def run_set(view: RequestView, scope: Scope) -> bool:
            return run_item(view, scope) in members

        return Compiled(run_set, Kind.BOOL)
    if item.kind is Kind.STRING and container.kind is Kind.STRING_MAP:

        def run_key(view: RequestView, scope: Scope) -> bool:
            return run_item(view, scope) in run_container(view, scope)

        return Compiled(run_key, Kind.BOOL)

    def run(view: RequestView, scope: Scope) -> bool:
        return v.contains(run_container(view, scope), run_item(view, scope))

    return Compiled(run, Kind.BOOL)


def arithmetic(op: BinaryOp, left: Compiled, right: Compiled) -> Compiled:
    """`+`, `-`, `*`, `/`, `%`."""
    operation = {
        BinaryOp.ADD: v.add,
        BinaryOp.SUB: v.subtract,
        BinaryOp.MUL: v.multiply,
        BinaryOp.DIV: v.divide,
        BinaryOp.MOD: v.modulo,
    }[op]
    run_left, run_right = left.run, right.run
    if left.kind is Kind.STRING and right.kind is Kind.STRING and op is BinaryOp.ADD:

        def run_concat(view: RequestView, scope: Scope) -> Any:
            return run_left(view, scope) + run_right(view, scope)

        return Compiled(run_concat, Kind.STRING)

    def run(view: RequestView, scope: Scope) -> Any:
        return operation(run_left(view, scope), run_right(view, scope))

    same = left.kind is right.kind and left.kind in (Kind.INT, Kind.UINT, Kind.DOUBLE)
    return Compiled(run, left.kind if same else Kind.DYN)


def logical_and(left: Compiled, right: Compiled) -> Compiled:
    """`left && right`: false if either side is false, even when the other fails; else an error
    if either side fails or is not a bool."""
    return _short_circuit(left, right, False, "_&&_")


def logical_or(left: Compiled, right: Compiled) -> Compiled:
    """`left || right`: true if either side is true, even when the other fails; else an error
    if either side fails or is not a bool."""
    return _short_circuit(left, right, True, "_||_")


def _short_circuit(left: Compiled, right: Compiled, decisive: bool, name: str) -> Compiled:
    """CEL's commutative `&&` / `||`: `decisive` (false for `&&`, true for `||`) on either side
    decides, whatever the other side does; otherwise both must be bools."""
    run_left, run_right = left.run, right.run
    other = not decisive

    def run(view: RequestView, scope: Scope) -> Any:
        try:
            first = run_left(view, scope)
        except ExpressionEvalError:
            if run_right(view, scope) is decisive:
                return decisive
            raise
        if first is decisive:
            return decisive
        second = run_right(view, scope)
        if first is other and (second is True or second is False):
            return second
        if second is decisive:
            return decisive
        raise v.no_overload(name, first, second)

    return fold(Compiled(run, Kind.BOOL), left, right)


def conditional(condition: Compiled, then: Compiled, otherwise: Compiled) -> Compiled:
    """`condition ? then : otherwise`; the condition must be a bool."""
    run_condition, run_then, run_otherwise = condition.run, then.run, otherwise.run

    def run(view: RequestView, scope: Scope) -> Any:
        test = run_condition(view, scope)
        if test is True:
            return run_then(view, scope)
        if test is False:
            return run_otherwise(view, scope)
        raise v.no_overload("_?_:_", test)

    kind = then.kind if then.kind is otherwise.kind else Kind.DYN
    return fold(Compiled(run, kind), condition, then, otherwise)
