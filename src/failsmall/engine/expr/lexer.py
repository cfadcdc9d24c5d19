"""Splits CEL source text into tokens, decoding literals (numbers, strings, bytes) on the way."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from .errors import ExpressionError
from .values import INT_MAX, UINT_MAX, UInt


class TokenKind(enum.Enum):
    """What a token is."""

    INT = "int literal"
    UINT = "uint literal"
    DOUBLE = "double literal"
    STRING = "string literal"
    BYTES = "bytes literal"
    IDENT = "identifier"
    KEYWORD = "keyword"
    PUNCT = "operator"
    END = "end of expression"


@dataclass(frozen=True, slots=True)
class Token:
    """One token: its kind, its text (or decoded value), and where it starts and ends."""

    kind: TokenKind
    text: str
    value: object
    start: int
    end: int


KEYWORDS: Final = frozenset({"true", "false", "null", "in"})
RESERVED: Final = frozenset(
    {
        "as", "break", "const", "continue", "else", "for", "function", "if", "import", "let",
        "loop", "package", "namespace", "return", "var", "void", "while",
    }
)  # fmt: skip
_PUNCTUATION: Final = (
    "&&", "||", "==", "!=", "<=", ">=", "<", ">", "!", "+", "-", "*", "/", "%",
    "?", ":", ".", ",", "(", ")", "[", "]", "{", "}",
)  # fmt: skip

_WHITESPACE: Final = re.compile(r"(?:[ \t\n\r\f]+|//[^\n]*)+")
_IDENT: Final = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")
_NUMBER: Final = re.compile(
    r"(?P<hex>0[xX][0-9a-fA-F]+)(?P<hexu>[uU])?"
    r"|(?P<double>(?:[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+|\.[0-9]+(?:[eE][+-]?[0-9]+)?))"
    r"|(?P<int>[0-9]+)(?P<intu>[uU])?"
)
_STRING_START: Final = re.compile(r"(?P<prefix>[rRbB]{0,2})(?P<quote>'''|\"\"\"|'|\")")
_SIMPLE_ESCAPES: Final = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", "?": "?", '"': '"', "'": "'", "`": "`",
}  # fmt: skip


class Lexer:
    """Turns source text into a list of tokens; every error names its position."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str, offset: int) -> ExpressionError:
        return ExpressionError(message, self.source, offset)

    def tokens(self) -> list[Token]:
        source = self.source
        out: list[Token] = []
        pos = 0
        while True:
            blank = _WHITESPACE.match(source, pos)
            if blank:
                pos = blank.end()
            if pos >= len(source):
                out.append(Token(TokenKind.END, "", None, pos, pos))
                return out
            token = self._next(pos)
            out.append(token)
            pos = token.end

    def _next(self, pos: int) -> Token:
        source = self.source
        string_start = _STRING_START.match(source, pos)
        if string_start and (string_start.group("prefix") == "" or _is_string_prefix(string_start)):
            return self._string(pos, string_start)
        ident = _IDENT.match(source, pos)
        if ident:
            text = ident.group()
            if text in RESERVED:
                raise self.fail(f"{text!r} is a reserved word in CEL; choose another name", pos)
            kind = TokenKind.KEYWORD if text in KEYWORDS else TokenKind.IDENT
            return Token(kind, text, text, pos, ident.end())
        number = _NUMBER.match(source, pos)
        if number:
            return self._number(number)
        for punct in _PUNCTUATION:
            if source.startswith(punct, pos):
                return Token(TokenKind.PUNCT, punct, punct, pos, pos + len(punct))
        raise self.fail(f"unexpected character {source[pos]!r}", pos)

    def _number(self, match: re.Match[str]) -> Token:
        start, end = match.span()
        text = match.group()
        if match.group("double") is not None:
            value = float(text)
            if value in (float("inf"), float("-inf")):
                raise self.fail(f"double literal {text} is out of range", start)
            return Token(TokenKind.DOUBLE, text, value, start, end)
        hex_digits = match.group("hex")
        digits = hex_digits if hex_digits is not None else match.group("int")
        number = int(digits, 16) if hex_digits is not None else int(digits, 10)
        if match.group("hexu") or match.group("intu"):
            if number > UINT_MAX:
                raise self.fail(f"uint literal {text} is out of range", start)
            return Token(TokenKind.UINT, text, UInt(number), start, end)
        # The magnitude may be INT_MAX + 1 when the parser negates it: -9223372036854775808.
        if number > INT_MAX + 1:
            raise self.fail(f"int literal {text} is out of range", start)
        return Token(TokenKind.INT, text, number, start, end)

    def _string(self, pos: int, start: re.Match[str]) -> Token:
        prefix = start.group("prefix").lower()
        quote = start.group("quote")
        raw = "r" in prefix
        is_bytes = "b" in prefix
        body_start = start.end()
        source = self.source
        multiline = len(quote) == 3
        parts: list[str] = []
        chunks: list[bytes] = []
        i = body_start
        while True:
            if i >= len(source):
                raise self.fail("unterminated string literal: add the closing quote", pos)
            if source.startswith(quote, i):
                end = i + len(quote)
                break
            char = source[i]
            if not multiline and char in "\r\n":
                raise self.fail(
                    "newline inside a string literal; use \\n or a triple-quoted string", i
                )
            if char == "\\" and not raw:
                i = self._escape(i, is_bytes, parts, chunks)
                continue
            if is_bytes:
                chunks.append(char.encode("utf-8"))
            else:
                parts.append(char)
            i += 1
        text = source[pos:end]
        if is_bytes:
            return Token(TokenKind.BYTES, text, b"".join(chunks), pos, end)
        return Token(TokenKind.STRING, text, "".join(parts), pos, end)

    def _escape(self, i: int, is_bytes: bool, parts: list[str], chunks: list[bytes]) -> int:
        source = self.source
        code = source[i + 1 : i + 2]
        if code in _SIMPLE_ESCAPES:
            text = _SIMPLE_ESCAPES[code]
            if is_bytes:
                chunks.append(text.encode())
            else:
                parts.append(text)
            return i + 2
        width = {"x": 2, "X": 2, "u": 4, "U": 8}.get(code)
        if width is not None:
            if is_bytes and width > 2:
                raise self.fail("\\u and \\U escapes are not allowed in bytes literals", i)
            digits = source[i + 2 : i + 2 + width]
            if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                raise self.fail(f"\\{code} needs {width} hex digits", i)
            number = int(digits, 16)
            if is_bytes:
                chunks.append(bytes([number]))
            else:
                if number > 0x10FFFF or 0xD800 <= number <= 0xDFFF:
                    raise self.fail(f"\\{code}{digits} is not a Unicode scalar value", i)
                parts.append(chr(number))
            return i + 2 + width
        octal = source[i + 1 : i + 4]
        if len(octal) == 3 and all(c in "01234567" for c in octal) and octal[0] in "0123":
            number = int(octal, 8)
            if is_bytes:
                chunks.append(bytes([number]))
            else:
                parts.append(chr(number))
            return i + 4
        raise self.fail(f"invalid escape sequence \\{code}", i)


def _is_string_prefix(match: re.Match[str]) -> bool:
    prefix = match.group("prefix").lower()
    return prefix in ("r", "b", "rb", "br")
