"""Compiles a syntax tree into nested Python closures that evaluate against a `RequestView`.

Names resolve here, once: a comprehension variable becomes a slot in the scope tuple, a field path
becomes a direct call to its reader, and an unknown field is a compile error. Function and method
calls are checked here too (arity, literal patterns and IP sets, compiled now); operators and
macros are built by `operators` and `macros`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from failsmall.engine.request import RequestView

from . import macros, operators
from . import values as v
from .addresses import AddressSet, AddressSetError
from .compiled import Compiled, Read, Run, Scope, constant, fold
from .errors import ExpressionError, ExpressionEvalError
from .fields import FIELDS, ROOTS, FieldSpec, Kind
from .patterns import PatternError, compile_pattern
from .reference import ReferenceRefusal
from .syntax import (
    And,
    Binary,
    Call,
    Comprehension,
    Conditional,
    Has,
    Ident,
    Index,
    ListLiteral,
    Literal,
    MacroKind,
    MapLiteral,
    Node,
    Or,
    Select,
    Unary,
)

MAX_NESTING: Final = 200
"""How deep operations may nest; deeper expressions would exhaust Python's stack."""
PatternCheck = Callable[[str], None]
"""Raises `ReferenceRefusal` when the reference CEL implementation refuses a pattern."""

_METHODS: Final = ("contains", "startsWith", "endsWith", "matches", "size")
_FUNCTIONS: Final = ("size", "int", "double", "string", "ip_in_list", "ip_in_cidr")
_NOT_IN_REFERENCE: Final = {
    "lowerAscii": "compare with a case-insensitive pattern instead: x.matches('(?i)abc')",
    "upperAscii": "compare with a case-insensitive pattern instead: x.matches('(?i)abc')",
}


@dataclass(frozen=True, slots=True)
class FieldUse:
    """Where the source names a field: the span from its first name to its last."""

    path: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Program:
    """The result of compiling one expression."""

    run: Run
    kind: Kind
    fields: tuple[FieldUse, ...]
    address_sets: Mapping[str, AddressSet]
    # The expression is the constant `true` (after folding): it holds for every request.
    always_true: bool = False


class Compiler:
    """Compiles one expression; collects the fields it reads and the IP lists it uses."""

    def __init__(
        self,
        source: str,
        ip_lists: Mapping[str, Sequence[str]],
        pattern_check: PatternCheck,
    ) -> None:
        self.source = source
        self.ip_lists = ip_lists
        self.pattern_check = pattern_check
        self.variables: list[str] = []
        self.field_uses: list[FieldUse] = []
        self.address_sets: dict[str, AddressSet] = {}
        self.depth = 0

    def fail(self, message: str, node: Node) -> ExpressionError:
        return ExpressionError(message, self.source, node.start)

    def program(self, root: Node, condition: bool = True) -> Program:
        compiled = self.compile(root)
        if condition and compiled.kind not in (Kind.BOOL, Kind.DYN):
            raise self.fail(
                f"a rule expression must be a condition (bool), but this one yields a "
                f"{compiled.kind.value}; compare it, e.g. ... == 'value'",
                root,
            )
        return Program(
            compiled.run,
            compiled.kind,
            tuple(self.field_uses),
            self.address_sets,
            compiled.constant and compiled.value is True,
        )

    def compile(self, node: Node) -> Compiled:
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise self.fail(
                f"the expression nests more than {MAX_NESTING} operations; split it into several "
                "rules, or test many values at once with `in [...]`",
                node,
            )
        try:
            return self.dispatch(node)
        finally:
            self.depth -= 1

    def dispatch(self, node: Node) -> Compiled:
        match node:
            case Literal(value=value):
                return constant(value)
            case Ident() | Select():
                return self.reference(node)
            case Index():
                return self.index(node)
            case ListLiteral():
                return self.list_literal(node)
            case MapLiteral():
                return self.map_literal(node)
            case Unary():
                return self.unary(node)
            case Binary():
                return self.binary(node)
            case And():
                return self.logical_and(node)
            case Or():
                return self.logical_or(node)
            case Conditional():
                return self.conditional(node)
            case Has():
                return self.has(node)
            case Call():
                return self.call(node)
            case Comprehension():
                return self.comprehension(node)
        raise self.fail(f"unsupported syntax {type(node).__name__}", node)

    # --- names, fields, selection ------------------------------------------------------------

    def field_chain(self, node: Node) -> list[tuple[str, Node]] | None:
        """The names of a selection chain rooted at a name that is not a variable."""
        match node:
            case Ident(name=name):
                if name in self.variables:
                    return None
                return [(name, node)]
            case Select(operand=operand, field=field):
                chain = self.field_chain(operand)
                if chain is None:
                    return None
                return [*chain, (field, node)]
        return None

    def reference(self, node: Ident | Select) -> Compiled:
        if isinstance(node, Ident) and node.name in self.variables:
            slot = len(self.variables) - 1 - self.variables[::-1].index(node.name)

            def run_variable(view: RequestView, scope: Scope) -> Any:
                return scope[slot]

            return Compiled(run_variable, Kind.DYN)
        chain = self.field_chain(node)
        if chain is None and isinstance(node, Select):
            operand = self.compile(node.operand)
            name = node.field
            run_operand = operand.run

            def run_select(view: RequestView, scope: Scope) -> Any:
                return v.select(run_operand(view, scope), name)

            return Compiled(run_select, Kind.DYN)
        if chain is None:
            raise self.fail(f"cannot resolve {self.source[node.start : node.end]!r}", node)
        return self.field(chain, node)

    def resolve(self, chain: list[tuple[str, Node]]) -> tuple[FieldSpec, int]:
        """The longest registered field that starts the chain, and how many names it spans."""
        names = [name for name, _ in chain]
        for length in range(len(names), 0, -1):
            spec = FIELDS.get(".".join(names[:length]))
            if spec is not None:
                return spec, length
        path = ".".join(names)
        root_node = chain[0][1]
        if names[0] not in ROOTS:
            hint = ""
            if self.variables:
                hint = f"; variables in scope here: {', '.join(self.variables)}"
            raise self.fail(
                f"unknown name {names[0]!r}: fields start with {', '.join(sorted(ROOTS))}{hint}",
                root_node,
            )
        below = sorted(p for p in FIELDS if p.startswith(path + "."))
        if below:
            raise self.fail(
                f"{path!r} is not a field; fields under it: {', '.join(below)}", root_node
            )
        close = difflib.get_close_matches(path, list(FIELDS), n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; see `failsmall expr fields`"
        raise self.fail(f"unknown field {path!r}{hint}", root_node)

    def field(self, chain: list[tuple[str, Node]], node: Node) -> Compiled:
        spec, length = self.resolve(chain)
        last = chain[length - 1][1]
        self.field_uses.append(FieldUse(spec.path, chain[0][1].start, last.end))
        read = spec.read

        def run_field(view: RequestView, scope: Scope) -> Any:
            return read(view)

        compiled = Compiled(run_field, spec.kind, read=read)
        for name, select_node in chain[length:]:
            if compiled.kind is not Kind.STRING_MAP:
                full = ".".join(name for name, _ in chain)
                close = difflib.get_close_matches(full, list(FIELDS), n=3)
                hint = f"; did you mean {' or '.join(close)}?" if close else ""
                raise ExpressionError(
                    f"{spec.path} is a {spec.cel_type}; it has no field {name!r}{hint}",
                    self.source,
                    select_node.end - len(name),
                )
            compiled = self.select_key(compiled, name)
        return compiled

    def select_key(self, operand: Compiled, name: str) -> Compiled:
        run_operand = operand.run
        kind = Kind.LIST if operand.kind is Kind.STRING_MAP else Kind.DYN

        def run_select(view: RequestView, scope: Scope) -> Any:
            return v.select(run_operand(view, scope), name)

        return Compiled(run_select, kind)

    def index(self, node: Index) -> Compiled:
        operand = self.compile(node.operand)
        key = self.compile(node.index)
        run_operand, run_key = operand.run, key.run
        field_map = operand.kind is Kind.STRING_MAP
        kind = Kind.LIST if field_map and key.kind is Kind.STRING else Kind.DYN
        if field_map and key.constant and key.kind is Kind.STRING:
            name = key.value

            def run_map_key(view: RequestView, scope: Scope) -> Any:
                mapping = run_operand(view, scope)
                if name in mapping:
                    return mapping[name]
                raise ExpressionEvalError(f"no such key: {name!r}")

            return Compiled(run_map_key, kind)

        def run_index(view: RequestView, scope: Scope) -> Any:
            return v.index(run_operand(view, scope), run_key(view, scope))

        return fold(Compiled(run_index, kind), operand, key)

    def has(self, node: Has) -> Compiled:
        chain = self.field_chain(node.operand)
        if chain is not None:
            path = ".".join([*(name for name, _ in chain), node.field])
            if path in FIELDS or any(p.startswith(path + ".") for p in FIELDS):
                raise self.fail(
                    f"{path} is a field and always present; has() tests a map key, "
                    "e.g. has(http.request.cookies.session)",
                    node,
                )
        operand = self.compile(node.operand)
        run_operand = operand.run
        name = node.field

        def run_has(view: RequestView, scope: Scope) -> bool:
            return v.has(run_operand(view, scope), name)

        return fold(Compiled(run_has, Kind.BOOL), operand)

    # --- literals ----------------------------------------------------------------------------

    def list_literal(self, node: ListLiteral) -> Compiled:
        items = [self.compile(item) for item in node.items]
        runs = tuple(item.run for item in items)

        def run_list(view: RequestView, scope: Scope) -> list[Any]:
            return [run(view, scope) for run in runs]

        return fold(Compiled(run_list, Kind.LIST), *items)

    def map_literal(self, node: MapLiteral) -> Compiled:
        entries = [(self.compile(key), self.compile(value)) for key, value in node.entries]
        runs = tuple((key.run, value.run) for key, value in entries)

        def run_map(view: RequestView, scope: Scope) -> dict[Any, Any]:
            return v.build_map([(key(view, scope), value(view, scope)) for key, value in runs])

        return fold(Compiled(run_map, Kind.MAP), *(part for entry in entries for part in entry))

    # --- operators ---------------------------------------------------------------------------

    def unary(self, node: Unary) -> Compiled:
        return operators.unary(node.op, self.compile(node.operand))

    def binary(self, node: Binary) -> Compiled:
        return operators.binary(node.op, self.compile(node.left), self.compile(node.right))

    def logical_and(self, node: And) -> Compiled:
        return operators.logical_and(self.compile(node.left), self.compile(node.right))

    def logical_or(self, node: Or) -> Compiled:
        return operators.logical_or(self.compile(node.left), self.compile(node.right))

    def conditional(self, node: Conditional) -> Compiled:
        return operators.conditional(
            self.compile(node.condition), self.compile(node.then), self.compile(node.otherwise)
        )

    # --- calls -------------------------------------------------------------------------------

    def call(self, node: Call) -> Compiled:
        if node.target is None:
            return self.function(node)
        return self.method(node, node.target)

    def function(self, node: Call) -> Compiled:
        name = node.name
        if name not in _FUNCTIONS:
            raise self.fail(self._unknown_function(name, _FUNCTIONS, "function"), node)
        if name in ("ip_in_list", "ip_in_cidr"):
            return self.address_function(node)
        if len(node.args) != 1:
            raise self.fail(f"{name}() takes 1 argument, got {len(node.args)}", node)
        argument = self.compile(node.args[0])
        run_argument = argument.run
        convert, kind = {
            "size": (v.size, Kind.INT),
            "int": (v.to_int, Kind.INT),
            "double": (v.to_double, Kind.DOUBLE),
            "string": (v.to_string, Kind.STRING),
        }[name]

        def run(view: RequestView, scope: Scope) -> Any:
            return convert(run_argument(view, scope))

        return fold(Compiled(run, kind), argument)

    def _unknown_function(self, name: str, known: Sequence[str], what: str) -> str:
        if name in _NOT_IN_REFERENCE:
            return (
                f"{name}() is not available in this CEL implementation; {_NOT_IN_REFERENCE[name]}"
            )
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]}()? " if close else ""
        return f"unknown {what} {name}(); {hint}supported: {', '.join(known)}"

    def address_function(self, node: Call) -> Compiled:
        name = node.name
        set_kind = "list name" if name == "ip_in_list" else "CIDR"
        if len(node.args) != 2:
            raise self.fail(
                f"{name}() takes 2 arguments: an address and a {set_kind}",
                node,
            )
        address_node, set_node = node.args
        if not (isinstance(set_node, Literal) and type(set_node.value) is str):
            raise self.fail(f"the second argument of {name}() must be a string literal", set_node)
        label = set_node.value
        if name == "ip_in_list":
            entries = self.ip_lists.get(label)
            if entries is None:
                known = ", ".join(sorted(self.ip_lists)) or "none are defined"
                raise self.fail(
                    f"unknown IP list {label!r}; lists in this bundle: {known}", set_node
                )
        else:
            entries = [label]
        try:
            addresses = AddressSet(entries)
        except AddressSetError as exc:
            where = f"IP list {label!r}" if name == "ip_in_list" else f"{name}()"
            raise self.fail(f"{where}: {exc}", set_node) from exc
        self.address_sets[label if name == "ip_in_list" else f"cidr:{label}"] = addresses
        address = self.compile(address_node)
        run_address = address.run
        contains = addresses.contains
        read = address.read
        if read is not None:
            return Compiled(lambda view, scope: contains(read(view)), Kind.BOOL)

        def run(view: RequestView, scope: Scope) -> bool:
            return contains(run_address(view, scope))

        return fold(Compiled(run, Kind.BOOL), address)

    def method(self, node: Call, target_node: Node) -> Compiled:
        name = node.name
        if name not in _METHODS:
            raise self.fail(self._unknown_function(name, _METHODS, "method"), node)
        target = self.compile(target_node)
        run_target = target.run
        if name == "size":
            if node.args:
                raise self.fail("size() as a method takes no arguments", node)

            def run_size(view: RequestView, scope: Scope) -> int:
                return v.size(run_target(view, scope))

            return fold(Compiled(run_size, Kind.INT), target)
        if len(node.args) != 1:
            raise self.fail(f"{name}() takes 1 argument, got {len(node.args)}", node)
        if name == "matches":
            return self.matches(node, target)
        argument = self.compile(node.args[0])
        run_argument = argument.run
        method = {
            "contains": str.__contains__,
            "startsWith": str.startswith,
            "endsWith": str.endswith,
        }[name]
        if target.kind is Kind.STRING and argument.constant and argument.kind is Kind.STRING:
            text = argument.value
            if target.read is not None:
                return _field_method(name, target.read, text)
            if name == "startsWith":
                return Compiled(
                    lambda view, scope: run_target(view, scope).startswith(text), Kind.BOOL
                )
            if name == "endsWith":
                return Compiled(
                    lambda view, scope: run_target(view, scope).endswith(text), Kind.BOOL
                )
            return Compiled(lambda view, scope: text in run_target(view, scope), Kind.BOOL)

        def run(view: RequestView, scope: Scope) -> bool:
            receiver = run_target(view, scope)
            argument_value = run_argument(view, scope)
            if type(receiver) is str and type(argument_value) is str:
                return method(receiver, argument_value)
            raise v.no_overload(name, receiver, argument_value)

        return fold(Compiled(run, Kind.BOOL), target, argument)

    def matches(self, node: Call, target: Compiled) -> Compiled:
        pattern_node = node.args[0]
        if not (isinstance(pattern_node, Literal) and type(pattern_node.value) is str):
            raise self.fail(
                "the pattern of matches() must be a string literal, so it is checked when the "
                "rule is built",
                pattern_node,
            )
        text = pattern_node.value
        try:
            search = compile_pattern(text)
        except PatternError as exc:
            raise self.fail(str(exc), pattern_node) from exc
        try:
            self.pattern_check(text)
        except ReferenceRefusal as exc:
            raise self.fail(
                f"pattern {text!r} is refused by CEL's regular expressions: {exc}", pattern_node
            ) from exc
        run_target = target.run
        if target.kind is Kind.STRING:
            return Compiled(
                lambda view, scope: search(run_target(view, scope)) is not None, Kind.BOOL
            )

        def run(view: RequestView, scope: Scope) -> bool:
            receiver = run_target(view, scope)
            if type(receiver) is str:
                return search(receiver) is not None
            raise v.no_overload("matches", receiver)

        return fold(Compiled(run, Kind.BOOL), target)

    # --- comprehensions ----------------------------------------------------------------------

    def comprehension(self, node: Comprehension) -> Compiled:
        iterated = self.compile(node.range)
        variable = node.variable
        if variable in ROOTS or variable.startswith("__"):
            raise self.fail(
                f"the variable name {variable!r} is taken by fields or reserved; choose another",
                node,
            )
        self.variables.append(variable)
        try:
            predicate = self.compile(node.predicate) if node.predicate is not None else None
            transform = self.compile(node.transform) if node.transform is not None else None
        finally:
            self.variables.pop()
        run_range = iterated.run
        kind = node.kind
        if kind is MacroKind.MAP:
            if transform is None:
                raise self.fail("map() needs a value to map each element to", node)
            run_filter = predicate.run if predicate is not None else None
            return Compiled(macros.mapper(run_range, run_filter, transform.run), Kind.LIST)
        if predicate is None:
            raise self.fail(f"{kind.value}() needs a condition", node)
        return Compiled(macros.quantifier(kind, run_range, predicate.run), macros.MACRO_KINDS[kind])


def _field_method(name: str, read: Read, text: str) -> Compiled:
    """`field.startsWith(text)`, `.endsWith(text)` or `.contains(text)` on a string field."""
    if name == "startsWith":
        return Compiled(lambda view, scope: read(view).startswith(text), Kind.BOOL)
    if name == "endsWith":
        return Compiled(lambda view, scope: read(view).endswith(text), Kind.BOOL)
    return Compiled(lambda view, scope: text in read(view), Kind.BOOL)
