"""The abstract syntax tree of a CEL expression; every node knows the source span it came from."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Node:
    """Base of every syntax node: `start` and `end` are offsets into the source."""

    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Literal(Node):
    """A constant: int, uint, double, string, bytes, bool or null."""

    value: object


@dataclass(frozen=True, slots=True)
class Ident(Node):
    """A bare name: the root of a field path or a comprehension variable."""

    name: str


@dataclass(frozen=True, slots=True)
class Select(Node):
    """`operand.field`."""

    operand: Node
    field: str


@dataclass(frozen=True, slots=True)
class Index(Node):
    """`operand[index]`."""

    operand: Node
    index: Node


@dataclass(frozen=True, slots=True)
class Call(Node):
    """A global function call `name(args...)`, or a method call `target.name(args...)`."""

    name: str
    target: Node | None
    args: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class ListLiteral(Node):
    """`[a, b, ...]`."""

    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class MapLiteral(Node):
    """`{k: v, ...}`."""

    entries: tuple[tuple[Node, Node], ...]


class UnaryOp(enum.Enum):
    """Prefix operators."""

    NOT = "!"
    NEGATE = "-"


@dataclass(frozen=True, slots=True)
class Unary(Node):
    """`!operand` or `-operand`."""

    op: UnaryOp
    operand: Node


class BinaryOp(enum.Enum):
    """Infix operators other than `&&` and `||`."""

    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "in"
    ADD = "+"
    SUB = "-"
    MUL = "*"
    DIV = "/"
    MOD = "%"


@dataclass(frozen=True, slots=True)
class Binary(Node):
    """`left op right`."""

    op: BinaryOp
    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class And(Node):
    """`left && right`, with CEL's commutative handling of errors."""

    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Or(Node):
    """`left || right`, with CEL's commutative handling of errors."""

    left: Node
    right: Node


@dataclass(frozen=True, slots=True)
class Conditional(Node):
    """`condition ? then : otherwise`."""

    condition: Node
    then: Node
    otherwise: Node


@dataclass(frozen=True, slots=True)
class Has(Node):
    """`has(operand.field)`: whether a map has a key."""

    operand: Node
    field: str


class MacroKind(enum.Enum):
    """The comprehension macros."""

    EXISTS = "exists"
    ALL = "all"
    EXISTS_ONE = "exists_one"
    MAP = "map"
    FILTER = "filter"


@dataclass(frozen=True, slots=True)
class Comprehension(Node):
    """`range.kind(var, ...)`. `predicate` is the filter of `map(x, p, t)`, or the body of the
    boolean macros and `filter`; `transform` is the mapped value of `map`."""

    kind: MacroKind
    range: Node
    variable: str
    predicate: Node | None
    transform: Node | None
