"""From a metadata query's rows to the feature columns: deduplicated by name, checked for
names that are feature keys and for integer types."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from failsmall.features.source import RESERVED, ColumnInfo
from failsmall.model.bot import feature_from_key

INTEGER_TYPES = ("INTEGER", "INT", "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32")


class SchemaError(Exception):
    """The table's columns cannot make a feature file; `problems` says which and why."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class FeatureColumns:
    """The feature columns a metadata query found, and the names it returned more than once
    (with the databases each came from), which were kept once."""

    keys: tuple[str, ...]
    duplicates: dict[str, tuple[str, ...]]
    rows: int  # how many rows the query returned, duplicates included

    def warning(self) -> str:
        """A line that lists the duplicates, or "" when there were none."""
        if not self.duplicates:
            return ""
        listed = ", ".join(f"{k} ({' and '.join(dbs)})" for k, dbs in self.duplicates.items())
        return (
            f"the metadata query returned {self.rows} rows for {len(self.keys)} features; "
            f"kept one of each duplicate: {listed}"
        )


def feature_columns(rows: list[ColumnInfo]) -> FeatureColumns:
    """Deduplicate by name; SchemaError for a column that is not a feature key or not an
    integer, or a name whose copies disagree on the type."""
    by_name: dict[str, list[ColumnInfo]] = defaultdict(list)
    for row in rows:
        if row.name not in RESERVED:
            by_name[row.name].append(row)
    problems: list[str] = []
    for name, copies in sorted(by_name.items()):
        try:
            feature_from_key(name)
        except ValueError as exc:
            problems.append(f"column {name!r}: {exc}")
        if len({_integer(c.type) for c in copies}) > 1:
            types = sorted({f"{c.database}: {c.type}" for c in copies})
            problems.append(f"column {name!r} has different types in copies: {types}")
        elif not _integer(copies[0].type):
            problems.append(f"column {name!r} is {copies[0].type}, not an integer (0 or 1)")
    if problems:
        raise SchemaError(problems)
    duplicates = {
        name: tuple(c.database for c in copies)
        for name, copies in sorted(by_name.items())
        if len(copies) > 1
    }
    return FeatureColumns(tuple(sorted(by_name)), duplicates, len(rows))


def _integer(declared: str) -> bool:
    return declared.upper().removeprefix("NULLABLE(").rstrip(")") in INTEGER_TYPES
