"""The value scanner the engine runs: the compiled `failsmall.engine._native`, linked to libhs.

`NativeValueScanner` scans a value of some targets the way `reference.ReferenceValueScanner`
does (features, triggered transform chains, one hyperscan scan per distinct result), in C. The
extension is built by `pip install` from `setup.py`; there is no fallback to the Python path.

Its databases (every pattern's, each subset's, and the candidate form of each) are compiled by
a pool of threads, one per core, that the constructor joins before it returns: the databases,
and the error when libhs refuses a pattern, are those of a build on one thread.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from failsmall.engine.native import extension as _native
from failsmall.engine.signatures.compiled import Chain, Pattern, SignatureCompileError
from failsmall.engine.signatures.transforms import TRANSFORMS, TRIGGERS, features

NativeValueScanner = _native.ValueScanner
HS_VERSION = _native.HS_VERSION
#: A target or a chain whose patterns are at most this share of all gets a database of its own:
#: its values (the body text, the URI, the query string) or the results it makes (a lowercased
#: or base64-decoded value) are scanned with a few patterns, not with all, and a long result
#: made by several such chains with each of their databases. A larger share would give more
#: chains a database, at the cost of compiling it (and its candidate form) at every bundle load:
#: a share of 1/2 cost 26% more CPU per load of the managed ruleset.
SUBSET_SHARE = 1 / 8
#: The most subsets the compiled scanner takes (the smallest are kept).
MAX_SUBSETS = 64


def native_value_scanner(
    chains: Sequence[Chain], patterns: Sequence[Pattern], workers: int | None = None
) -> _native.ValueScanner:
    """Compile `patterns` with libhs, with `chains`, on `workers` threads (one per core unless
    given); raise `SignatureCompileError` naming every pattern libhs refuses."""
    try:
        return _build(chains, patterns, (os.cpu_count() or 1) if workers is None else workers)
    except _native.CompileError as exc:
        problems = [problem for problem in map(_check, patterns) if problem]
        raise SignatureCompileError(problems or [str(exc)]) from exc


def _build(
    chains: Sequence[Chain], patterns: Sequence[Pattern], workers: int
) -> _native.ValueScanner:
    table = [
        (
            chain.bit,
            chain.targets,
            chain.triggers,
            [
                (prefix, transform.value, TRANSFORMS[transform], TRIGGERS[transform])
                for (prefix, _), transform in zip(chain.steps, chain.transforms, strict=True)
            ],
        )
        for chain in chains
    ]
    return _native.ValueScanner(
        [p.expression for p in patterns],
        [p.flags for p in patterns],
        [p.key for p in patterns],
        [p.targets for p in patterns],
        [p.chain for p in patterns],
        table,
        features,
        _subsets(patterns),
        workers=workers,
    )


def _subsets(patterns: Sequence[Pattern]) -> list[tuple[int, int, list[int]]]:
    """Each target and each chain with few patterns (as its target mask, its chain mask and the
    ids of every pattern of it), smallest first: a scan uses the first that holds every pattern
    of the value's targets and of the result's chains, or for a long result, one for each of its
    chains."""
    every = (1 << 64) - 1
    subsets: list[tuple[int, int, list[int]]] = []
    for bit in _bits(patterns, "targets"):
        ids = [i for i, p in enumerate(patterns) if p.targets & bit]
        if len(ids) <= SUBSET_SHARE * len(patterns):
            subsets.append((bit, every, ids))
    for bit in _bits(patterns, "chain"):
        ids = [i for i, p in enumerate(patterns) if p.chain & bit]
        if len(ids) <= SUBSET_SHARE * len(patterns):
            subsets.append((every, bit, ids))
    return sorted(subsets, key=lambda s: len(s[2]))[:MAX_SUBSETS]


def _bits(patterns: Sequence[Pattern], field: str) -> list[int]:
    """The distinct bits of the masks `field` of `patterns`."""
    mask = 0
    for pattern in patterns:
        mask |= getattr(pattern, field)
    return [1 << i for i in range(mask.bit_length()) if mask >> i & 1]


def _check(pattern: Pattern) -> str:
    """'' when libhs compiles `pattern` on its own, else a problem naming it."""
    try:
        _build([], [pattern], 1)
    except _native.CompileError as exc:
        return f"rule {pattern.key} pattern {pattern.index}: {exc.args[0]}"
    return ""
