"""The good and the doubled bot feature files of the 2025-11-18 replay.

On 2025-11-18 a permissions change made the query that builds the bot feature file read
every database it could see instead of only `default`: each feature came back once more from
the `r0` copy, the file doubled, and the doubled file passed the 200 features the proxy had
preallocated. `feature_files` is the one place the drill gets its files from.
"""

from __future__ import annotations

from dataclasses import dataclass

from failsmall.model import Feature, FeatureFile, FeatureKind

REPLICA_DATABASE = "r0"
"""The database the lost filter let through: its rows are the same features again."""


class FeatureFileError(Exception):
    """The requested feature files cannot replay the incident; the message says what to set."""


@dataclass(frozen=True, slots=True)
class FeatureFiles:
    good: FeatureFile
    doubled: FeatureFile


def padded(base: FeatureFile, features: int) -> FeatureFile:
    """`base` grown to `features` entries with neutral (weight 0) header features, the way a
    real file carries many features that barely move a score."""
    extra = [
        Feature(
            name=f"hdr-x-signal-{i}",
            kind=FeatureKind.HEADER_PRESENT,
            param=f"x-signal-{i}",
            weight=0,
        )
        for i in range(max(features - len(base.features), 0))
    ]
    return base.model_copy(update={"features": [*base.features, *extra]})


def without_database_filter(good: FeatureFile, version: str) -> FeatureFile:
    """What the query returns once its `database = 'default'` filter is lost: every row again,
    from the replica database (named apart, so that the file still parses)."""
    again = [f.model_copy(update={"name": f"{REPLICA_DATABASE}.{f.name}"}) for f in good.features]
    return good.model_copy(update={"version": version, "features": [*good.features, *again]})


def feature_files(base: FeatureFile, features: int, capacity: int, cycle: int) -> FeatureFiles:
    """The good file (`features` entries) and cycle `cycle`'s doubled file, which must pass
    `capacity`, the slots every node preallocates. Raises FeatureFileError otherwise."""
    good = padded(base, features)
    if good.slots > capacity:
        raise FeatureFileError(
            f"the good feature file has {good.slots} features, over the node capacity "
            f"{capacity}; lower `features`"
        )
    doubled = without_database_filter(good, version=f"{good.version}+{REPLICA_DATABASE}.{cycle}")
    if doubled.slots <= capacity:
        raise FeatureFileError(
            f"the doubled feature file has {doubled.slots} features, within the node capacity "
            f"{capacity}, so it replays nothing; set `features` above {capacity // 2}"
        )
    return FeatureFiles(good, doubled)
