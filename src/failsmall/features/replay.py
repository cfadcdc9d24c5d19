"""For replays of 2025-11-18: make a second database holding a copy of the feature table
visible to a source, the way a permissions change did. Nothing in production calls this."""

from __future__ import annotations

from pathlib import Path

from failsmall.features.clickhouse import ClickHouseSource
from failsmall.features.clickhouse import quote as ch_quote
from failsmall.features.source import Source, SourceError
from failsmall.features.sqlite import SqliteSource
from failsmall.features.sqlite import quote as sql_quote


def expose_copy(source: Source, table: str, database: str = "r0", path: Path | None = None) -> None:
    """Create `database` with a copy of `table` (same columns and rows) visible to `source`.
    SQLite attaches it from `path` (a file); ClickHouse creates it next to the source's own."""
    match source:
        case SqliteSource():
            if path is None:
                raise SourceError("a SQLite copy needs the path of the database file to attach")
            db = source.connection
            found = db.execute(
                f"SELECT sql FROM {sql_quote(source.database)}.sqlite_master WHERE name = ?",
                (table,),
            ).fetchone()
            if found is None:
                raise SourceError(f"no table {table!r} in {source.url} to copy")
            source.attach(database, path)
            own = f"{sql_quote(source.database)}.{sql_quote(table)}"
            target = f"{sql_quote(database)}.{sql_quote(table)}"
            columns = str(found[0]).split("(", 1)[1]  # the same columns, types and defaults
            db.execute(f"CREATE TABLE {target} ({columns}")
            db.execute(f"INSERT INTO {target} SELECT * FROM {own}")
        case ClickHouseSource():
            own = f"{ch_quote(source.database)}.{ch_quote(table)}"
            target = f"{ch_quote(database)}.{ch_quote(table)}"
            source.run(f"CREATE DATABASE IF NOT EXISTS {ch_quote(database)}", "TSV")
            source.run(f"CREATE TABLE {target} AS {own}", "TSV")
            source.run(f"INSERT INTO {target} SELECT * FROM {own}", "TSV")
        case _:
            raise SourceError(f"cannot expose a copy for {source.url}")
