"""ClickHouse sources: `chdb:PATH` runs the real ClickHouse engine in-process (chdb), and
`clickhouse://[user:password@]host:port/database` talks to a server (clickhouse-connect). Both
take SQL text and return bytes, so one class serves both. Columns come from `system.columns`,
the metadata table of 2025-11-18, always with `database = ...` unless a drill asks otherwise.

Needs the optional extra: `pip install 'failsmall[clickhouse]'`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from failsmall.features.source import (
    LABEL,
    LABELLED_BY,
    ColumnInfo,
    LabelCounts,
    SourceError,
)

EXTRA_HINT = "install the extra: pip install 'failsmall[clickhouse]'"


def quote(name: str) -> str:
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


Run = Callable[[str, str], bytes]
"""Runs one statement and returns its output in a ClickHouse format."""


@dataclass
class ClickHouseSource:
    url: str
    database: str
    run: Run
    closer: Callable[[], None]

    @classmethod
    def open(cls, url: str) -> ClickHouseSource:
        if url.startswith("chdb:"):
            return cls._chdb(url, url.removeprefix("chdb:"))
        return cls._server(url)

    @classmethod
    def _chdb(cls, url: str, rest: str) -> ClickHouseSource:
        path, _, query = rest.partition("?")
        database = query.removeprefix("database=") if query.startswith("database=") else "default"
        try:
            from chdb import session
        except ImportError as exc:
            raise SourceError(f"{url}: chdb is not installed; {EXTRA_HINT}") from exc
        if not path:
            raise SourceError(f"{url!r} names no directory: use chdb:PATH")
        try:
            chdb_session: Any = session.Session(path)  # type: ignore[no-untyped-call]
        except Exception as exc:
            raise SourceError(f"cannot open {url}: {exc}") from exc

        def run(sql: str, fmt: str) -> bytes:
            try:
                return bytes(chdb_session.query(sql, fmt).bytes())
            except Exception as exc:
                raise SourceError(f"query failed at {url}: {exc} ({sql[:200]})") from exc

        source = cls(url, database, run, chdb_session.close)
        source.run(f"CREATE DATABASE IF NOT EXISTS {quote(database)}", "TSV")
        return source

    @classmethod
    def _server(cls, url: str) -> ClickHouseSource:
        try:
            import clickhouse_connect
        except ImportError as exc:
            raise SourceError(f"{url}: clickhouse-connect is not installed; {EXTRA_HINT}") from exc
        parts = urlsplit(url)
        database = parts.path.strip("/") or "default"
        try:
            client: Any = clickhouse_connect.get_client(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or 8123,
                username=parts.username or "default",
                password=parts.password or "",
                database=database,
            )
        except Exception as exc:
            raise SourceError(f"cannot connect to {parts.hostname}:{parts.port}: {exc}") from exc

        def run(sql: str, fmt: str) -> bytes:
            try:
                return bytes(client.raw_query(sql, fmt=fmt))
            except Exception as exc:
                raise SourceError(f"query failed at {parts.hostname}: {exc}") from exc

        return cls(url, database, run, client.close)

    def _rows(self, sql: str) -> list[list[Any]]:
        data = json.loads(self.run(sql, "JSONCompact") or b'{"data": []}')
        return list(data["data"])

    def columns(self, table: str, *, database_filter: bool = True) -> list[ColumnInfo]:
        sql = f"SELECT database, name, type FROM system.columns WHERE table = {literal(table)}"
        if database_filter:
            sql += f" AND database = {literal(self.database)}"
        rows = self._rows(sql + " ORDER BY name, database")
        return [ColumnInfo(str(db), str(name), str(kind)) for db, name, kind in rows]

    def label_counts(self, table: str, keys: Sequence[str]) -> LabelCounts:
        width = len(keys)
        columns = ", ".join(quote(k) for k in keys)
        select = f"{columns}, " if keys else ""
        group = f" GROUP BY {columns}" if keys else ""
        rows = self._rows(
            f"SELECT {select}sum({LABEL}), count() FROM {quote(self.database)}.{quote(table)}"
            f" WHERE {LABEL} IN (0, 1){group}"
        )
        rows = [r for r in rows if int(r[-1])]
        data = np.array([[int(v) for v in r] for r in rows], dtype=np.int64)
        data = data.reshape(len(rows), width + 2)
        bots = data[:, width]
        return LabelCounts(
            tuple(keys), data[:, :width].astype(np.uint8), bots, data[:, width + 1] - bots
        )

    def ensure_table(self, table: str, keys: Sequence[str]) -> None:
        target = f"{quote(self.database)}.{quote(table)}"
        self.run(
            f"CREATE TABLE IF NOT EXISTS {target} ({LABEL} UInt8, {LABELLED_BY} String)"
            " ENGINE = MergeTree ORDER BY tuple()",
            "TSV",
        )
        have = {c.name for c in self.columns(table)}
        for key in keys:
            if key not in have:
                self.run(f"ALTER TABLE {target} ADD COLUMN {quote(key)} UInt8 DEFAULT 0", "TSV")

    def insert(self, table: str, keys: Sequence[str], rows: Iterable[Sequence[int | str]]) -> int:
        names = ", ".join(quote(k) for k in (*keys, LABEL, LABELLED_BY))
        target = f"{quote(self.database)}.{quote(table)}"
        head = f"INSERT INTO {target} ({names}) FORMAT JSONCompactEachRow\n"
        count = 0
        iterator = iter(rows)
        while chunk := list(islice(iterator, 50_000)):
            body = "\n".join(json.dumps(list(row)) for row in chunk)
            self.run(head + body, "TSV")
            count += len(chunk)
        return count

    def close(self) -> None:
        self.closer()
