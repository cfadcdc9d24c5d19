"""What an expression needs of the request path, read off its syntax once, at compile time.

`path_prefixes(root)` names path prefixes when the expression is true only for a request whose
path (`http.request.uri.path`) starts with one of them, and is then `false`, never an error, for
every other path; it is None when the syntax promises nothing of the kind. So a rule, a rate
limit or a cache rule whose prefixes a path does not start with can be settled as not matched
without running it (`failsmall.engine.path_index`).

What it reads: `path.startsWith("...")`, `path == "..."`, `path in ["...", ...]`; `a && b`
needs what either side needs (CEL's `&&` is false when one side is false, whatever the other
does); `a || b` needs what one side or the other needs, when both need something. Anything else
(negation, a comparison of anything but the path with a string, a macro) promises nothing.
"""

from __future__ import annotations

from .syntax import And, Binary, BinaryOp, Call, Ident, ListLiteral, Literal, Node, Or, Select

PATH_FIELD = ("http", "request", "uri", "path")


def path_prefixes(node: Node) -> tuple[str, ...] | None:
    """The prefixes one of which the path starts with whenever `node` is not false, or None."""
    match node:
        case And(left=left, right=right):
            needed = path_prefixes(left)
            return needed if needed is not None else path_prefixes(right)
        case Or(left=left, right=right):
            either = path_prefixes(left)
            other = path_prefixes(right) if either is not None else None
            return either + other if either is not None and other is not None else None
        case Call(name="startsWith", target=target, args=(Literal(value=str() as prefix),)):
            return (prefix,) if target is not None and _is_path(target) else None
        case Binary(op=BinaryOp.EQ, left=left, right=right):
            if _is_path(left):
                return _text(right)
            return _text(left) if _is_path(right) else None
        case Binary(op=BinaryOp.IN, left=left, right=ListLiteral(items=items)) if _is_path(left):
            texts = [_text(item) for item in items]
            return tuple(t[0] for t in texts if t is not None) if None not in texts else None
        case _:
            return None


def _text(node: Node) -> tuple[str] | None:
    match node:
        case Literal(value=str() as text):
            return (text,)
        case _:
            return None


def _is_path(node: Node) -> bool:
    names: list[str] = []
    while isinstance(node, Select):
        names.append(node.field)
        node = node.operand
    return isinstance(node, Ident) and (node.name, *reversed(names)) == PATH_FIELD
