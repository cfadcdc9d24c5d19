"""Load per-request bot feature values into an analytics table, with a label from what the
platform knows: the traffic generator's request ids (`gen-bot-…`, `gen-human-…`) and requests
that matched a managed signature rule (scanners and attack tools: bots). A line with no bot
score, or with nothing that tells bot from human, is counted and left out."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from failsmall.features.source import Source
from failsmall.features.traffic import (
    GENERATOR_ID_PREFIX,
    LabelledRequest,
    table_rows,
)
from failsmall.model.bot import Feature, feature_from_key

SIGNATURE_RULE_PREFIX = "fsm-"  # the managed ruleset's signature rules


class IngestError(Exception):
    """An access log that cannot be read; the message says where."""


@dataclass
class Ingested:
    rows: int = 0
    bots: int = 0
    humans: int = 0
    unscored: int = 0
    unlabelled: int = 0
    columns: tuple[str, ...] = ()
    labelled_by: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "rows": self.rows,
            "bots": self.bots,
            "humans": self.humans,
            "skipped_unscored": self.unscored,
            "skipped_unlabelled": self.unlabelled,
            "columns": list(self.columns),
            "labelled_by": self.labelled_by,
        }


def label_of(entry: dict[str, object]) -> tuple[int, str] | None:
    """(1 bot / 0 human, why) for an access log entry, or None when nothing tells."""
    request_id = str(entry.get("id", ""))
    if request_id.startswith(f"{GENERATOR_ID_PREFIX}-bot-"):
        return 1, "generator:" + request_id.split("-")[2]
    if request_id.startswith(f"{GENERATOR_ID_PREFIX}-human-"):
        return 0, "generator:" + request_id.split("-")[2]
    rules = entry.get("rules", [])
    if isinstance(rules, list):
        for rule in rules:
            if str(rule).startswith(SIGNATURE_RULE_PREFIX):
                return 1, f"signature:{rule}"
    return None


def read_access_log(path: Path) -> Iterator[dict[str, object]]:
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise IngestError(f"{path}:{number} is not a JSON line: {exc}") from exc
                if isinstance(entry, dict):
                    yield entry
    except OSError as exc:
        raise IngestError(f"cannot read access log {path}: {exc.strerror}") from exc


def ingest_access_log(
    source: Source, table: str, path: Path, features: Sequence[Feature] = ()
) -> Ingested:
    """Rows from the `bf` field of a node's access log. Columns: the keys of `features` (the
    file the nodes ran, so an absent feature still gets its column) and every key logged."""
    result = Ingested()
    labelled: list[tuple[set[str], int, str]] = []
    keys = {f.key for f in features}
    for entry in read_access_log(path):
        if "bot" not in entry:
            result.unscored += 1
            continue
        label = label_of(entry)
        if label is None:
            result.unlabelled += 1
            continue
        logged = entry.get("bf", [])
        present = {str(k) for k in logged} if isinstance(logged, list) else set()
        for key in present - keys:
            feature_from_key(key)  # a malformed key fails here, before anything is written
        keys |= present
        labelled.append((present, label[0], label[1]))
    columns = tuple(sorted(keys))
    rows: list[tuple[int | str, ...]] = [
        (*(int(k in present) for k in columns), label, why) for present, label, why in labelled
    ]
    _write(source, table, columns, rows, result)
    return result


def ingest_generated(
    source: Source, table: str, requests: Iterable[LabelledRequest], features: Sequence[Feature]
) -> Ingested:
    """Rows straight from the traffic generator, valued with the engine's feature tests."""
    result = Ingested()
    columns = tuple(f.key for f in features)
    _write(source, table, columns, table_rows(iter(requests), features), result)
    return result


def _write(
    source: Source,
    table: str,
    columns: tuple[str, ...],
    rows: Iterable[tuple[int | str, ...]],
    result: Ingested,
) -> None:
    source.ensure_table(table, columns)
    result.columns = columns

    def counted() -> Iterator[tuple[int | str, ...]]:
        for row in rows:
            label, why = row[-2], str(row[-1])
            if label == 1:
                result.bots += 1
            else:
                result.humans += 1
            result.labelled_by[why] = result.labelled_by.get(why, 0) + 1
            yield row

    result.rows = source.insert(table, columns, counted())
