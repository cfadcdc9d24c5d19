"""The two ways an expression can fail: when it is compiled, and when it is evaluated."""

from __future__ import annotations


class ExpressionError(Exception):
    """An expression that cannot be compiled: bad syntax, unknown field or function, bad pattern.

    The message names the position (line and column) and says what to change.
    """

    def __init__(self, message: str, source: str = "", offset: int | None = None) -> None:
        self.reason = message
        self.source = source
        self.offset = offset
        super().__init__(_with_position(message, source, offset))


class ExpressionEvalError(Exception):
    """An expression that failed while evaluating one request: a type mismatch, a missing map key,
    an index out of range, a division by zero, an arithmetic overflow, or a field with no value
    (for example `bot.score` when the request was not scored)."""


def _with_position(message: str, source: str, offset: int | None) -> str:
    if offset is None or not source:
        return message
    line_start = source.rfind("\n", 0, offset) + 1
    line_end = source.find("\n", offset)
    if line_end == -1:
        line_end = len(source)
    line_number = source.count("\n", 0, offset) + 1
    column = offset - line_start + 1
    excerpt = source[line_start:line_end]
    caret = " " * (offset - line_start) + "^"
    return f"line {line_number}, column {column}: {message}\n  | {excerpt}\n  | {caret}"
