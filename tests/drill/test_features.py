"""The 2025-11-18 replay's feature files come from the feature pipeline: a generated table,
the generator with and without its database filter, and a copy of the table made visible."""

from __future__ import annotations

import pytest

from failsmall.cli.up_cmd import PROBE_HEADERS, demo_bundle, example_dir
from failsmall.drill.changes import with_feature_file
from failsmall.drill.features import REPLICA_DATABASE, feature_files
from failsmall.engine import Request, RequestView, Scored
from failsmall.engine.bot import BotScorer
from failsmall.features import GuardRefused, check
from failsmall.model import Bundle


def test_the_lost_filter_doubles_the_generated_file_past_node_capacity() -> None:
    files = feature_files(120, capacity=200)
    assert files.good.slots == 120
    assert files.doubled.slots == 240
    assert files.good.version.startswith("gen-") and files.doubled.version != files.good.version
    good_keys = sorted(f.name for f in files.good.features)
    again = sorted(
        f.name.removeprefix(f"{REPLICA_DATABASE}.")
        for f in files.doubled.features
        if f.name.startswith(f"{REPLICA_DATABASE}.")
    )
    assert again == good_keys, "every feature comes back once more from the copy"
    learned = {f.name: f.weight for f in files.good.features}
    assert learned["ua:browser"] > 0 > learned["ua:headless"], "weights are learned"


def test_the_publish_guard_passes_the_good_file_and_refuses_the_doubled_one() -> None:
    files = feature_files(120, capacity=200)
    check(files.good.model_dump(mode="json"), capacity=200, previous=None)
    with pytest.raises(GuardRefused, match="200"):
        check(files.doubled.model_dump(mode="json"), capacity=200, previous=files.good)


def test_the_drill_load_is_not_scored_a_bot_by_the_learned_file() -> None:
    """The drill's visitors (a browser's request, about 70 per second from one address) must
    pass the seed's learned file, or the steady state would not hold before any fault."""
    bundle: Bundle = with_feature_file(
        demo_bundle(example_dir(), 1), feature_files(120, capacity=200).good
    )
    scorer = BotScorer.load(bundle.bot, bundle.requires)
    request = Request(
        method="GET", path="/", headers=tuple(PROBE_HEADERS.items()), client_ip="127.0.0.1"
    )
    score = scorer.score(RequestView(request), client_rate=70.0)
    assert isinstance(score, Scored) and score.score >= 30, score
