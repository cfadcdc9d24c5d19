"""Analytics sources for the feature tests: SQLite always, ClickHouse (chdb) when installed."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from failsmall.features.replay import expose_copy
from failsmall.features.source import Source, open_source

TABLE = "http_requests_features"
CHDB = importlib.util.find_spec("chdb") is not None

# Makes a second database holding a copy of the table visible to the source.
CopyMaker = Callable[[Source, str], None]


@pytest.fixture(params=["sqlite", "chdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Source, CopyMaker]]:
    """A fresh source and how to make a copy of a table in a second database visible."""
    if request.param == "sqlite":
        source = open_source(f"sqlite:{tmp_path / 'analytics.db'}")
        yield source, lambda s, table: expose_copy(s, table, "r0", tmp_path / "r0.db")
    else:
        if not CHDB:
            pytest.skip("chdb is not installed: pip install 'failsmall[clickhouse]'")
        source = open_source(f"chdb:{tmp_path / 'clickhouse'}")
        yield source, lambda s, table: expose_copy(s, table, "r0")
    source.close()
