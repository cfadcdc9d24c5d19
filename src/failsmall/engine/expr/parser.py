"""A recursive-descent parser for the supported subset of the CEL grammar.

    Expr           = Or ["?" Or ":" Expr]
    Or             = And {"||" And}
    And            = Relation {"&&" Relation}
    Relation       = Addition {("<" | "<=" | ">" | ">=" | "==" | "!=" | "in") Addition}
    Addition       = Multiplication {("+" | "-") Multiplication}
    Multiplication = Unary {("*" | "/" | "%") Unary}
    Unary          = Member | "!" {"!"} Member | "-" {"-"} Member
    Member         = Primary {"." IDENT ["(" [Args] ")"] | "[" Expr "]"}
    Primary        = IDENT ["(" [Args] ")"] | "(" Expr ")" | "[" [Args] [","] "]"
                   | "{" [Entries] [","] "}" | LITERAL

Macros (`has`, `exists`, `all`, `exists_one`, `map`, `filter`) are recognised here, as CEL's own
parser does.
"""

from __future__ import annotations

from typing import Final

from .errors import ExpressionError
from .lexer import Lexer, Token, TokenKind
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
from .values import INT_MAX

_RELATIONS: Final[dict[str, BinaryOp]] = {
    op.value: op for op in BinaryOp if op.value in ("<", "<=", ">", ">=", "==", "!=", "in")
}
_ADDITIVE: Final = {"+": BinaryOp.ADD, "-": BinaryOp.SUB}
_MULTIPLICATIVE: Final = {"*": BinaryOp.MUL, "/": BinaryOp.DIV, "%": BinaryOp.MOD}
_MACRO_ARITY: Final = {
    "exists": (2,),
    "all": (2,),
    "exists_one": (2,),
    "filter": (2,),
    "map": (2, 3),
}
_MAX_DEPTH: Final = 32


def parse(source: str) -> Node:
    """Parse `source` into a syntax tree, or raise `ExpressionError` naming the position."""
    return _Parser(source).parse()


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = Lexer(source).tokens()
        self.pos = 0
        self.depth = 0

    # --- token helpers ---

    @property
    def token(self) -> Token:
        return self.tokens[self.pos]

    def fail(self, message: str, offset: int | None = None) -> ExpressionError:
        return ExpressionError(message, self.source, self.token.start if offset is None else offset)

    def at(self, text: str) -> bool:
        token = self.token
        return token.kind in (TokenKind.PUNCT, TokenKind.KEYWORD) and token.text == text

    def take(self) -> Token:
        token = self.token
        self.pos += 1
        return token

    def expect(self, text: str, context: str) -> Token:
        if not self.at(text):
            found = self.token.text or "the end of the expression"
            raise self.fail(f"expected {text!r} {context}, found {found!r}")
        return self.take()

    # --- grammar ---

    def parse(self) -> Node:
        if self.token.kind is TokenKind.END:
            raise self.fail(
                "the expression is empty; write a condition such as ip.src == '1.2.3.4'"
            )
        node = self.expr()
        if self.tokens[self.pos].kind is not TokenKind.END:
            raise self.fail(f"unexpected {self.token.text!r} after a complete expression")
        return node

    def expr(self) -> Node:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.fail(f"the expression nests deeper than {_MAX_DEPTH} levels; simplify it")
        condition = self.logical_or()
        if self.at("?"):
            self.take()
            then = self.logical_or()
            self.expect(":", "in a conditional a ? b : c")
            otherwise = self.expr()
            condition = Conditional(condition.start, otherwise.end, condition, then, otherwise)
        self.depth -= 1
        return condition

    def logical_or(self) -> Node:
        node = self.logical_and()
        while self.at("||"):
            self.take()
            right = self.logical_and()
            node = Or(node.start, right.end, node, right)
        return node

    def logical_and(self) -> Node:
        node = self.relation()
        while self.at("&&"):
            self.take()
            right = self.relation()
            node = And(node.start, right.end, node, right)
        return node

    def relation(self) -> Node:
        node = self.addition()
        while (
            self.token.kind in (TokenKind.PUNCT, TokenKind.KEYWORD)
            and self.token.text in _RELATIONS
        ):
            op = _RELATIONS[self.take().text]
            right = self.addition()
            node = Binary(node.start, right.end, op, node, right)
        return node

    def addition(self) -> Node:
        node = self.multiplication()
        while self.token.kind is TokenKind.PUNCT and self.token.text in _ADDITIVE:
            op = _ADDITIVE[self.take().text]
            right = self.multiplication()
            node = Binary(node.start, right.end, op, node, right)
        return node

    def multiplication(self) -> Node:
        node = self.unary()
        while self.token.kind is TokenKind.PUNCT and self.token.text in _MULTIPLICATIVE:
            op = _MULTIPLICATIVE[self.take().text]
            right = self.unary()
            node = Binary(node.start, right.end, op, node, right)
        return node

    def unary(self) -> Node:
        start = self.token.start
        if self.at("!"):
            count = 0
            while self.at("!"):
                self.take()
                count += 1
            node = self.member()
            # As in CEL's own parser, pairs of negations cancel out: !!x is x, whatever x is.
            if count % 2:
                node = Unary(start, node.end, UnaryOp.NOT, node)
            return node
        if self.at("-") and not self._signed_number():
            count = 0
            while self.at("-"):
                self.take()
                count += 1
            node = self.member()
            if count % 2:
                node = Unary(start, node.end, UnaryOp.NEGATE, node)
            return node
        return self.member()

    def _signed_number(self) -> bool:
        """Whether a single '-' directly precedes a number: then it is part of the literal, as in
        CEL's grammar (so -9223372036854775808 is a valid int)."""
        following = self.tokens[self.pos + 1]
        return following.kind in (TokenKind.INT, TokenKind.DOUBLE)

    def member(self) -> Node:
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.at("."):
                self.take()
                name = self.token
                if name.kind is not TokenKind.IDENT:
                    raise self.fail("expected a field or method name after '.'")
                self.take()
                if self.at("("):
                    args, end = self.arguments()
                    node = self.method(node, name, args, end)
                else:
                    node = Select(node.start, name.end, node, name.text)
            elif self.at("["):
                self.take()
                index = self.expr()
                end = self.expect("]", "to close the index").end
                node = Index(node.start, end, node, index)
            else:
                return node

    def arguments(self) -> tuple[list[Node], int]:
        self.expect("(", "to open the arguments")
        args: list[Node] = []
        if not self.at(")"):
            args.append(self.expr())
            while self.at(","):
                self.take()
                args.append(self.expr())
        end = self.expect(")", "to close the arguments").end
        return args, end

    def method(self, target: Node, name: Token, args: list[Node], end: int) -> Node:
        arities = _MACRO_ARITY.get(name.text)
        if arities is None:
            return Call(target.start, end, name.text, target, tuple(args))
        if len(args) not in arities:
            wanted = " or ".join(str(n) for n in arities)
            raise self.fail(f"{name.text}() takes {wanted} arguments, got {len(args)}", name.start)
        variable = args[0]
        if not isinstance(variable, Ident):
            raise self.fail(
                f"the first argument of {name.text}() must be a simple variable name",
                variable.start,
            )
        kind = MacroKind(name.text)
        if kind is MacroKind.MAP:
            predicate = args[1] if len(args) == 3 else None
            transform = args[-1]
            return Comprehension(
                target.start, end, kind, target, variable.name, predicate, transform
            )
        return Comprehension(target.start, end, kind, target, variable.name, args[1], None)

    def primary(self) -> Node:
        token = self.token
        kind = token.kind
        if self.at("-") and self._signed_number():
            self.take()
            number = self.take()
            value = number.value
            negated = -value if isinstance(value, (int, float)) else value
            return Literal(token.start, number.end, negated)
        if kind is TokenKind.INT and isinstance(token.value, int) and token.value > INT_MAX:
            raise self.fail(f"int literal {token.text} is out of range")
        if kind in (
            TokenKind.INT,
            TokenKind.UINT,
            TokenKind.DOUBLE,
            TokenKind.STRING,
            TokenKind.BYTES,
        ):
            self.take()
            return Literal(token.start, token.end, token.value)
        if kind is TokenKind.KEYWORD and token.text in ("true", "false", "null"):
            self.take()
            value = {"true": True, "false": False, "null": None}[token.text]
            return Literal(token.start, token.end, value)
        if kind is TokenKind.IDENT:
            self.take()
            if self.at("("):
                args, end = self.arguments()
                if token.text == "has":
                    return self.has(token, args, end)
                return Call(token.start, end, token.text, None, tuple(args))
            if self.at("{"):
                raise self.fail("message construction (Name{...}) is not supported")
            return Ident(token.start, token.end, token.text)
        if self.at("("):
            self.take()
            node = self.expr()
            self.expect(")", "to close the parenthesis")
            return node
        if self.at("["):
            return self.list_literal()
        if self.at("{"):
            return self.map_literal()
        if self.at("."):
            raise self.fail("leading-dot names (.name) are not supported; drop the dot")
        found = token.text or "the end of the expression"
        raise self.fail(f"expected a value, a field or '(', found {found!r}")

    def has(self, token: Token, args: list[Node], end: int) -> Node:
        if len(args) != 1 or not isinstance(args[0], Select):
            raise self.fail(
                "has() takes one field selection, such as has(http.request.cookies.session)",
                token.start,
            )
        select = args[0]
        return Has(token.start, end, select.operand, select.field)

    def list_literal(self) -> Node:
        start = self.take().start
        items: list[Node] = []
        while not self.at("]"):
            items.append(self.expr())
            if not self.at(","):
                break
            self.take()
        end = self.expect("]", "to close the list").end
        return ListLiteral(start, end, tuple(items))

    def map_literal(self) -> Node:
        start = self.take().start
        entries: list[tuple[Node, Node]] = []
        while not self.at("}"):
            key = self.expr()
            self.expect(":", "between a map key and its value")
            value = self.expr()
            entries.append((key, value))
            if not self.at(","):
                break
            self.take()
        end = self.expect("}", "to close the map").end
        return MapLiteral(start, end, tuple(entries))
