"""Analytics sources behind one small interface: where feature columns and labelled rows live.

A source answers two questions about a table: which columns it has (a metadata query that always
names the database, unless a caller asks for the query as it ran on 2025-11-18), and how many bot
and human requests carry each combination of feature values. Ingest writes rows through it too.

URLs: `sqlite:PATH` (the embedded default; `?attach=NAME:PATH` attaches more databases, the
way a second database becomes visible), `chdb:PATH` (ClickHouse in-process, needs
`failsmall[clickhouse]`) and `clickhouse://[user:password@]host:port/database` (a server).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

LABEL = "label"  # 1: a bot, 0: a human
LABELLED_BY = "labelled_by"  # what the label came from (generator, scanner rule, ...)
RESERVED = (LABEL, LABELLED_BY)


class SourceError(Exception):
    """A source cannot be opened or queried; the message names it and says what to do."""


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    """One row of a metadata query: a column of a table in a database."""

    database: str
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class LabelCounts:
    """Distinct feature-value combinations and how many bot and human rows have each.

    `patterns[i, j]` is 1 when feature `keys[j]` was present; binary features make the
    distinct combinations few, so a million requests fit in a small array."""

    keys: tuple[str, ...]
    patterns: npt.NDArray[np.uint8]
    bots: npt.NDArray[np.int64]
    humans: npt.NDArray[np.int64]

    @property
    def rows(self) -> int:
        return int(self.bots.sum() + self.humans.sum())


class Source(Protocol):
    """What the generator and ingest need from an analytics store."""

    url: str
    database: str

    def columns(self, table: str, *, database_filter: bool = True) -> list[ColumnInfo]:
        """The columns of `table` from the store's metadata, ordered by name. With the filter
        (always, outside tests and drills) only those of this source's own database."""
        ...

    def label_counts(self, table: str, keys: Sequence[str]) -> LabelCounts:
        """Labelled rows of `table` in this source's database, counted per combination."""
        ...

    def ensure_table(self, table: str, keys: Sequence[str]) -> None:
        """Create `table` with these feature columns plus the label, or add missing columns."""
        ...

    def insert(self, table: str, keys: Sequence[str], rows: Iterable[Sequence[int | str]]) -> int:
        """Append rows (feature values in `keys` order, then label, then labelled_by)."""
        ...

    def close(self) -> None: ...


def open_source(url: str) -> Source:
    """The source a URL names; SourceError saying which forms exist for anything else."""
    scheme, _, rest = url.partition(":")
    match scheme:
        case "sqlite":
            from failsmall.features.sqlite import SqliteSource

            return SqliteSource.open(url, rest)
        case "chdb" | "clickhouse":
            from failsmall.features.clickhouse import ClickHouseSource

            return ClickHouseSource.open(url)
        case _:
            raise SourceError(
                f"unknown source {url!r}: use sqlite:PATH, chdb:PATH or "
                "clickhouse://host:port/database"
            )
