"""The access log: one JSON line per answered or refused request, for the people who run the
edge ("why was this request blocked, by which rule, under which bundle?").

Lines are collected during one event-loop iteration and written together at its end, with one
`write` to a file opened for appending (so several workers can share it and `logrotate`'s
`copytruncate` works). A line carries what identifies and explains a request, never what may
hold a secret: the path but not the query string, no header or cookie values, no body.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any, assert_never

from failsmall.engine.cache import CacheBypass, CacheDecision, CacheHit, CacheMiss
from failsmall.node.stats import TrafficStats


class AccessLogError(Exception):
    """The access log cannot be opened; the message names the path and the reason."""


class AccessLog:
    """Appends JSON lines to a file (or standard output for `-`), once per loop iteration."""

    def __init__(self, target: str, stats: TrafficStats) -> None:
        self.target = target
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

    def add(self, entry: dict[str, Any]) -> None:
        """Queue one request's line; it is written at the end of this loop iteration."""
        entry["ts"] = round(time.time(), 3)
        lines = self._lines
        if not lines:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            loop.call_soon(self.flush)
        lines.append(json.dumps(entry, separators=(",", ":")))

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
