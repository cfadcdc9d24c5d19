"""Query strings, urlencoded bodies and Cookie headers, split and decoded as servers do."""

from __future__ import annotations

from urllib.parse import unquote


def parse_form(text: str) -> list[tuple[str, str]]:
    """Name/value pairs of a query string or urlencoded body, blank values kept: what
    `urllib.parse.parse_qsl(text, keep_blank_values=True)` returns, without decoding the parts
    that have nothing to decode."""
    return [form_pair(part) for part in text.split("&") if part]


def form_pair(part: str) -> tuple[str, str]:
    """The decoded name and value of one `name=value` part of a query string or form body."""
    name, _, value = part.partition("=")
    return _form_decode(name), _form_decode(value)


def cookie_pair(part: str) -> tuple[str, str] | None:
    """The name and value of one `;`-separated part of a Cookie header; None when it has no
    `=` or no name (such parts are not cookies)."""
    name, sep, value = part.strip().partition("=")
    return (name, value) if sep and name else None


def _form_decode(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    if "%" in text:
        text = unquote(text, errors="replace")
    return text
