"""The shape of 2025-11-18: between two generator runs a second database holding a copy of
the feature table becomes visible to the metadata query."""

from __future__ import annotations

import pytest

from failsmall.engine.bot import BotScorer, FeatureFileError
from failsmall.features.generate import generate_feature_file
from failsmall.features.guards import GuardRefused, check
from failsmall.features.ingest import ingest_generated
from failsmall.features.metadata import feature_columns
from failsmall.features.source import Source
from failsmall.features.traffic import CANDIDATE_KEYS, candidate_features, generate
from failsmall.model.bot import BotConfig
from failsmall.model.traffic import Capacities

from .conftest import TABLE, CopyMaker

# Wide enough that the doubled file passes the 200-slot capacity, as the real one did.
WIDE_KEYS = CANDIDATE_KEYS + tuple(f"hdr:x-signal-{i:03}" for i in range(110))


def _loaded(source: Source, keys: tuple[str, ...]) -> None:
    ingest_generated(source, TABLE, generate(4000, seed=7), candidate_features(keys))


def test_a_visible_copy_changes_nothing_with_the_database_filter(
    backend: tuple[Source, CopyMaker],
) -> None:
    source, make_copy = backend
    _loaded(source, CANDIDATE_KEYS)
    first = generate_feature_file(source, TABLE)
    make_copy(source, TABLE)
    second = generate_feature_file(source, TABLE)
    assert second.yaml() == first.yaml()
    assert len(first.data["features"]) == len(CANDIDATE_KEYS)
    # The same rows without the filter are doubled; dedupe by name keeps one of each and the
    # warning lists every duplicate with its databases.
    rows = source.columns(TABLE, database_filter=False)
    columns = feature_columns(rows)
    assert columns.keys == first.columns.keys
    assert set(columns.duplicates) == set(CANDIDATE_KEYS)
    assert all(len(dbs) == 2 and "r0" in dbs for dbs in columns.duplicates.values())
    assert "ua:browser" in columns.warning() and "r0" in columns.warning()


def test_the_unfiltered_query_is_stopped_by_the_delta_guard(
    backend: tuple[Source, CopyMaker],
) -> None:
    source, make_copy = backend
    _loaded(source, CANDIDATE_KEYS)
    published, _ = check(generate_feature_file(source, TABLE).data, capacity=200, previous=None)
    make_copy(source, TABLE)
    doubled = generate_feature_file(source, TABLE, database_filter=False)
    assert len(doubled.data["features"]) == 2 * len(CANDIDATE_KEYS)
    with pytest.raises(GuardRefused) as refused:
        check(doubled.data, capacity=200, previous=published)
    assert [p.split(":")[0] for p in refused.value.problems] == ["delta"]
    assert "100%" in refused.value.problems[0]


def test_a_wide_doubled_file_is_stopped_by_capacity_and_would_be_refused_by_a_node(
    backend: tuple[Source, CopyMaker],
) -> None:
    source, make_copy = backend
    _loaded(source, WIDE_KEYS)
    make_copy(source, TABLE)
    good = generate_feature_file(source, TABLE)
    assert len(good.data["features"]) == len(WIDE_KEYS) < 200
    check(good.data, capacity=200, previous=None)
    doubled = generate_feature_file(source, TABLE, database_filter=False)
    with pytest.raises(GuardRefused) as refused:
        check(doubled.data, capacity=200, previous=None)
    assert refused.value.problems[0].startswith(f"capacity: {2 * len(WIDE_KEYS)} features")
    # Had it been forced through, a node with 200 slots would refuse to load it.
    config = BotConfig.model_validate({"feature_file": doubled.data})
    with pytest.raises(FeatureFileError, match="more than the 200 slots"):
        BotScorer.load(config, Capacities())
