"""The comprehension macros: exists, all, exists_one, filter and map, as closures.

Each visits a list's elements, or a map's keys, in order. Unlike the CEL specification, an error
stops the walk (an error before a decisive element is not absorbed), as in the reference
implementation.
"""

from __future__ import annotations

from typing import Any, Final

from failsmall.engine.request import RequestView

from . import values as v
from .compiled import Run, Scope
from .errors import ExpressionEvalError
from .fields import Kind
from .syntax import MacroKind

MACRO_KINDS: Final = {
    MacroKind.EXISTS: Kind.BOOL,
    MacroKind.ALL: Kind.BOOL,
    MacroKind.EXISTS_ONE: Kind.BOOL,
    MacroKind.FILTER: Kind.LIST,
}


def _predicate_failed(value: Any) -> ExpressionEvalError:
    return ExpressionEvalError(
        f"a comprehension predicate must yield a bool, got {v.type_name(value)}"
    )


def quantifier(kind: MacroKind, run_range: Run, body: Run) -> Run:
    """exists / all / exists_one / filter. Elements are visited in order and an error stops the
    walk, as in the reference implementation."""

    def run_exists(view: RequestView, scope: Scope) -> Any:
        for item in v.iteration_range(run_range(view, scope)):
            result = body(view, (*scope, item))
            if result is True:
                return True
            if result is not False:
                raise _predicate_failed(result)
        return False

    def run_all(view: RequestView, scope: Scope) -> Any:
        for item in v.iteration_range(run_range(view, scope)):
            result = body(view, (*scope, item))
            if result is False:
                return False
            if result is not True:
                raise _predicate_failed(result)
        return True

    def run_exists_one(view: RequestView, scope: Scope) -> Any:
        count = 0
        for item in v.iteration_range(run_range(view, scope)):
            result = body(view, (*scope, item))
            if result is True:
                count += 1
            elif result is not False:
                raise _predicate_failed(result)
        return count == 1

    def run_filter(view: RequestView, scope: Scope) -> Any:
        out = []
        for item in v.iteration_range(run_range(view, scope)):
            result = body(view, (*scope, item))
            if result is True:
                out.append(item)
            elif result is not False:
                raise _predicate_failed(result)
        return out

    runs: dict[MacroKind, Run] = {
        MacroKind.EXISTS: run_exists,
        MacroKind.ALL: run_all,
        MacroKind.EXISTS_ONE: run_exists_one,
        MacroKind.FILTER: run_filter,
    }
    return runs[kind]


def mapper(run_range: Run, run_filter: Run | None, transform: Run) -> Run:
    """map(x, t) and map(x, p, t): the transformed elements (that pass the filter), in order."""

    def run_map(view: RequestView, scope: Scope) -> Any:
        out = []
        for item in v.iteration_range(run_range(view, scope)):
            inner = (*scope, item)
            if run_filter is not None:
                keep = run_filter(view, inner)
                if keep is False:
                    continue
                if keep is not True:
                    raise _predicate_failed(keep)
            out.append(transform(view, inner))
        return out

    return run_map
