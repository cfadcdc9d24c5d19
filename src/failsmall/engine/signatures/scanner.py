"""Multi-pattern signature matching with hyperscan.

Every pattern of every match compiles into one hyperscan block-mode database, each pattern
tagged with its match's targets and transform chain. For each distinct value of a request:

1. the value's features are computed once (see `transforms.features`), among those the chains
   of its targets look at: a chain none of whose transforms is triggered would return the value
   unchanged, so it is not run, and a triggered chain runs from its first triggered step;
2. the chains that are triggered run, sharing the work of common prefixes
   (`url_decode_uni, html_entity_decode, ...` is computed once for all chains starting so);
3. each distinct result is scanned once, and a pattern's hit counts only when the value came
   from one of its match's targets and the result is what its chain made of the value.

Values are collected in one pass over the request (`targets.collect`).

So most values cost one scan, whatever the number of rules, targets and chains, and no value is
transformed twice the same way. Hyperscan only accepts patterns it can run in linear time; a
pattern it refuses (back-references, look-around, ...) is a build error, and there is no
fallback to a backtracking engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import hyperscan

from failsmall.engine.request import Request, RequestView
from failsmall.engine.signatures.targets import (
    BODY_TARGETS,
    EXTRACTORS,
    HEAD_TARGETS,
    TARGET_BIT,
    collect,
)
from failsmall.engine.signatures.transforms import (
    TRANSFORMS,
    TRIGGERS,
    TransformFn,
    features,
    triggers,
)
from failsmall.model.rules import SignatureMatch, Target, Transform

_BASE_FLAGS = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL
MEMO_MAX_VALUE = 512
MEMO_ENTRIES = 16_384
#: Whole requests are memoised too (a load tester, a retrying client), up to this size each and
#: this many bytes in all: a request's hits depend only on its method, path, query, headers, body.
MEMO_MAX_REQUEST = 16 * 1024
MEMO_REQUEST_BYTES = 4 * 1024 * 1024
NO_HITS: frozenset[str] = frozenset()
_RequestKey = tuple[str, str, str, tuple[tuple[str, str], ...], bytes]


class SignatureCompileError(Exception):
    """Some signature patterns cannot be compiled; `problems` names every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "signature patterns do not compile (hyperscan accepts linear-time patterns only): "
            + "; ".join(problems)
        )


@dataclass(frozen=True, slots=True)
class _Pattern:
    key: str
    index: int
    expression: bytes
    flags: int
    targets: int
    chain: int


@dataclass(frozen=True, slots=True)
class _Chain:
    """One transform chain: its steps (each with the id of the prefix it completes: chains
    that start alike share ids), the features that trigger each step, and the chain."""

    bit: int
    steps: tuple[tuple[int, TransformFn], ...]
    step_triggers: tuple[int, ...]
    triggers: int
    targets: int


@dataclass(frozen=True, slots=True)
class _Database:
    """The compiled database, its scratch space, and each pattern id's owner and tags."""

    database: hyperscan.Database
    scratch: hyperscan.Scratch
    owners: tuple[str, ...]
    targets: tuple[int, ...]
    chains: tuple[int, ...]


class _Targets:
    """What the scanner works out once for values of one target mask: the trigger features the
    chains of those targets look at, and a plan for each combination of them (see `_plan`)."""

    __slots__ = ("plans", "wanted")

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.plans: dict[int, _Plan] = {}


#: For values of some targets with some trigger features: the bits of the chains that leave such
#: a value unchanged, and the chains that must run, each as its bit and its steps from the first
#: triggered one on (the steps before it pass the value on unchanged).
_Plan = tuple[int, tuple[tuple[int, tuple[tuple[int, TransformFn], ...]], ...]]


class SignatureScanner:
    """Scans a request with every signature match of a bundle at once.

    Build it with `compile`; `scan` returns the keys (rule ids) whose match hit. A scanner owns
    its hyperscan scratch space and is meant for one thread, like the node's request loop.
    """

    def __init__(self, chains: tuple[_Chain, ...], compiled: _Database | None) -> None:
        self._chains = chains
        self._compiled = compiled
        self._targets = tuple(t for t in Target if any(c.targets & TARGET_BIT[t] for c in chains))
        # Verdicts for short values seen before (user agents, accept headers, paths, cookie
        # names repeat across clients): a value's hits depend only on the value and its targets.
        self._memo: dict[tuple[str, int], frozenset[str]] = {}
        self._requests: dict[_RequestKey, frozenset[str]] = {}
        self._requests_bytes = 0
        self._by_targets: dict[int, _Targets] = {}
        self._head_mask = 0
        for target in self._targets:
            if target in HEAD_TARGETS:
                self._head_mask |= TARGET_BIT[target]
        # An empty body has no values for the body targets: they are not even looked at then.
        self._body_extractors = tuple(
            (TARGET_BIT[t], EXTRACTORS[t]) for t in self._targets if t in BODY_TARGETS
        )
        # Pattern ids reported by the scan in progress: the match handler only collects them,
        # and `_scan_values` keeps those whose targets and chain apply to the value scanned.
        self._matched: list[int] = []
        matched = self._matched.append

        def on_match(pattern_id: int, start: int, end: int, flags: int, context: object) -> None:
            matched(pattern_id)

        self._on_match = on_match

    @classmethod
    def compile(cls, matches: Mapping[str, SignatureMatch]) -> SignatureScanner:
        """Compile `matches` (keyed by rule id); raise `SignatureCompileError` listing problems."""
        chain_bits: dict[tuple[Transform, ...], int] = {}
        chain_targets: dict[tuple[Transform, ...], int] = {}
        patterns: list[_Pattern] = []
        for key, match in matches.items():
            mask = 0
            for target in match.targets:
                mask |= TARGET_BIT[target]
            transforms = tuple(match.transforms)
            bit = chain_bits.setdefault(transforms, 1 << len(chain_bits))
            chain_targets[transforms] = chain_targets.get(transforms, 0) | mask
            for index, pattern in enumerate(match.patterns, start=1):
                patterns.append(_pattern(key, index, pattern, match.caseless, mask, bit))
        prefixes: dict[tuple[Transform, ...], int] = {}
        chains = tuple(
            _Chain(
                bit=bit,
                steps=tuple(
                    (prefixes.setdefault(transforms[: i + 1], len(prefixes)), TRANSFORMS[t])
                    for i, t in enumerate(transforms)
                ),
                step_triggers=tuple(TRIGGERS[t] for t in transforms),
                triggers=triggers(transforms),
                targets=chain_targets[transforms],
            )
            for transforms, bit in chain_bits.items()
        )
        if not patterns:
            return cls(chains, None)
        try:
            database = _compile(patterns)
        except hyperscan.error as exc:
            problems = [problem for problem in map(_check, patterns) if problem]
            raise SignatureCompileError(problems or [str(exc)]) from exc
        compiled = _Database(
            database=database,
            scratch=hyperscan.Scratch(database),
            owners=tuple(p.key for p in patterns),
            targets=tuple(p.targets for p in patterns),
            chains=tuple(p.chain for p in patterns),
        )
        return cls(chains, compiled)

    @property
    def chain_count(self) -> int:
        """How many distinct transform chains the matches use."""
        return len(self._chains)

    def _for_targets(self, targets: int) -> _Targets:
        """What is worked out once for values of `targets` (see `_Targets`)."""
        wanted = 0
        for step in self._chains:
            if step.targets & targets:
                wanted |= step.triggers
        known = self._by_targets[targets] = _Targets(wanted)
        return known

    def _plan(self, known: _Targets, targets: int, present: int) -> _Plan:
        """For values of `targets` with trigger features `present`: the bits of the chains that
        leave such a value unchanged, and the chains that must run, from their first triggered
        step on. Features of a value are computed among `known.wanted` only: the triggers of
        the chains of `targets`, so every chain here sees all of its features that are present."""
        unchanged = 0
        triggered: list[tuple[int, tuple[tuple[int, TransformFn], ...]]] = []
        for step in self._chains:
            if step.targets & targets:
                if step.triggers & present:
                    first = next(i for i, t in enumerate(step.step_triggers) if t & present)
                    triggered.append((step.bit, step.steps[first:]))
                else:
                    unchanged |= step.bit
        plan = (unchanged, tuple(triggered))
        known.plans[present] = plan
        return plan

    def scan(self, view: RequestView) -> frozenset[str]:
        """The keys whose match hit this request."""
        compiled = self._compiled
        if compiled is None:
            return NO_HITS
        request = view.request
        key = (request.method, request.path, request.query, request.headers, request.body)
        size = _size(request)
        requests = self._requests
        if size <= MEMO_MAX_REQUEST:
            known = requests.get(key)
            if known is not None:
                return known
        sources = collect(view, self._head_mask)
        if request.body:
            seen = sources.get
            for bit, extract in self._body_extractors:
                for value in extract(view):
                    sources[value] = seen(value, 0) | bit
        memo = self._memo.get
        hits: set[str] = set()
        fresh: list[tuple[str, int]] = []
        for value, targets in sources.items():
            if value:
                found = memo((value, targets))
                if found is None:
                    fresh.append((value, targets))
                elif found:
                    hits.update(found)
        if fresh:
            self._scan_values(compiled, fresh, hits)
        result = frozenset(hits) if hits else NO_HITS
        if size <= MEMO_MAX_REQUEST:
            self._requests_bytes += size
            if self._requests_bytes > MEMO_REQUEST_BYTES:
                requests.clear()
                self._requests_bytes = size
            requests[key] = result
        return result

    def _scan_values(
        self, compiled: _Database, values: list[tuple[str, int]], hits: set[str]
    ) -> None:
        """Scan values not seen before (each with the targets it came from), adding their hits
        to `hits` and memoising the short ones."""
        found: set[str] = set()
        scan, scratch, on_match = compiled.database.scan, compiled.scratch, self._on_match
        owners, pattern_targets, pattern_chains = compiled.owners, compiled.targets, compiled.chains
        matched = self._matched
        by_targets = self._by_targets
        memo = self._memo

        def scan_result(result: str, targets: int, chains: int) -> None:
            """Scan one result of a value, keeping the hits of patterns of its chains."""
            data = result.encode("utf-8", "replace")
            if data:
                scan(data, on_match, 0, None, scratch)
                if matched:
                    for pattern_id in matched:
                        if pattern_targets[pattern_id] & targets and (
                            pattern_chains[pattern_id] & chains
                        ):
                            found.add(owners[pattern_id])
                    matched.clear()

        for value, targets in values:
            known = by_targets.get(targets)
            if known is None:
                known = self._for_targets(targets)
            present = features(value, known.wanted)
            plan = known.plans.get(present)
            if plan is None:
                plan = self._plan(known, targets, present)
            unchanged, triggered = plan
            if not triggered:
                scan_result(value, targets, unchanged)
            elif len(triggered) == 1:
                bit, steps = triggered[0]
                result = value
                for _, transform in steps:
                    result = transform(result)
                if result == value:
                    scan_result(value, targets, unchanged | bit)
                else:
                    if unchanged:
                        scan_result(value, targets, unchanged)
                    scan_result(result, targets, bit)
            else:
                # Each distinct result of the value's chains, with the bits of the chains making
                # it; chains sharing a prefix share its work through `done`.
                results: dict[str, int] = {value: unchanged} if unchanged else {}
                done: dict[int, str] = {}
                for bit, steps in triggered:
                    result = _transform(steps, value, done)
                    results[result] = results.get(result, 0) | bit
                for result, chains in results.items():
                    scan_result(result, targets, chains)
            if len(value) <= MEMO_MAX_VALUE:
                if len(memo) >= MEMO_ENTRIES:
                    memo.clear()
                memo[(value, targets)] = frozenset(found) if found else NO_HITS
            if found:
                hits.update(found)
                found.clear()


def _size(request: Request) -> int:
    """Roughly the bytes a request takes as a memo key: its parts and a fixed overhead."""
    header_chars = sum(map(len, itertools.chain.from_iterable(request.headers)))
    return 256 + len(request.path) + len(request.query) + len(request.body) + header_chars


def _transform(steps: tuple[tuple[int, TransformFn], ...], value: str, done: dict[int, str]) -> str:
    for prefix, transform in steps:
        known = done.get(prefix)
        if known is None:
            value = transform(value)
            done[prefix] = value
        else:
            value = known
    return value


def _pattern(
    key: str, index: int, expression: str, caseless: bool, targets: int, chain_bit: int
) -> _Pattern:
    flags = _BASE_FLAGS
    if caseless:
        flags |= hyperscan.HS_FLAG_CASELESS
    if not expression.isascii():
        flags |= hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_UCP
    return _Pattern(key, index, expression.encode("utf-8"), flags, targets, chain_bit)


def _check(pattern: _Pattern) -> str:
    """'' when hyperscan compiles `pattern` on its own, else a problem naming it."""
    try:
        _compile([pattern])
    except hyperscan.error as exc:
        message = exc.args[0] if exc.args else str(exc)
        return f"rule {pattern.key} pattern {pattern.index}: {message}"
    return ""


def _compile(patterns: Sequence[_Pattern]) -> hyperscan.Database:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=[p.expression for p in patterns],
        ids=list(range(len(patterns))),
        elements=len(patterns),
        flags=[p.flags for p in patterns],
    )
    return database
