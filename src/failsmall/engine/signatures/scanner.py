"""Multi-pattern signature matching with hyperscan.

Every pattern of every match compiles into one hyperscan block-mode database, each pattern
tagged with its match's targets and transform chain. For each new value of some targets:

1. the value's features are computed once (see `transforms.features`), among those the chains
   of its targets look at: a chain none of whose transforms is triggered would return the value
   unchanged, so it is not run, and a triggered chain runs from its first triggered step;
2. the chains that are triggered run, sharing the work of common prefixes
   (`url_decode_uni, html_entity_decode, ...` is computed once for all chains starting so);
3. each distinct result is scanned once, and a pattern's hit counts only when the value came
   from one of its match's targets and the result is what its chain made of the value.

A value's hits are the union of its hits as a value of each of its targets, so they are
memoised by value and targets, and so are the parts of a request head, whatever else the request
holds: each raw `name=value` part of the query, each header's (name, value) pair, each raw part
of a Cookie header. A browser's headers and steady cookies cost one lookup each; its session
cookie, path id and query values are what is scanned.

So most values cost one scan, whatever the number of rules, targets and chains, and no value is
transformed twice the same way. Hyperscan only accepts patterns it can run in linear time; a
pattern it refuses (back-references, look-around, ...) is a build error, and there is no
fallback to a backtracking engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import hyperscan

from failsmall.engine.request import Request, RequestView, cookie_pair, form_pair
from failsmall.engine.signatures.targets import (
    BODY_TARGETS,
    EXTRACTORS,
    HEAD_TARGETS,
    TARGET_BIT,
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
_PATH, _URI, _QUERY, _METHOD = (
    TARGET_BIT[t] for t in (Target.PATH, Target.URI, Target.QUERY, Target.METHOD)
)
_ARG_NAMES, _ARG_VALUES = TARGET_BIT[Target.ARG_NAMES], TARGET_BIT[Target.ARG_VALUES]
_HEADER_NAMES, _HEADER_VALUES = TARGET_BIT[Target.HEADER_NAMES], TARGET_BIT[Target.HEADER_VALUES]
_USER_AGENT, _REFERER = TARGET_BIT[Target.USER_AGENT], TARGET_BIT[Target.REFERER]
_COOKIE_NAMES, _COOKIE_VALUES = TARGET_BIT[Target.COOKIE_NAMES], TARGET_BIT[Target.COOKIE_VALUES]
_FROM_HEADERS = _HEADER_NAMES | _HEADER_VALUES | _USER_AGENT | _REFERER


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
        # ... and for the parts of a request head (see `_scan_head`).
        self._arg_parts: dict[str, frozenset[str]] = {}
        self._header_pairs: dict[tuple[str, str], frozenset[str]] = {}
        self._cookie_parts: dict[str, frozenset[str]] = {}
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
        self._scan_result = _result_scanner(compiled) if compiled is not None else _no_hits

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
        if self._compiled is None:
            return NO_HITS
        request = view.request
        key = (request.method, request.path, request.query, request.headers, request.body)
        size = _size(request)
        requests = self._requests
        if size <= MEMO_MAX_REQUEST:
            known = requests.get(key)
            if known is not None:
                return known
        hits: set[str] = set()
        self._scan_head(request, hits)
        if request.body and self._body_extractors:
            sources: dict[str, int] = {}
            seen = sources.get
            for bit, extract in self._body_extractors:
                for value in extract(view):
                    sources[value] = seen(value, 0) | bit
            for value, targets in sources.items():
                found = self._value_hits(value, targets)
                if found:
                    hits.update(found)
        result = frozenset(hits) if hits else NO_HITS
        if size <= MEMO_MAX_REQUEST:
            self._requests_bytes += size
            if self._requests_bytes > MEMO_REQUEST_BYTES:
                requests.clear()
                self._requests_bytes = size
            requests[key] = result
        return result

    def value_hits(self, value: str, target: Target) -> frozenset[str]:
        """The keys whose match hits `value` as a value of `target`."""
        return self._value_hits(value, TARGET_BIT[target])

    def _scan_head(self, request: Request, hits: set[str]) -> None:
        """Add the hits of the values of the head targets (every target but the body's).

        A value's hits are the union of its hits as a value of each of its targets, so the
        parts of a request are memoised one by one, whatever else the request holds: the raw
        `name=value` parts of the query, each header's (name, value) pair, the raw parts of a
        Cookie header. A part seen before (a browser's headers, `theme=dark`) costs one lookup.
        """
        mask = self._head_mask
        value_hits = self._value_hits
        query = request.query
        for bit, value in (
            (mask & _PATH, request.path),
            (mask & _URI, request.uri),
            (mask & _QUERY, query),
            (mask & _METHOD, request.method),
        ):
            if bit:
                found = value_hits(value, bit)
                if found:
                    hits.update(found)
        if query and mask & (_ARG_NAMES | _ARG_VALUES):
            known_arg = self._arg_parts.get
            for part in query.split("&"):
                if part:
                    found_part = known_arg(part)
                    if found_part is None:
                        found_part = self._arg_part_hits(part)
                    if found_part:
                        hits.update(found_part)
        if request.headers and mask & (_FROM_HEADERS | _COOKIE_NAMES | _COOKIE_VALUES):
            known_header = self._header_pairs.get
            for pair in request.headers:
                found_pair = known_header(pair)
                if found_pair is None:
                    found_pair = self._header_hits(pair)
                if found_pair:
                    hits.update(found_pair)

    def _arg_part_hits(self, part: str) -> frozenset[str]:
        """The hits of the name and value of one raw `name=value` part of the query."""
        name, value = form_pair(part)
        mask = self._head_mask
        found = NO_HITS
        if mask & _ARG_NAMES:
            found = self._value_hits(name, _ARG_NAMES)
        if mask & _ARG_VALUES:
            found = found | self._value_hits(value, _ARG_VALUES)
        if len(part) <= MEMO_MAX_VALUE:
            _remember(self._arg_parts, part, found)
        return found

    def _header_hits(self, pair: tuple[str, str]) -> frozenset[str]:
        """The hits of one header: its lowercase name, and its value for the header value, user
        agent and referer targets, or, for a Cookie header, its cookies' names and values."""
        name, value = pair
        lower = name.lower()
        mask = self._head_mask
        found = NO_HITS
        if mask & _HEADER_NAMES:
            found = self._value_hits(lower, _HEADER_NAMES)
        if lower == "cookie":  # matched parsed, through the cookie targets
            if mask & (_COOKIE_NAMES | _COOKIE_VALUES):
                for part in value.split(";"):
                    found = found | self._cookie_part_hits(part)
        else:
            bits = mask & _HEADER_VALUES
            if lower == "user-agent":
                bits |= mask & _USER_AGENT
            elif lower == "referer":
                bits |= mask & _REFERER
            if bits:
                found = found | self._value_hits(value, bits)
        if len(name) + len(value) <= MEMO_MAX_VALUE:
            _remember(self._header_pairs, pair, found)
        return found

    def _cookie_part_hits(self, part: str) -> frozenset[str]:
        """The hits of the name and value of one raw `;`-separated part of a Cookie header."""
        known = self._cookie_parts.get(part)
        if known is not None:
            return known
        found = NO_HITS
        cookie = cookie_pair(part)
        if cookie is not None:
            mask = self._head_mask
            if mask & _COOKIE_NAMES:
                found = self._value_hits(cookie[0], _COOKIE_NAMES)
            if mask & _COOKIE_VALUES:
                found = found | self._value_hits(cookie[1], _COOKIE_VALUES)
        if len(part) <= MEMO_MAX_VALUE:
            _remember(self._cookie_parts, part, found)
        return found

    def _value_hits(self, value: str, targets: int) -> frozenset[str]:
        """The hits of `value` as a value of `targets`: memoised, or scanned (and memoised when
        short). An empty value has none."""
        if not value:
            return NO_HITS
        key = (value, targets)
        found = self._memo.get(key)
        if found is None:
            found = self._scan_value(value, targets)
            if len(value) <= MEMO_MAX_VALUE:
                _remember(self._memo, key, found)
        return found

    def _clear_memos(self) -> None:
        """Forget every memoised value, part and request (tests use it to scan from scratch)."""
        for memo in (self._memo, self._arg_parts, self._header_pairs, self._cookie_parts):
            memo.clear()
        self._requests.clear()
        self._requests_bytes = 0

    def _scan_value(self, value: str, targets: int) -> frozenset[str]:
        """Scan a value not seen before as a value of `targets`: run the chains its features
        trigger (see `_plan`) and scan each distinct result once."""
        known = self._by_targets.get(targets)
        if known is None:
            known = self._for_targets(targets)
        present = features(value, known.wanted)
        plan = known.plans.get(present)
        if plan is None:
            plan = self._plan(known, targets, present)
        unchanged, triggered = plan
        scan_result = self._scan_result
        if not triggered:
            return scan_result(value, targets, unchanged)
        if len(triggered) == 1:
            bit, steps = triggered[0]
            result = value
            for _, transform in steps:
                result = transform(result)
            if result == value:
                return scan_result(value, targets, unchanged | bit)
            found = scan_result(value, targets, unchanged) if unchanged else NO_HITS
            more = scan_result(result, targets, bit)
            return found | more if found and more else found or more
        # Each distinct result of the value's chains, with the bits of the chains making it;
        # chains sharing a prefix share its work through `done`.
        results: dict[str, int] = {value: unchanged} if unchanged else {}
        done: dict[int, str] = {}
        for bit, steps in triggered:
            result = _transform(steps, value, done)
            results[result] = results.get(result, 0) | bit
        found = NO_HITS
        for result, chains in results.items():
            more = scan_result(result, targets, chains)
            if more:
                found = found | more if found else more
        return found


def _result_scanner(compiled: _Database) -> Callable[[str, int, int], frozenset[str]]:
    """A function scanning one result of a value of some targets with `compiled`, returning the
    keys of the patterns of those targets and of the chains that made the result."""
    scan, scratch = compiled.database.scan, compiled.scratch
    owners, pattern_targets, pattern_chains = compiled.owners, compiled.targets, compiled.chains
    # Pattern ids reported by the scan in progress: the match handler only collects them.
    matched: list[int] = []
    add = matched.append

    def on_match(pattern_id: int, start: int, end: int, flags: int, context: object) -> None:
        add(pattern_id)

    def scan_result(result: str, targets: int, chains: int) -> frozenset[str]:
        data = result.encode("utf-8", "replace")
        if not data:
            return NO_HITS
        scan(data, on_match, 0, None, scratch)
        if not matched:
            return NO_HITS
        found = frozenset(
            owners[pattern_id]
            for pattern_id in matched
            if pattern_targets[pattern_id] & targets and pattern_chains[pattern_id] & chains
        )
        matched.clear()
        return found

    return scan_result


def _no_hits(result: str, targets: int, chains: int) -> frozenset[str]:
    return NO_HITS


_Key = TypeVar("_Key")


def _remember(memo: dict[_Key, frozenset[str]], key: _Key, found: frozenset[str]) -> None:
    """Memoise `found` under `key`, starting `memo` afresh when it is full."""
    if len(memo) >= MEMO_ENTRIES:
        memo.clear()
    memo[key] = found


def _size(request: Request) -> int:
    """Roughly the bytes a request takes as a memo key: its parts and a fixed overhead."""
    header_chars = sum([len(name) + len(value) for name, value in request.headers])
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
