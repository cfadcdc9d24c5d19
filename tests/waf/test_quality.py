"""Floors under detection and false positives, so that quality cannot silently regress.

The CRS regression corpus is read in place (skipped when absent); the benign corpus is ours.
The floors sit below the measured figures (docs/waf.md) to leave room for deliberate trade-offs,
not for accidents: a change that loses a family's detection or starts blocking ordinary traffic
fails here.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from failsmall.engine import Engine
from failsmall.managed.corpora import FAMILIES, benign_requests, crs_cases
from failsmall.managed.measure import (
    Inspector,
    attack_cases,
    managed_bundle,
    measure_attacks,
    measure_benign,
)

REPO = Path(__file__).resolve().parents[2]
CRS_CORPUS = REPO.parent / "shared" / "corpora" / "crs-regression"
BENIGN_CORPUS = REPO / "tests" / "data" / "benign"
DETECTION_FLOOR = 0.85
FALSE_POSITIVE_CEILING = 0.01
MIN_BENIGN_REQUESTS = 2000


@pytest.fixture(scope="module")
def inspector() -> Iterator[Inspector]:
    yield Inspector(Engine.build(managed_bundle(paranoia_level=1)))


def test_detection_floor_per_family(inspector: Inspector) -> None:
    if not CRS_CORPUS.is_dir():
        pytest.skip(f"CRS regression corpus not found at {CRS_CORPUS}")
    # A fixed sample: every other paranoia-1 attack, in corpus order.
    sample = attack_cases(crs_cases(CRS_CORPUS))[::2]
    results = measure_attacks(inspector, sample)
    assert set(results) == set(FAMILIES)
    low = {
        f"{r.family} {r.name}": f"{r.blocked}/{r.tests}"
        for r in results.values()
        if r.tests == 0 or r.rate < DETECTION_FLOOR
    }
    assert not low, f"families under the {DETECTION_FLOOR:.0%} floor: {low}"


def test_false_positive_ceiling_on_the_benign_corpus(inspector: Inspector) -> None:
    result = measure_benign(inspector, benign_requests(BENIGN_CORPUS))
    assert result.requests >= MIN_BENIGN_REQUESTS
    assert result.rate <= FALSE_POSITIVE_CEILING, (
        f"{result.blocked} of {result.requests} benign requests blocked: {result.blocked_by_rule}"
    )
