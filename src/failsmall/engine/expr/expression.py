"""A compiled rule expression, and the function that compiles one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from failsmall.engine.request import RequestView

from .addresses import AddressSet
from .compiled import Run
from .compiler import Compiler, FieldUse
from .errors import ExpressionError, ExpressionEvalError
from .fields import reference_name
from .parser import parse
from .prefilter import path_prefixes
from .reference import ReferenceRefusal, reference_check_parse, reference_check_pattern
from .values import type_name

_NO_LISTS: Mapping[str, Sequence[str]] = MappingProxyType({})


@dataclass(frozen=True)
class Expression:
    """A rule condition compiled to closures, ready to evaluate against requests.

    `fields` lists the registry paths it reads (the engine uses it to know, e.g., that a rule needs
    a bot score). `reference_source` is the same expression written for the reference CEL
    implementation, with each field replaced by its flat variable name.
    """

    source: str
    fields: frozenset[str]
    reference_source: str = field(repr=False, compare=False)
    address_sets: Mapping[str, AddressSet] = field(repr=False, compare=False)
    _run: Run = field(repr=False, compare=False)
    # Prefixes the path starts with whenever the expression is not false (`prefilter`), or None.
    path_prefixes: tuple[str, ...] | None = field(default=None, repr=False, compare=False)
    # The expression is the constant `true`: `evaluate` is True for every request.
    always_true: bool = field(default=False, repr=False, compare=False)

    def evaluate(self, view: RequestView) -> bool:
        """Whether the request matches; raises `ExpressionEvalError` on an evaluation error or a
        result that is not a bool."""
        result = self._run(view, ())
        if result is True or result is False:
            return result
        raise ExpressionEvalError(
            f"the expression yielded a {type_name(result)}, not a bool: {self.source}"
        )

    @property
    def run(self) -> Run:
        """The compiled closure: `run(view, ())` is the value `evaluate` checks and returns."""
        return self._run

    def evaluate_value(self, view: RequestView) -> Any:
        """The value of the expression on the request, whatever its type (for tools and tests)."""
        return self._run(view, ())


def compile_expression(
    source: str,
    ip_lists: Mapping[str, Sequence[str]] = _NO_LISTS,
    *,
    condition: bool = True,
) -> Expression:
    """Compile `source`, a CEL condition, checking it with the reference implementation too.

    `ip_lists` are the bundle's IP lists (name -> addresses and CIDRs) for `ip_in_list()`.
    With `condition=False` the expression may yield any type (read it with `evaluate_value`).
    Raises `ExpressionError` with the position and what to change.
    """
    root = parse(source)
    compiler = Compiler(source, ip_lists, reference_check_pattern)
    program = compiler.program(root, condition=condition)
    try:
        reference_check_parse(source)
    except ReferenceRefusal as exc:
        raise ExpressionError(
            f"the CEL reference implementation refuses this expression: {exc}"
        ) from exc
    return Expression(
        source=source,
        fields=frozenset(use.path for use in program.fields),
        reference_source=_reference_source(source, program.fields),
        address_sets=MappingProxyType(dict(program.address_sets)),
        _run=program.run,
        path_prefixes=path_prefixes(root),
        always_true=program.always_true,
    )


def _reference_source(source: str, uses: Sequence[FieldUse]) -> str:
    out: list[str] = []
    position = 0
    for use in sorted(uses, key=lambda use: use.start):
        out.append(source[position : use.start])
        out.append(reference_name(use.path))
        position = use.end
    out.append(source[position:])
    return "".join(out)
