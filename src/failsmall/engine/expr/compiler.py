"""Compiles a syntax tree into nested Python closures that evaluate against a `RequestView`.

Every closure has the signature `run(view, scope)`; `scope` is a tuple holding the values of the
comprehension variables in nesting order, so a compiled expression keeps no mutable state and can
be evaluated from several threads at once. Field paths resolve here, once: an unknown field is a
compile error, and a known one becomes a direct call to its reader. Where the compiler knows the
CEL types of the operands (fields and literals have fixed types) it emits a direct Python
operation instead of the generic, type-checking one.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, assert_never

from failsmall.engine.request import RequestView

from . import values as v
from .addresses import AddressSet, AddressSetError
from .errors import ExpressionError, ExpressionEvalError
from .fields import FIELDS, ROOTS, FieldSpec, Kind
from .patterns import PatternError, compile_pattern
from .syntax import (
    And,
    Binary,
    BinaryOp,
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
    UnaryOp,
)

Scope = tuple[Any, ...]
Run = Callable[[RequestView, Scope], Any]
PatternCheck = Callable[[str], str | None]
"""Returns why a pattern is refused by the reference CEL implementation, or None if accepted."""

_METHODS: Final = ("contains", "startsWith", "endsWith", "matches", "size")
_FUNCTIONS: Final = ("size", "int", "double", "string", "ip_in_list", "ip_in_cidr")
_NOT_IN_REFERENCE: Final = {
    "lowerAscii": "compare with a case-insensitive pattern instead: x.matches('(?i)abc')",
    "upperAscii": "compare with a case-insensitive pattern instead: x.matches('(?i)abc')",
}


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled node: its closure, the CEL type it always yields, and its value if constant."""

    run: Run
    kind: Kind
    constant: bool = False
    value: Any = None


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


def _fold(compiled: Compiled, *children: Compiled) -> Compiled:
    """Evaluate a pure node with constant children now; an error is left for evaluation time."""
    if not all(child.constant for child in children):
        return compiled
    try:
        value = compiled.run(_NO_VIEW, ())
    except ExpressionEvalError:
        return compiled
    return constant(value)


class _NoView(RequestView):
    """Stands in for a request while folding constants, which never read one."""

    def __init__(self) -> None:
        pass


_NO_VIEW: Final = _NoView()


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
        return Program(compiled.run, compiled.kind, tuple(self.field_uses), self.address_sets)

    def compile(self, node: Node) -> Compiled:
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
        hint = f"; did you mean {' or '.join(close)}?" if close else "; see `failsmall fields`"
        raise self.fail(f"unknown field {path!r}{hint}", root_node)

    def field(self, chain: list[tuple[str, Node]], node: Node) -> Compiled:
        spec, length = self.resolve(chain)
        last = chain[length - 1][1]
        self.field_uses.append(FieldUse(spec.path, chain[0][1].start, last.end))
        read = spec.read

        def run_field(view: RequestView, scope: Scope) -> Any:
            return read(view)

        compiled = Compiled(run_field, spec.kind)
        for name, select_node in chain[length:]:
            if compiled.kind not in (Kind.MAP, Kind.DYN):
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
        # Every map field maps names to lists of strings.
        kind = Kind.LIST if operand.kind is Kind.MAP else Kind.DYN

        def run_select(view: RequestView, scope: Scope) -> Any:
            return v.select(run_operand(view, scope), name)

        return Compiled(run_select, kind)

    def index(self, node: Index) -> Compiled:
        operand = self.compile(node.operand)
        key = self.compile(node.index)
        run_operand, run_key = operand.run, key.run
        kind = Kind.LIST if operand.kind is Kind.MAP and key.kind is Kind.STRING else Kind.DYN
        if operand.kind is Kind.MAP and key.constant and key.kind is Kind.STRING:
            name = key.value

            def run_map_key(view: RequestView, scope: Scope) -> Any:
                mapping = run_operand(view, scope)
                if name in mapping:
                    return mapping[name]
                raise ExpressionEvalError(f"no such key: {name!r}")

            return Compiled(run_map_key, kind)

        def run_index(view: RequestView, scope: Scope) -> Any:
            return v.index(run_operand(view, scope), run_key(view, scope))

        return _fold(Compiled(run_index, kind), operand, key)

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

        return _fold(Compiled(run_has, Kind.BOOL), operand)

    # --- literals ----------------------------------------------------------------------------

    def list_literal(self, node: ListLiteral) -> Compiled:
        items = [self.compile(item) for item in node.items]
        runs = tuple(item.run for item in items)

        def run_list(view: RequestView, scope: Scope) -> list[Any]:
            return [run(view, scope) for run in runs]

        return _fold(Compiled(run_list, Kind.LIST), *items)

    def map_literal(self, node: MapLiteral) -> Compiled:
        entries = [(self.compile(key), self.compile(value)) for key, value in node.entries]
        runs = tuple((key.run, value.run) for key, value in entries)

        def run_map(view: RequestView, scope: Scope) -> dict[Any, Any]:
            return v.build_map([(key(view, scope), value(view, scope)) for key, value in runs])

        return _fold(Compiled(run_map, Kind.MAP), *(part for entry in entries for part in entry))

    # --- operators ---------------------------------------------------------------------------

    def unary(self, node: Unary) -> Compiled:
        operand = self.compile(node.operand)
        run_operand = operand.run
        match node.op:
            case UnaryOp.NOT:
                if operand.kind is Kind.BOOL:

                    def run_not(view: RequestView, scope: Scope) -> Any:
                        return not run_operand(view, scope)

                else:

                    def run_not(view: RequestView, scope: Scope) -> Any:
                        return v.logical_not(run_operand(view, scope))

                return _fold(Compiled(run_not, Kind.BOOL), operand)
            case UnaryOp.NEGATE:

                def run_negate(view: RequestView, scope: Scope) -> Any:
                    return v.negate(run_operand(view, scope))

                kind = operand.kind if operand.kind in (Kind.INT, Kind.DOUBLE) else Kind.DYN
                return _fold(Compiled(run_negate, kind), operand)
            case _:
                assert_never(node.op)

    def binary(self, node: Binary) -> Compiled:
        left = self.compile(node.left)
        right = self.compile(node.right)
        match node.op:
            case BinaryOp.EQ | BinaryOp.NE:
                compiled = self.equality(left, right, negate=node.op is BinaryOp.NE)
            case BinaryOp.LT | BinaryOp.LE | BinaryOp.GT | BinaryOp.GE:
                compiled = self.ordering(node.op, left, right)
            case BinaryOp.IN:
                compiled = self.membership(left, right)
            case BinaryOp.ADD | BinaryOp.SUB | BinaryOp.MUL | BinaryOp.DIV | BinaryOp.MOD:
                compiled = self.arithmetic(node.op, left, right)
            case _:
                assert_never(node.op)
        return _fold(compiled, left, right)

    def equality(self, left: Compiled, right: Compiled, negate: bool) -> Compiled:
        run_left, run_right = left.run, right.run
        if right.constant and not left.constant:
            left, right = right, left
            run_left, run_right = run_right, run_left
        # Python's == on a str or bytes constant agrees with CEL for every other operand; so does
        # == between two values of one exactly known kind.
        direct = (left.constant and left.kind in (Kind.STRING, Kind.BYTES)) or (
            left.kind is right.kind and left.kind in (Kind.STRING, Kind.INT, Kind.BOOL)
        )
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

    def ordering(self, op: BinaryOp, left: Compiled, right: Compiled) -> Compiled:
        run_left, run_right = left.run, right.run
        if left.kind is right.kind and left.kind in (Kind.STRING, Kind.INT):
            direct: dict[BinaryOp, Callable[[Any, Any], Any]] = {
                BinaryOp.LT: lambda a, b: a < b,
                BinaryOp.LE: lambda a, b: a <= b,
                BinaryOp.GT: lambda a, b: a > b,
                BinaryOp.GE: lambda a, b: a >= b,
            }
            if right.constant:
                value = right.value
                match op:
                    case BinaryOp.LT:
                        return Compiled(
                            lambda view, scope: run_left(view, scope) < value, Kind.BOOL
                        )
                    case BinaryOp.LE:
                        return Compiled(
                            lambda view, scope: run_left(view, scope) <= value, Kind.BOOL
                        )
                    case BinaryOp.GT:
                        return Compiled(
                            lambda view, scope: run_left(view, scope) > value, Kind.BOOL
                        )
                    case BinaryOp.GE:
                        return Compiled(
                            lambda view, scope: run_left(view, scope) >= value, Kind.BOOL
                        )
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

    def membership(self, item: Compiled, container: Compiled) -> Compiled:
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
        if item.kind is Kind.STRING and container.kind is Kind.MAP and not container.constant:

            def run_key(view: RequestView, scope: Scope) -> bool:
                return run_item(view, scope) in run_container(view, scope)

            return Compiled(run_key, Kind.BOOL)

        def run(view: RequestView, scope: Scope) -> bool:
            return v.contains(run_container(view, scope), run_item(view, scope))

        return Compiled(run, Kind.BOOL)

    def arithmetic(self, op: BinaryOp, left: Compiled, right: Compiled) -> Compiled:
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

    def logical_and(self, node: And) -> Compiled:
        left = self.compile(node.left)
        right = self.compile(node.right)
        run_left, run_right = left.run, right.run

        def run(view: RequestView, scope: Scope) -> Any:
            try:
                first = run_left(view, scope)
            except ExpressionEvalError:
                if run_right(view, scope) is False:
                    return False
                raise
            if first is False:
                return False
            second = run_right(view, scope)
            if first is True and (second is True or second is False):
                return second
            if second is False:
                return False
            raise v.no_overload("_&&_", first, second)

        return _fold(Compiled(run, Kind.BOOL), left, right)

    def logical_or(self, node: Or) -> Compiled:
        left = self.compile(node.left)
        right = self.compile(node.right)
        run_left, run_right = left.run, right.run

        def run(view: RequestView, scope: Scope) -> Any:
            try:
                first = run_left(view, scope)
            except ExpressionEvalError:
                if run_right(view, scope) is True:
                    return True
                raise
            if first is True:
                return True
            second = run_right(view, scope)
            if first is False and (second is True or second is False):
                return second
            if second is True:
                return True
            raise v.no_overload("_||_", first, second)

        return _fold(Compiled(run, Kind.BOOL), left, right)

    def conditional(self, node: Conditional) -> Compiled:
        condition = self.compile(node.condition)
        then = self.compile(node.then)
        otherwise = self.compile(node.otherwise)
        run_condition, run_then, run_otherwise = condition.run, then.run, otherwise.run

        def run(view: RequestView, scope: Scope) -> Any:
            test = run_condition(view, scope)
            if test is True:
                return run_then(view, scope)
            if test is False:
                return run_otherwise(view, scope)
            raise v.no_overload("_?_:_", test)

        kind = then.kind if then.kind is otherwise.kind else Kind.DYN
        return _fold(Compiled(run, kind), condition, then, otherwise)

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

        return _fold(Compiled(run, kind), argument)

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
        chain = self.field_chain(address_node)
        address = self.compile(address_node)
        if chain is not None and len(chain) == 2 and chain[0][0] == "ip" and chain[1][0] == "src":
            contains_address = addresses.contains_address

            def run_client(view: RequestView, scope: Scope) -> bool:
                parsed = view.ip
                return parsed is not None and contains_address(parsed)

            return Compiled(run_client, Kind.BOOL)
        run_address = address.run
        contains = addresses.contains

        def run(view: RequestView, scope: Scope) -> bool:
            return contains(run_address(view, scope))

        return _fold(Compiled(run, Kind.BOOL), address)

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

            return _fold(Compiled(run_size, Kind.INT), target)
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

        return _fold(Compiled(run, Kind.BOOL), target, argument)

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
            pattern: re.Pattern[str] = compile_pattern(text)
        except PatternError as exc:
            raise self.fail(str(exc), pattern_node) from exc
        refusal = self.pattern_check(text)
        if refusal is not None:
            raise self.fail(
                f"pattern {text!r} is refused by CEL's regular expressions: {refusal}",
                pattern_node,
            )
        search = pattern.search
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

        return _fold(Compiled(run, Kind.BOOL), target)

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
            return Compiled(_mapper(run_range, run_filter, transform.run), Kind.LIST)
        if predicate is None:
            raise self.fail(f"{kind.value}() needs a condition", node)
        return Compiled(_quantifier(kind, run_range, predicate.run), _MACRO_KINDS[kind])


_MACRO_KINDS: Final = {
    MacroKind.EXISTS: Kind.BOOL,
    MacroKind.ALL: Kind.BOOL,
    MacroKind.EXISTS_ONE: Kind.BOOL,
    MacroKind.FILTER: Kind.LIST,
}


def _predicate_failed(value: Any) -> ExpressionEvalError:
    return ExpressionEvalError(
        f"a comprehension predicate must yield a bool, got {v.type_name(value)}"
    )


def _quantifier(kind: MacroKind, run_range: Run, body: Run) -> Run:
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


def _mapper(run_range: Run, run_filter: Run | None, transform: Run) -> Run:
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
