"""The readable value scanner: what the compiled one (`native`) does, in Python.

For a value not seen before, as a value of some targets:

1. the value's features are computed once (see `transforms.features`), among those the chains
   of its targets look at: a chain none of whose transforms is triggered would return the value
   unchanged, so it is not run, and a triggered chain runs from its first triggered step;
2. the chains that are triggered run, sharing the work of common prefixes
   (`url_decode_uni, html_entity_decode, ...` is computed once for all chains starting so);
3. each distinct result is scanned once, and a pattern's hit counts only when the value came
   from one of its match's targets and the result is what its chain made of the value.

The engine runs the compiled scanner; tests check that both give the same hits and counts.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import hyperscan

from failsmall.engine.signatures.compiled import Chain, Fresh, Pattern, SourcesMemo, SourcesScan
from failsmall.engine.signatures.transforms import TransformFn, features

NO_HITS: frozenset[str] = frozenset()
#: A value scanned for `scan_sources`: the value, its targets, its hits and characters scanned.
#: Values longer than this share transform results between chains by input (see `scan_value`).
SHARED_TRANSFORM_MIN = 1024

#: For values of some targets with some trigger features: the bits of the chains that leave such
#: a value unchanged, and the chains that must run, each as its bit and its steps from the first
#: triggered one on (the steps before it pass the value on unchanged).
_Plan = tuple[int, tuple[tuple[int, tuple[tuple[int, TransformFn], ...]], ...]]


class _Targets:
    """What is worked out once for values of one target mask: the trigger features the chains
    of those targets look at, and a plan for each combination of them (see `_plan`)."""

    __slots__ = ("plans", "wanted")

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.plans: dict[int, _Plan] = {}


class ReferenceValueScanner:
    """Scans values with `patterns` and `chains` through the hyperscan Python binding."""

    def __init__(self, chains: Sequence[Chain], patterns: Sequence[Pattern]) -> None:
        self._chains = tuple(chains)
        self._database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._database.compile(
            expressions=[p.expression for p in patterns],
            ids=list(range(len(patterns))),
            elements=len(patterns),
            flags=[p.flags for p in patterns],
        )
        self._scratch = hyperscan.Scratch(self._database)
        self._owners = tuple(p.key for p in patterns)
        self._targets = tuple(p.targets for p in patterns)
        self._pattern_chains = tuple(p.chain for p in patterns)
        self._by_targets: dict[int, _Targets] = {}

    def scan(self, result: str, targets: int, chains: int) -> frozenset[str]:
        """The keys of the patterns of `targets` and `chains` that match `result` as it is."""
        data = result.encode("utf-8", "replace")
        if not data:
            return NO_HITS
        matched: list[int] = []

        def on_match(pattern_id: int, start: int, end: int, flags: int, context: object) -> None:
            matched.append(pattern_id)

        self._database.scan(data, on_match, 0, None, self._scratch)
        return frozenset(
            self._owners[pattern_id]
            for pattern_id in matched
            if self._targets[pattern_id] & targets and self._pattern_chains[pattern_id] & chains
        )

    def scan_value(self, value: str, targets: int) -> tuple[frozenset[str], int]:
        """Scan a value as a value of `targets`: run the chains its features trigger (see
        `_plan`) and scan each distinct result once. Returns the hits and the characters
        scanned."""
        known = self._by_targets.get(targets)
        if known is None:
            known = self._for_targets(targets)
        present = features(value, known.wanted)
        plan = known.plans.get(present)
        if plan is None:
            plan = self._plan(known, targets, present)
        unchanged, triggered = plan
        # Each distinct result of the value's chains, with the bits of the chains making it;
        # chains sharing a prefix share its work through `done`.
        results: dict[str, int] = {value: unchanged} if unchanged else {}
        done: dict[int, str] = {}
        # A long value's chains often reach one transform with equal inputs by different
        # prefixes (every decoding step before it left the value as it was): each transform
        # runs once per distinct input.
        applied: dict[tuple[TransformFn, str], str] | None = (
            {} if len(value) > SHARED_TRANSFORM_MIN else None
        )
        for bit, steps in triggered:
            result = _transform(steps, value, done, applied)
            results[result] = results.get(result, 0) | bit
        found = NO_HITS
        chars = 0
        for result, chains in results.items():
            chars += len(result)
            more = self.scan(result, targets, chains)
            if more:
                found = found | more if found else more
        return found, chars

    def scan_sources(
        self,
        sources: dict[str, int],
        memo: SourcesMemo,
        room_values: int,
        room_chars: int,
    ) -> SourcesScan:
        """The values of `sources` (each with its target mask) in order: their hits, values and
        characters from `memo` (keyed by `(value, targets)`), or scanned as fresh values (then
        listed as `(value, targets, hits, chars)`), stopping before the first whose work does
        not fit the room left, which is returned as its `(values, chars)`. A value that is not
        ASCII is also scanned in its NFKC form."""
        hits: set[str] = set()
        values = chars = 0
        fresh: list[Fresh] = []
        for value, targets in sources.items():
            if not value:
                continue
            entry = memo.get((value, targets))
            if entry is not None:
                found, found_values, found_chars = entry[0]
            else:
                found, found_chars = self.scan_value(value, targets)
                if not value.isascii():
                    folded = unicodedata.normalize("NFKC", value)
                    if folded != value:
                        more, more_chars = self.scan_value(folded, targets)
                        found, found_chars = found | more, found_chars + more_chars
                found_values = 1
                fresh.append((value, targets, found, found_chars))
            if values + found_values > room_values or chars + found_chars > room_chars:
                return hits, values, chars, (found_values, found_chars), fresh
            values += found_values
            chars += found_chars
            hits |= found
        return hits, values, chars, None, fresh

    def _for_targets(self, targets: int) -> _Targets:
        """What is worked out once for values of `targets` (see `_Targets`)."""
        wanted = 0
        for chain in self._chains:
            if chain.targets & targets:
                wanted |= chain.triggers
        known = self._by_targets[targets] = _Targets(wanted)
        return known

    def _plan(self, known: _Targets, targets: int, present: int) -> _Plan:
        """For values of `targets` with trigger features `present`: the bits of the chains that
        leave such a value unchanged, and the chains that must run, from their first triggered
        step on. Features of a value are computed among `known.wanted` only: the triggers of
        the chains of `targets`, so every chain here sees all of its features that are present."""
        unchanged = 0
        triggered: list[tuple[int, tuple[tuple[int, TransformFn], ...]]] = []
        for chain in self._chains:
            if chain.targets & targets:
                if chain.triggers & present:
                    first = next(i for i, t in enumerate(chain.step_triggers) if t & present)
                    triggered.append((chain.bit, chain.steps[first:]))
                else:
                    unchanged |= chain.bit
        plan = (unchanged, tuple(triggered))
        known.plans[present] = plan
        return plan


def _transform(
    steps: tuple[tuple[int, TransformFn], ...],
    value: str,
    done: dict[int, str],
    applied: dict[tuple[TransformFn, str], str] | None,
) -> str:
    for prefix, transform in steps:
        known = done.get(prefix)
        if known is not None:
            value = known
            continue
        if applied is None:
            value = transform(value)
        else:
            key = (transform, value)
            output = applied.get(key)
            if output is None:
                output = applied[key] = transform(value)
            value = output
        done[prefix] = value
    return value
