"""Multi-pattern signature matching with hyperscan.

Every pattern of every match compiles into one hyperscan block-mode database, each pattern
tagged with its match's targets and transform chain. For each distinct value of a request:

1. the value's features are computed once (see `transforms.features`): a chain none of whose
   transforms is triggered would return the value unchanged, so it is not run;
2. the chains that are triggered run, sharing the work of common prefixes
   (`url_decode_uni, html_entity_decode, ...` is computed once for all chains starting so);
3. each distinct result is scanned once, and a pattern's hit counts only when the value came
   from one of its match's targets and the result is what its chain made of the value.

So most values cost one scan, whatever the number of rules, targets and chains, and no value is
transformed twice the same way. Hyperscan only accepts patterns it can run in linear time; a
pattern it refuses (back-references, look-around, ...) is a build error, and there is no
fallback to a backtracking engine.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import hyperscan

from failsmall.engine.request import Request, RequestView
from failsmall.engine.signatures.targets import BODY_TARGETS, EXTRACTORS
from failsmall.engine.signatures.transforms import TRANSFORMS, TransformFn, features, triggers
from failsmall.model.rules import SignatureMatch, Target, Transform

_BASE_FLAGS = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL
MEMO_MAX_VALUE = 512
MEMO_ENTRIES = 16_384
#: Whole requests are memoised too (a load tester, a retrying client), up to this size each and
#: this many bytes in all: a request's hits depend only on its method, path, query, headers, body.
MEMO_MAX_REQUEST = 16 * 1024
MEMO_REQUEST_BYTES = 4 * 1024 * 1024
NO_HITS: frozenset[str] = frozenset()
_TARGET_BIT = {target: 1 << index for index, target in enumerate(Target)}
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
    that start alike share ids) and the features that trigger it."""

    bit: int
    steps: tuple[tuple[int, TransformFn], ...]
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


class SignatureScanner:
    """Scans a request with every signature match of a bundle at once.

    Build it with `compile`; `scan` returns the keys (rule ids) whose match hit. A scanner owns
    its hyperscan scratch space and is meant for one thread, like the node's request loop.
    """

    def __init__(self, chains: tuple[_Chain, ...], compiled: _Database | None) -> None:
        self._chains = chains
        self._compiled = compiled
        self._targets = tuple(t for t in Target if any(c.targets & _TARGET_BIT[t] for c in chains))
        # Verdicts for short values seen before (user agents, accept headers, paths, cookie
        # names repeat across clients): a value's hits depend only on the value and its targets.
        self._memo: dict[tuple[str, int], frozenset[str]] = {}
        self._requests: dict[_RequestKey, frozenset[str]] = {}
        self._requests_bytes = 0
        self._plans: dict[tuple[int, int], tuple[int, tuple[_Chain, ...]]] = {}
        # An empty body has no values for the body targets: they are not even looked at then.
        self._extractors = tuple(
            (_TARGET_BIT[t], EXTRACTORS[t]) for t in self._targets if t not in BODY_TARGETS
        )
        self._body_extractors = tuple(
            (_TARGET_BIT[t], EXTRACTORS[t]) for t in self._targets if t in BODY_TARGETS
        )
        self._wanted = 0
        for step in chains:
            self._wanted |= step.triggers

    @classmethod
    def compile(cls, matches: Mapping[str, SignatureMatch]) -> SignatureScanner:
        """Compile `matches` (keyed by rule id); raise `SignatureCompileError` listing problems."""
        chain_bits: dict[tuple[Transform, ...], int] = {}
        chain_targets: dict[tuple[Transform, ...], int] = {}
        patterns: list[_Pattern] = []
        for key, match in matches.items():
            mask = 0
            for target in match.targets:
                mask |= _TARGET_BIT[target]
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

    def _plan(self, targets: int, present: int) -> tuple[int, tuple[_Chain, ...]]:
        """For values of `targets` with trigger features `present`: the bits of the chains that
        leave such a value unchanged, and the chains that must run."""
        unchanged = 0
        triggered: list[_Chain] = []
        for step in self._chains:
            if step.targets & targets:
                if step.triggers & present:
                    triggered.append(step)
                else:
                    unchanged |= step.bit
        plan = (unchanged, tuple(triggered))
        self._plans[(targets, present)] = plan
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
        sources: dict[str, int] = {}
        seen = sources.get
        for bit, extract in self._extractors:
            for value in extract(view):
                sources[value] = seen(value, 0) | bit
        if request.body:
            for bit, extract in self._body_extractors:
                for value in extract(view):
                    sources[value] = seen(value, 0) | bit
        memo = self._memo
        hits: set[str] = set()
        fresh: list[tuple[str, int]] = []
        for value, targets in sources.items():
            if value:
                found = memo.get((value, targets))
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
        owners, pattern_targets, pattern_chains = compiled.owners, compiled.targets, compiled.chains

        def on_match(pattern_id: int, start: int, end: int, flags: int, context: object) -> None:
            targets, chains = cast(tuple[int, int], context)
            if pattern_targets[pattern_id] & targets and pattern_chains[pattern_id] & chains:
                found.add(owners[pattern_id])

        database, scratch = compiled.database, compiled.scratch
        memo = self._memo
        for value, targets in values:
            found.clear()
            present = features(value, self._wanted)
            plan = self._plans.get((targets, present))
            if plan is None:
                plan = self._plan(targets, present)
            unchanged, triggered = plan
            results: dict[str, int] = {value: unchanged} if unchanged else {}
            # Results of chain prefixes for this value: chains sharing a prefix share its work.
            done: dict[int, str] = {}
            for step in triggered:
                result = _transform(step, value, done)
                results[result] = results.get(result, 0) | step.bit
            for result, chains in results.items():
                data = result.encode("utf-8", errors="replace")
                if data:
                    database.scan(
                        data,
                        match_event_handler=on_match,
                        context=(targets, chains),
                        scratch=scratch,
                    )
            if found:
                hits.update(found)
            if len(value) <= MEMO_MAX_VALUE:
                if len(memo) >= MEMO_ENTRIES:
                    memo.clear()
                memo[(value, targets)] = frozenset(found) if found else NO_HITS


def _size(request: Request) -> int:
    """Roughly the bytes a request takes as a memo key: its parts and a fixed overhead."""
    header_chars = sum(map(len, itertools.chain.from_iterable(request.headers)))
    return 256 + len(request.path) + len(request.query) + len(request.body) + header_chars


def _transform(step: _Chain, value: str, done: dict[int, str]) -> str:
    for prefix, transform in step.steps:
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
