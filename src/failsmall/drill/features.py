"""The bot feature files of the 2025-11-18 replay, made by the feature pipeline itself.

On 2025-11-18 a permissions change made the query that builds the bot feature file read
every database it could see instead of only `default`: each feature came back once more from
the `r0` copy, the file doubled, and the doubled file passed the 200 features the proxy had
preallocated. `feature_files` is the one place the drill gets its files from: it fills a
SQLite analytics table with the labelled traffic generator's requests (the candidate features
and, to reach the size a real file has, header features the traffic never sends), learns the
good file with `failsmall.features.generate_feature_file`, makes the `r0` copy visible with
`expose_copy` (the permissions change) and runs the generator again without its database
filter, as the query ran that day: the doubled file.

The generator is deterministic (seeded traffic, the same fit), so one run gives every cycle's
files; the seed bundle carries the same good file.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

from failsmall.features import (
    SourceError,
    expose_copy,
    generate_feature_file,
    ingest_generated,
    open_source,
)
from failsmall.features.traffic import CANDIDATE_KEYS, candidate_features, generate
from failsmall.model import Feature, FeatureFile
from failsmall.model.bot import feature_from_key

REPLICA_DATABASE = "r0"
"""The database the lost filter let through: its table is a copy of the feature table."""
TABLE = "http_requests_features"
TRAINING_REQUESTS = 8_000
TRAFFIC_SEED = 1


class FeatureFileError(Exception):
    """The requested feature files cannot replay the incident; the message says what to set."""


@dataclass(frozen=True, slots=True)
class FeatureFiles:
    good: FeatureFile
    doubled: FeatureFile


def table_features(features: int) -> list[Feature]:
    """The table's feature columns: the traffic generator's candidates, then header features
    no generated client sends (they learn a weight of about 0, like the many features of a
    real file that barely move a score), up to `features` columns."""
    padding = [
        feature_from_key(f"hdr:x-signal-{i}") for i in range(max(features - len(CANDIDATE_KEYS), 0))
    ]
    return [*candidate_features(), *padding]


@functools.cache
def generated(features: int) -> FeatureFiles:
    """The good and the doubled file learned from a table of `features` columns (at least the
    generator's candidates). Raises FeatureFileError when the pipeline fails."""
    with tempfile.TemporaryDirectory(prefix="failsmall-drill-features-") as folder:
        where = Path(folder)
        try:
            source = open_source(f"sqlite:{where / 'analytics.db'}")
            try:
                requests = generate(TRAINING_REQUESTS, seed=TRAFFIC_SEED)
                ingest_generated(source, TABLE, requests, table_features(features))
                good = generate_feature_file(source, TABLE)
                expose_copy(source, TABLE, REPLICA_DATABASE, where / f"{REPLICA_DATABASE}.db")
                doubled = generate_feature_file(source, TABLE, database_filter=False)
            finally:
                source.close()
        except SourceError as exc:
            raise FeatureFileError(f"the feature pipeline failed: {exc}") from exc
    return FeatureFiles(
        FeatureFile.model_validate(good.data), FeatureFile.model_validate(doubled.data)
    )


def feature_files(features: int, capacity: int) -> FeatureFiles:
    """The good file (`features` entries) and the doubled one, which must pass `capacity`,
    the slots every node preallocates. Raises FeatureFileError otherwise."""
    files = generated(features)
    if files.good.slots > capacity:
        raise FeatureFileError(
            f"the good feature file has {files.good.slots} features, over the node capacity "
            f"{capacity}; lower `seed_features`"
        )
    if files.doubled.slots <= capacity:
        raise FeatureFileError(
            f"the doubled feature file has {files.doubled.slots} features, within the node "
            f"capacity {capacity}, so it replays nothing; set `seed_features` above "
            f"{capacity // 2}"
        )
    return files
