"""Analytics sources for the feature tests: SQLite always, ClickHouse (chdb) when installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from failsmall.features.clickhouse import ClickHouseSource, quote
from failsmall.features.source import Source, open_source
from failsmall.features.sqlite import SqliteSource

TABLE = "http_requests_features"
CHDB = importlib.util.find_spec("chdb") is not None

# Makes a second database holding a copy of the table visible to the source.
CopyMaker = Callable[[Source, str], None]


def _sqlite_copy(tmp_path: Path) -> CopyMaker:
    def make(source: Source, table: str) -> None:
        assert isinstance(source, SqliteSource)
        copy = tmp_path / "r0.db"
        db = source.connection
        (ddl,) = db.execute("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        db.execute("ATTACH DATABASE ? AS r0", (str(copy),))
        db.execute(str(ddl).replace("CREATE TABLE ", "CREATE TABLE r0.", 1))
        db.execute(f'INSERT INTO r0."{table}" SELECT * FROM main."{table}"')

    return make


def _chdb_copy(source: Source, table: str) -> None:
    assert isinstance(source, ClickHouseSource)
    source.run("CREATE DATABASE IF NOT EXISTS r0", "TSV")
    source.run(f"CREATE TABLE r0.{quote(table)} AS default.{quote(table)}", "TSV")
    source.run(f"INSERT INTO r0.{quote(table)} SELECT * FROM default.{quote(table)}", "TSV")


@pytest.fixture(params=["sqlite", "chdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Source, CopyMaker]]:
    """A fresh source and how to make a copy of a table in a second database visible."""
    if request.param == "sqlite":
        source = open_source(f"sqlite:{tmp_path / 'analytics.db'}")
        yield source, _sqlite_copy(tmp_path)
    else:
        if not CHDB:
            pytest.skip("chdb is not installed: pip install 'failsmall[clickhouse]'")
        source = open_source(f"chdb:{tmp_path / 'clickhouse'}")
        yield source, _chdb_copy
    source.close()
