"""The access log: one JSON line per answered or refused request, for the people who run the
edge ("why was this request blocked, by which rule, under which bundle?").

Lines are collected during one event-loop iteration and written together at its end, with one
`write` to a file opened for appending (so several workers can share it and `logrotate`'s
`copytruncate` works). A line carries what identifies and explains a request, never what may
hold a secret: the path but not the query string, no header or cookie values, no body. Scored
requests carry the keys of the bot features that were present (`"bf"`), which
`failsmall features ingest` loads into an analytics table. For the signature rules a request
matched, `fields` names the fields each matched on (`args.q`, `headers.referer`): names only,
never values, so `failsmall tune` can scope an exception.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as quote  # the C encoder of JSON strings
from pathlib import Path
from typing import assert_never

from failsmall.engine.cache import CacheBypass, CacheDecision, CacheHit, CacheMiss
from failsmall.node.stats import TrafficStats


@dataclass(slots=True)
class AccessEntry:
    """One line of the access log. `method`, `host` and `path` are empty when the request's
    head was never parsed (a malformed request); such lines leave them out."""

    client: str
    status: int
    decision: str
    ms: float
    request_id: str = ""
    method: str = ""
    host: str = ""
    path: str = ""
    body_bytes: int = 0
    bundle: str = ""
    origin: str = ""
    cache: str = ""
    rules: tuple[str, ...] = ()
    fields: dict[str, tuple[str, ...]] | None = None  # signature rule -> fields it matched on
    bot: int | None = None  # the bot score (1-99), when the bot module computed one
    bot_features: tuple[str, ...] = ()  # keys of the bot features present (`ua:curl`, ...)
    errored: tuple[str, ...] = ()
    note: str = ""

    def to_line(self, ts: float) -> str:
        """The JSON line; built by hand because `json.dumps` costs several times more on a
        path taken for every request. Every string goes through JSON's own escaping."""
        parts = [f'{{"ts":{ts:.3f},"client":{quote(self.client)}']
        if self.method:
            parts.append(
                f',"id":{quote(self.request_id)},"method":{quote(self.method)}'
                f',"host":{quote(self.host)},"path":{quote(self.path)}'
            )
        parts.append(
            f',"status":{self.status},"decision":{quote(self.decision)},"ms":{self.ms:.3f}'
            f',"body_bytes":{self.body_bytes}'
        )
        if self.bundle:
            parts.append(f',"bundle":{quote(self.bundle)}')
        if self.origin:
            parts.append(f',"origin":{quote(self.origin)}')
        if self.cache:
            parts.append(f',"cache":{quote(self.cache)}')
        if self.rules:
            parts.append(f',"rules":[{",".join(map(quote, self.rules))}]')
        if self.fields:
            listed = (
                f"{quote(rule)}:[{','.join(map(quote, names))}]"
                for rule, names in self.fields.items()
            )
            parts.append(f',"fields":{{{",".join(listed)}}}')
        if self.bot is not None:
            parts.append(f',"bot":{self.bot}')
            if self.bot_features:
                parts.append(f',"bf":[{",".join(map(quote, self.bot_features))}]')
        if self.errored:
            parts.append(f',"errored":[{",".join(map(quote, self.errored))}]')
        if self.note:
            parts.append(f',"note":{quote(self.note)}')
        parts.append("}")
        return "".join(parts)


class AccessLogError(Exception):
    """The access log cannot be opened; the message names the path and the reason."""


class AccessLog:
    """Appends JSON lines to a file (or standard output for `-`), once per loop iteration."""

    def __init__(self, target: str, stats: TrafficStats) -> None:
        self.stats = stats
        if target == "-":
            self._fd = os.dup(1)
        else:
            try:
                self._fd = os.open(
                    Path(target), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640
                )
            except OSError as exc:
                raise AccessLogError(f"cannot open access log {target}: {exc.strerror}") from exc
        self._lines: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, entry: AccessEntry) -> None:
        """Queue one request's line; it is written at the end of this loop iteration."""
        lines = self._lines
        if not lines:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush)
        lines.append(entry.to_line(time.time()))

    def flush(self) -> None:
        if not self._lines:
            return
        data = ("\n".join(self._lines) + "\n").encode()
        self._lines = []
        try:
            os.write(self._fd, data)
        except OSError:
            # A full disk must not stop the proxy; the count is exported as a metric.
            self.stats.access_log_write_errors += 1

    def close(self) -> None:
        self.flush()
        os.close(self._fd)


def cache_field(decision: CacheDecision) -> str:
    """The cache decision's name for the log."""
    match decision:
        case CacheHit():
            return "hit"
        case CacheMiss():
            return "miss"
        case CacheBypass():
            return "bypass"
        case _:
            assert_never(decision)
