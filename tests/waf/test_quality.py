"""Floors under detection and false positives, so that quality cannot silently regress.

The CRS regression corpus is read in place (skipped when absent); the benign corpus is ours.
The floors sit below the measured figures (docs/waf.md) to leave room for deliberate trade-offs,
not for accidents: a change that loses a family's detection or starts blocking ordinary traffic
fails here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from failsmall.engine import Engine
from failsmall.managed.corpora import FAMILIES, benign_requests, blazehttp_cases, crs_cases
from failsmall.managed.measure import (
    Inspector,
    attack_cases,
    managed_bundle,
    measure_attacks,
    measure_benign,
    measure_labelled,
)

REPO = Path(__file__).resolve().parents[2]
CRS_CORPUS = REPO.parent / "shared" / "corpora" / "crs-regression"
BENIGN_CORPUS = REPO / "tests" / "data" / "benign"
DETECTION_FLOOR = 0.85
FALSE_POSITIVE_CEILING = 0.01
MIN_BENIGN_REQUESTS = 2000
#: Real traffic (the tuning half of blazehttp), at paranoia 1: measured 0.19% and 88.8%.
BLAZEHTTP = os.environ.get("FAILSMALL_BLAZEHTTP", "")
REAL_FALSE_POSITIVE_CEILING = 0.002
REAL_DETECTION_FLOOR = 0.80


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


def test_real_traffic_false_positives_and_detection(inspector: Inspector) -> None:
    if not BLAZEHTTP or not Path(BLAZEHTTP).is_dir():
        pytest.skip(
            "blazehttp corpus not given: set FAILSMALL_BLAZEHTTP to the testcases directory "
            "of a chaitin/blazehttp checkout"
        )
    result = measure_labelled(inspector, blazehttp_cases(Path(BLAZEHTTP)))
    assert result.false_positive_rate <= REAL_FALSE_POSITIVE_CEILING, result.blocked_by_rule
    assert result.detection_rate >= REAL_DETECTION_FLOOR
