"""`sqlite:PATH`: the embedded analytics store. Databases attached to the connection
(`?attach=NAME:PATH`) are visible to the metadata query unless it names the database, which is
how 2025-11-18's duplicate columns are reproduced without a ClickHouse cluster."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from failsmall.features.source import (
    LABEL,
    LABELLED_BY,
    ColumnInfo,
    LabelCounts,
    SourceError,
)

# Every database of the connection (main and each attached one) is asked for the table's
# columns; without the filter on the database's name the query sees every attached copy of the
# table, like `system.columns` without `database = ...`.
_DATABASES = "SELECT name FROM pragma_database_list"
_COLUMNS = "SELECT ?, name, type FROM pragma_table_info(?, ?)"


PACK = 62  # feature values packed into one signed 64-bit integer


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class SqliteSource:
    url: str
    database: str
    connection: sqlite3.Connection

    @classmethod
    def open(cls, url: str, rest: str) -> SqliteSource:
        path, _, query = rest.partition("?")
        if not path:
            raise SourceError(f"{url!r} names no file: use sqlite:PATH")
        database = "main"
        attach: list[tuple[str, str]] = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name == "attach" and ":" in value:
                alias, _, other = value.partition(":")
                attach.append((alias, other))
            elif name == "database":
                database = value
            else:
                raise SourceError(
                    f"{url!r}: unknown option {name}={value}; use attach=NAME:PATH or database=NAME"
                )
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(path, isolation_level=None)
            source = cls(url, database, connection)
            for alias, other in attach:
                source.attach(alias, Path(other))
        except (OSError, sqlite3.Error) as exc:
            raise SourceError(f"cannot open {url}: {exc}") from exc
        return source

    def attach(self, alias: str, path: Path) -> None:
        """Make another database (and its copies of tables) visible to this connection."""
        self.connection.execute(f"ATTACH DATABASE ? AS {quote(alias)}", (str(path),))

    def columns(self, table: str, *, database_filter: bool = True) -> list[ColumnInfo]:
        databases = [str(name) for (name,) in self._run(_DATABASES, [])]
        if database_filter:
            databases = [name for name in databases if name == self.database]
        rows = [row for db in databases for row in self._run(_COLUMNS, [db, table, db])]
        found = [ColumnInfo(str(db), str(name), str(kind)) for db, name, kind in rows]
        return sorted(found, key=lambda c: (c.name, c.database))

    def label_counts(self, table: str, keys: Sequence[str]) -> LabelCounts:
        # Grouping by the feature values packed into integers (62 per integer) is several
        # times faster in SQLite than grouping by each column.
        words = [keys[i : i + PACK] for i in range(0, len(keys), PACK)]
        packed = [
            " | ".join(f"(({quote(k)} != 0) << {bit})" for bit, k in enumerate(word))
            for word in words
        ]
        select = "".join(f"{p}, " for p in packed)
        group = " GROUP BY " + ", ".join(str(i + 1) for i in range(len(packed))) if packed else ""
        rows = self._run(
            f"SELECT {select}SUM({LABEL}), COUNT(*) FROM {quote(self.database)}.{quote(table)}"
            f" WHERE {LABEL} IN (0, 1){group}",
            [],
        )
        rows = [r for r in rows if r[-1]]
        data = np.array(rows, dtype=np.int64).reshape(len(rows), len(packed) + 2)
        patterns = np.zeros((len(rows), len(keys)), dtype=np.uint8)
        for w, word in enumerate(words):
            for bit in range(len(word)):
                patterns[:, w * PACK + bit] = (data[:, w] >> bit) & 1
        bots = data[:, len(packed)]
        return LabelCounts(tuple(keys), patterns, bots, data[:, len(packed) + 1] - bots)

    def ensure_table(self, table: str, keys: Sequence[str]) -> None:
        target = f"{quote(self.database)}.{quote(table)}"
        have = {c.name for c in self.columns(table)}
        if not have:
            self._run(
                f"CREATE TABLE {target} ({LABEL} INTEGER NOT NULL, {LABELLED_BY} TEXT NOT NULL)",
                [],
            )
        for key in keys:
            if key not in have:
                self._run(
                    f"ALTER TABLE {target} ADD COLUMN {quote(key)} INTEGER NOT NULL DEFAULT 0", []
                )

    def insert(self, table: str, keys: Sequence[str], rows: Iterable[Sequence[int | str]]) -> int:
        names = ", ".join(quote(k) for k in (*keys, LABEL, LABELLED_BY))
        marks = ", ".join("?" * (len(keys) + 2))
        sql = f"INSERT INTO {quote(self.database)}.{quote(table)} ({names}) VALUES ({marks})"
        count = 0
        iterator = iter(rows)
        try:
            self.connection.execute("BEGIN")
            while chunk := list(islice(iterator, 10_000)):
                self.connection.executemany(sql, chunk)
                count += len(chunk)
            self.connection.execute("COMMIT")
        except sqlite3.Error as exc:
            self.connection.rollback()
            raise SourceError(f"cannot insert into {table} at {self.url}: {exc}") from exc
        return count

    def close(self) -> None:
        self.connection.close()

    def _run(self, sql: str, params: Sequence[object]) -> list[tuple[object, ...]]:
        try:
            return list(self.connection.execute(sql, params))
        except sqlite3.Error as exc:
            raise SourceError(f"query failed at {self.url}: {exc} ({sql})") from exc
