"""Request bodies with a `Content-Encoding`, decoded for inspection as the origin will decode them.

`gzip` (and `x-gzip`), `deflate` (zlib-wrapped, or raw as some clients send it) and `br` are
decoded, in the reverse order of the header's list, at most `waf_max_decode_depth` layers. Each
layer's output is bounded by the WAF body buffer and by `waf_max_expansion` times its input, so
a decompression bomb costs at most that much work and ends in a `LimitReached`. A coding the WAF
cannot decode, or data that is not what the header says, is a `LimitReached` too: the WAF does
not guess what the origin will read.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import brotli

from failsmall.engine.work import LimitReached
from failsmall.model.traffic import Limits

IDENTITY = frozenset({"", "identity"})


@dataclass(frozen=True, slots=True, init=False)
class DecodedBody:
    """The body as the origin will read it (as far as the limits allow), and the limit that
    stopped its decoding, if one did."""

    data: bytes
    reached: LimitReached | None

    def __init__(self, data: bytes, reached: LimitReached | None = None) -> None:
        # Written out so that it is compiled: a dataclass's generated `__init__` runs
        # interpreted, and one body request in two makes one of these.
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "reached", reached)


class _Undecodable(Exception):
    """The data is not valid for its coding."""


class _TooLarge(Exception):
    """A layer's output passed its bound; `data` is its output up to the bound."""

    def __init__(self, data: bytes) -> None:
        super().__init__("decoded body past its bound")
        self.data = data


def content_codings(header_values: Sequence[str]) -> list[str]:
    """The codings of `Content-Encoding` header values, lowercase, in the order applied."""
    return [
        coding.strip().lower()
        for value in header_values
        for coding in value.split(",")
        if coding.strip().lower() not in IDENTITY
    ]


def decode_body(codings: list[str], body: bytes, truncated: bool, limits: Limits) -> DecodedBody:
    """`body` decoded through `codings` (outermost last); `truncated` says the body was cut at
    the buffer, so an unfinished stream is expected rather than a defect."""
    if not codings:
        return DecodedBody(body)
    if len(codings) > limits.waf_max_decode_depth:
        return DecodedBody(
            body,
            LimitReached(
                "waf_max_decode_depth",
                f"{len(codings)} content codings, limit {limits.waf_max_decode_depth}",
            ),
        )
    data = body
    for coding in reversed(codings):
        bound = min(limits.waf_body_buffer, max(len(data), 1) * limits.waf_max_expansion)
        try:
            data = _decode_layer(coding, data, bound, truncated)
        except _TooLarge as too_large:
            limit = "waf_body_buffer" if bound == limits.waf_body_buffer else "waf_max_expansion"
            return DecodedBody(
                too_large.data,
                LimitReached(limit, f"{coding} body decodes to more than {bound} bytes"),
            )
        except _Undecodable as exc:
            return DecodedBody(data, LimitReached("content_encoding", str(exc)))
    return DecodedBody(data)


def _decode_layer(coding: str, data: bytes, bound: int, truncated: bool) -> bytes:
    match coding:
        case "gzip" | "x-gzip":
            return _zlib(data, 16 + zlib.MAX_WBITS, bound, truncated, members=True)
        case "deflate":
            try:
                return _zlib(data, zlib.MAX_WBITS, bound, truncated, members=False)
            except _Undecodable:  # raw deflate, without the zlib wrapper
                return _zlib(data, -zlib.MAX_WBITS, bound, truncated, members=False)
        case "br":
            return _brotli(data, bound, truncated)
        case _:
            raise _Undecodable(f"content coding {coding!r} cannot be decoded for inspection")


def _zlib(data: bytes, wbits: int, bound: int, truncated: bool, members: bool) -> bytes:
    out = bytearray()
    rest = data
    while rest:
        decoder = zlib.decompressobj(wbits)
        try:
            out += decoder.decompress(rest, bound + 1 - len(out))
        except zlib.error as exc:
            raise _Undecodable(f"body is not valid {_name(wbits)} data: {exc}") from exc
        if len(out) > bound or decoder.unconsumed_tail:
            raise _TooLarge(bytes(out[:bound]))
        if not decoder.eof:
            if truncated:
                break
            raise _Undecodable(f"{_name(wbits)} body ends before its stream does")
        rest = decoder.unused_data
        if not members and rest:
            raise _Undecodable(f"{len(rest)} bytes after the end of the deflate stream")
    return bytes(out)


def _brotli(data: bytes, bound: int, truncated: bool) -> bytes:
    decoder = brotli.Decompressor()
    try:
        out: bytes = decoder.process(data, output_buffer_limit=bound + 1)
    except brotli.error as exc:
        raise _Undecodable(f"body is not valid brotli data: {exc}") from exc
    if len(out) > bound or not decoder.can_accept_more_data():
        raise _TooLarge(out[:bound])
    if not decoder.is_finished() and not truncated:
        raise _Undecodable("brotli body ends before its stream does")
    return out


def _name(wbits: int) -> str:
    return "gzip" if wbits > zlib.MAX_WBITS else "deflate"
