"""A value scanner's databases compiled by a pool of threads are those compiled one after
another: the same hits for every request of the CRS corpus and for random values, the same
error for a pattern libhs refuses wherever it sits, and no thread left behind, with two builds
at once."""

from __future__ import annotations

import functools
import os
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from failsmall.engine import _native
from failsmall.engine.request import RequestView
from failsmall.engine.signatures import SignatureCompileError, SignatureScanner
from failsmall.engine.signatures.compiled import compile_matches
from failsmall.engine.signatures.native import _subsets, native_value_scanner
from failsmall.engine.signatures.targets import TARGET_BIT
from failsmall.managed import managed_ruleset
from failsmall.managed.corpora import crs_cases
from failsmall.model.rules import SignatureMatch, Target

REPO = Path(__file__).resolve().parents[2]
#: Where the CRS regression tests are: beside the repository unless `CRS_CORPUS` names them.
CRS_CORPUS = Path(
    os.environ.get("CRS_CORPUS", REPO.parent / "shared" / "corpora" / "crs-regression")
)
#: More threads than this machine has cores, and more than a build has databases.
MANY = 200
ALL_TARGETS = [TARGET_BIT[t] for t in Target]


def compile_with(matches: dict[str, SignatureMatch], workers: int) -> SignatureScanner:
    return SignatureScanner.compile(
        matches, functools.partial(native_value_scanner, workers=workers)
    )


@pytest.fixture(scope="module")
def managed_matches() -> dict[str, SignatureMatch]:
    return {r.id: r.match for r in managed_ruleset().rules if r.match is not None}


@pytest.fixture(scope="module")
def serial_and_parallel(
    managed_matches: dict[str, SignatureMatch],
) -> tuple[SignatureScanner, SignatureScanner]:
    return compile_with(managed_matches, 1), compile_with(managed_matches, MANY)


def test_every_crs_request_gets_the_same_scan_from_both_builds(
    serial_and_parallel: tuple[SignatureScanner, SignatureScanner],
) -> None:
    if not CRS_CORPUS.is_dir():
        pytest.skip(f"CRS regression corpus not found at {CRS_CORPUS}: set CRS_CORPUS to it")
    serial, parallel = serial_and_parallel
    cases = list(crs_cases(CRS_CORPUS))
    assert len(cases) > 1000
    hit = 0
    for case in cases:
        expected = serial.inspect(RequestView(case.request))
        assert parallel.inspect(RequestView(case.request)) == expected, case.name
        hit += bool(expected.hits)
    # The comparison means something only if the corpus' attacks are found.
    assert hit > len(cases) // 2


@settings(max_examples=300, deadline=None)
@given(
    value=st.lists(
        st.text(st.characters(codec="utf-8"), max_size=8)
        | st.sampled_from(["'", "<script>", " or 1=1", "../", "%27", "union select", "\\x00"]),
        max_size=10,
    ).map("".join),
    targets=st.sets(st.sampled_from(ALL_TARGETS), min_size=1).map(sum),
)
def test_random_values_get_the_same_hits_from_both_builds(
    serial_and_parallel: tuple[SignatureScanner, SignatureScanner], value: str, targets: int
) -> None:
    serial, parallel = serial_and_parallel
    for target in Target:
        if targets & TARGET_BIT[target]:
            assert parallel.value_hits(value, target) == serial.value_hits(value, target)


REFUSED = r"(a+)+\1"


def matches_with_refused(position: int, count: int) -> dict[str, SignatureMatch]:
    """`count` matches of a few targets, each with its own database, and a pattern libhs refuses
    in the match at `position`."""
    targets = [Target.COOKIE_VALUES, Target.FILENAMES, Target.PATH, Target.ARG_VALUES]
    return {
        f"rule-{i}": SignatureMatch(
            targets=[targets[i % len(targets)]],
            patterns=[f"word{i}", rf"\bx{i}y\d+"] + ([REFUSED] if i == position else []),
            caseless=bool(i % 2),
        )
        for i in range(count)
    }


def raw_error(matches: dict[str, SignatureMatch], workers: int) -> tuple[object, ...]:
    _, patterns = compile_matches(matches)
    with pytest.raises(_native.CompileError) as refused:
        _native.ValueScanner(
            [p.expression for p in patterns],
            [p.flags for p in patterns],
            [p.key for p in patterns],
            [p.targets for p in patterns],
            [p.chain for p in patterns],
            [],
            lambda value, wanted: 0,
            _subsets(patterns),
            workers=workers,
        )
    return tuple(refused.value.args)


@pytest.mark.parametrize("position", [0, 17, 39])
def test_a_refused_pattern_gives_the_error_of_a_serial_build(position: int) -> None:
    matches = matches_with_refused(position, 40)
    serial = raw_error(matches, 1)
    assert serial[1] == 2 * position + 2, serial  # two patterns in each match before it
    assert "Back-reference" in str(serial[0])
    assert raw_error(matches, MANY) == serial
    with pytest.raises(SignatureCompileError) as one:
        compile_with(matches, 1)
    with pytest.raises(SignatureCompileError) as many:
        compile_with(matches, MANY)
    assert (
        many.value.problems
        == one.value.problems
        == [f"rule rule-{position} pattern 3: {serial[0]}"]
    )


def test_workers_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1, not 0"):
        _native.ValueScanner([b"x"], [0], ["a"], [1], [1], [], lambda v, w: 0, [], workers=0)
    chains, patterns = compile_matches({"a": SignatureMatch(targets=[Target.PATH], patterns=["x"])})
    with pytest.raises(ValueError, match="workers must be at least 1, not 0"):
        native_value_scanner(chains, patterns, workers=0)


def os_threads() -> int:
    """The threads of this process, those started in C included."""
    return len(os.listdir("/proc/self/task"))


def settled_threads(expected: int) -> int:
    """The thread count once it is `expected`, or after 30 s: a joined thread may still be
    leaving the kernel's list for a moment."""
    for _ in range(3000):
        if (count := os_threads()) == expected:
            return count
        time.sleep(0.01)
    return os_threads()


@pytest.mark.slow
def test_two_builds_at_once_agree_and_leave_no_thread_behind(
    managed_matches: dict[str, SignatureMatch],
    serial_and_parallel: tuple[SignatureScanner, SignatureScanner],
) -> None:
    serial, _ = serial_and_parallel
    before = os_threads()
    built: list[SignatureScanner] = []
    lock = threading.Lock()

    def build() -> None:
        scanner = compile_with(managed_matches, MANY)
        with lock:
            built.append(scanner)

    workers = [threading.Thread(target=build) for _ in range(2)]
    for worker in workers:
        worker.start()
    peak = 0
    while any(worker.is_alive() for worker in workers):
        peak = max(peak, os_threads())
        time.sleep(0.005)
    for worker in workers:
        worker.join()
    assert len(built) == 2
    # Each build's longest compiles run on threads of their own while it waits for them.
    assert peak >= before + 4, f"at most {peak} threads during two builds, {before} before"
    assert settled_threads(before) == before
    corpus = crs_cases(CRS_CORPUS) if CRS_CORPUS.is_dir() else iter([])
    requests = [case.request for case in corpus][::7]
    probes = ["' or 1=1 --", "<script>alert(1)</script>", "../../etc/passwd", "plain text"]
    for scanner in built:
        for request in requests:
            assert scanner.inspect(RequestView(request)) == serial.inspect(RequestView(request))
        for probe in probes:
            assert scanner.value_hits(probe, Target.ARG_VALUES) == serial.value_hits(
                probe, Target.ARG_VALUES
            )
