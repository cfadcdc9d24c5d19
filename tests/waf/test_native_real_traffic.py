"""On real traffic, the compiled value scanner finds what the readable reference finds: every
request of the blazehttp corpus's tuning half gets the same hits, work counts and limit from
both (skipped, saying how to run it, when the corpus is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from failsmall.build.corpus import within_buffer
from failsmall.engine.request import Request, RequestView
from failsmall.engine.signatures import SignatureScanner
from failsmall.engine.signatures.reference import ReferenceValueScanner
from failsmall.managed.corpora import blazehttp_cases
from failsmall.model.traffic import Limits
from tests.waf.test_scanner_fast_paths import MANAGED_MATCHES

BLAZEHTTP = os.environ.get("FAILSMALL_BLAZEHTTP", "")


@pytest.mark.slow
def test_the_compiled_scanner_gives_the_references_results_on_real_traffic() -> None:
    if not BLAZEHTTP or not Path(BLAZEHTTP).is_dir():
        pytest.skip(
            "blazehttp corpus not given: set FAILSMALL_BLAZEHTTP to the testcases directory "
            "of a chaitin/blazehttp checkout"
        )
    native = SignatureScanner.compile(MANAGED_MATCHES)
    reference = SignatureScanner.compile(MANAGED_MATCHES, ReferenceValueScanner)
    limits = Limits()
    differ: list[str] = []
    count = 0
    for case in blazehttp_cases(Path(BLAZEHTTP)):
        request = within_buffer(case.request, limits)
        if not isinstance(request, Request):
            continue
        count += 1
        expected = reference.inspect(RequestView(request, limits=limits))
        if native.inspect(RequestView(request, limits=limits)) != expected:
            differ.append(case.name)
    assert count > 16_000
    assert not differ, f"{len(differ)} requests differ: {differ[:20]}"
