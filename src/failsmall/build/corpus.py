"""Request corpora (JSON lines) for `verify` and `inspect`, turned into engine requests.

A line: {"method", "uri", "headers": {..} or [[k, v], ..], "body" or "body_b64", "client_ip"},
and optionally "expect": the decision the site expects (`allow`, `block`, `challenge`, `error`),
or a decision and status (`block:403`); `failsmall verify` fails when a verdict differs, which
makes a corpus a site's regression tests. The body is cut to the bundle's WAF buffer exactly as
the node cuts it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from failsmall.engine.request import Request
from failsmall.model.traffic import BodyOverBuffer, Limits


class CorpusError(Exception):
    """A corpus line that is not a valid request; the message names the line."""


@dataclass(frozen=True, slots=True)
class BodyRejected:
    """The body is larger than the WAF buffer and the bundle says `reject` (413)."""

    size: int
    buffer: int


def parse_line(data: Any, where: str, now: float = 0.0) -> tuple[Request, int]:
    """A request and the full body length, from one decoded corpus line."""
    if not isinstance(data, dict):
        raise CorpusError(f"{where}: a request line must be a JSON object")
    method = data.get("method", "GET")
    uri = data.get("uri", "/")
    if not isinstance(method, str) or not isinstance(uri, str) or not uri:
        raise CorpusError(f"{where}: method and uri must be strings")
    raw_headers = data.get("headers", {})
    headers: list[tuple[str, str]] = []
    if isinstance(raw_headers, dict):
        headers = [(str(k), str(v)) for k, v in raw_headers.items()]
    elif isinstance(raw_headers, list):
        for pair in raw_headers:
            if not (isinstance(pair, list | tuple) and len(pair) == 2):
                raise CorpusError(f"{where}: headers as a list must hold [name, value] pairs")
            headers.append((str(pair[0]), str(pair[1])))
    else:
        raise CorpusError(f"{where}: headers must be an object or a list of pairs")
    if "body_b64" in data:
        try:
            body = base64.b64decode(str(data["body_b64"]), validate=True)
        except binascii.Error as exc:
            raise CorpusError(f"{where}: body_b64 is not base64: {exc}") from exc
    else:
        raw_body = data.get("body", "")
        body = raw_body.encode() if isinstance(raw_body, str) else json.dumps(raw_body).encode()
    path, _, query = uri.partition("?")
    host = next((v for k, v in headers if k.lower() == "host"), "")
    request = Request(
        method=method.upper(),
        path=path or "/",
        query=query,
        headers=tuple(headers),
        body=body,
        client_ip=str(data.get("client_ip", "127.0.0.1")),
        host=host,
        now=now,
    )
    return request, len(body)


def within_buffer(request: Request, limits: Limits) -> Request | BodyRejected:
    """The request as the WAF sees it: the body cut to the buffer, or rejected by policy."""
    size = len(request.body)
    if size <= limits.waf_body_buffer:
        return request
    match limits.body_over_buffer:
        case BodyOverBuffer.REJECT:
            return BodyRejected(size, limits.waf_body_buffer)
        case BodyOverBuffer.INSPECT_PARTIAL:
            return Request(
                method=request.method,
                path=request.path,
                query=request.query,
                headers=request.headers,
                body=request.body[: limits.waf_body_buffer],
                body_truncated=True,
                client_ip=request.client_ip,
                host=request.host,
                now=request.now,
            )


@dataclass(frozen=True, slots=True)
class Expectation:
    """The verdict a corpus line expects: a decision, and a status when one is given."""

    decision: str
    status: int | None = None

    def met_by(self, decision: str, status: int) -> bool:
        return decision == self.decision and (self.status is None or status == self.status)

    def __str__(self) -> str:
        return self.decision if self.status is None else f"{self.decision}:{self.status}"


EXPECTED_DECISIONS = ("allow", "block", "challenge", "error")


def parse_expectation(value: Any, where: str) -> Expectation | None:
    """The `expect` field of a corpus line (None when absent). Raises CorpusError."""
    if value is None:
        return None
    text = str(value).strip().lower()
    decision, _, status = text.partition(":")
    if decision not in EXPECTED_DECISIONS or (status and not status.isdigit()):
        raise CorpusError(
            f"{where}: expect must be one of {', '.join(EXPECTED_DECISIONS)}, optionally with "
            f"a status (block:403), not {value!r}"
        )
    return Expectation(decision, int(status) if status else None)


def json_lines(stream: BinaryIO) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a JSON Lines stream, decoded as UTF-8.

    JSON Lines are separated by `\n` only (a `\r` before it is JSON whitespace). A JSON string
    may hold U+0085, U+2028 or U+2029, which `str.splitlines()` and text-mode files would take
    for line breaks, so the split is made on the bytes.
    """
    for number, raw in enumerate(stream, start=1):
        yield number, raw.decode("utf-8")


def read_requests(stream: BinaryIO, name: str, now: float = 0.0) -> Iterator[Request]:
    """The requests of a JSONL corpus stream; blank lines and `#` comments are skipped."""
    for request, _ in read_cases(stream, name, now):
        yield request


def read_cases(
    stream: BinaryIO, name: str, now: float = 0.0
) -> Iterator[tuple[Request, Expectation | None]]:
    """The requests of a JSONL corpus stream, each with the verdict its line expects, if any."""
    try:
        for number, line in json_lines(stream):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            where = f"{name}:{number}"
            try:
                data = json.loads(line)
            except (json.JSONDecodeError, RecursionError) as exc:
                raise CorpusError(f"{where}: not JSON: {exc}") from exc
            expected = parse_expectation(
                data.get("expect") if isinstance(data, dict) else None, where
            )
            yield parse_line(data, where, now)[0], expected
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{name}: not UTF-8 text: {exc}") from exc


def read_corpus(path: Path, now: float = 0.0) -> Iterator[Request]:
    """The requests of a corpus file."""
    for request, _ in read_corpus_cases(path, now):
        yield request


def read_corpus_cases(path: Path, now: float = 0.0) -> Iterator[tuple[Request, Expectation | None]]:
    """The requests of a corpus file, each with the verdict its line expects, if any."""
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise CorpusError(f"cannot open corpus {path}: {exc}") from exc
    with fh:
        yield from read_cases(fh, str(path), now)
