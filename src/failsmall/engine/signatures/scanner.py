"""Multi-pattern signature matching with hyperscan.

Patterns are grouped by transform chain. Each chain compiles into one hyperscan block-mode
database, and one more database holds every pattern of every chain. A request's distinct values
are each scanned once with the combined database, where a pattern's hit counts when the value
came from one of its match's targets (a bit mask per value) and its chain leaves the value
unchanged (decided from the value's features, without running the chain). Only for chains that
change the value is the value transformed, once per chain, and scanned with that chain's
database. So most values cost one scan, whatever the number of rules and chains.

Hyperscan only accepts patterns it can run in linear time; a pattern it refuses
(back-references, look-around, ...) is a build error, and there is no fallback to a
backtracking engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import hyperscan

from failsmall.engine.request import RequestView
from failsmall.engine.signatures.targets import target_values
from failsmall.engine.signatures.transforms import TransformFn, chain, features, triggers
from failsmall.model.rules import SignatureMatch, Target, Transform

_BASE_FLAGS = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL
_TARGET_BIT = {target: 1 << index for index, target in enumerate(Target)}


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
class _Database:
    """A compiled database, its scratch space, and who owns each pattern id."""

    database: hyperscan.Database
    scratch: hyperscan.Scratch
    owners: tuple[str, ...]
    targets: tuple[int, ...]
    chains: tuple[int, ...]
    utf8: bool

    @classmethod
    def compile(cls, patterns: Sequence[_Pattern]) -> _Database:
        database = _compile(patterns)
        return cls(
            database=database,
            scratch=hyperscan.Scratch(database),
            owners=tuple(p.key for p in patterns),
            targets=tuple(p.targets for p in patterns),
            chains=tuple(p.chain for p in patterns),
            utf8=any(p.flags & hyperscan.HS_FLAG_UTF8 for p in patterns),
        )


@dataclass(frozen=True, slots=True)
class _Chain:
    """One transform chain: the features that trigger it and the database of its patterns."""

    bit: int
    transforms: tuple[Transform, ...]
    transform: TransformFn
    triggers: int
    targets: int
    compiled: _Database


class SignatureScanner:
    """Scans a request with every signature match of a bundle at once.

    Build it with `compile`; `scan` returns the keys (rule ids) whose match hit. A scanner owns
    its scratch spaces (one per database: the Python binding cannot grow a scratch to fit
    several) and is meant for one thread, like the node's request loop.
    """

    def __init__(self, chains: tuple[_Chain, ...], combined: _Database | None) -> None:
        self._chains = chains
        self._combined = combined
        self._targets = tuple(t for t in Target if any(c.targets & _TARGET_BIT[t] for c in chains))

    @classmethod
    def compile(cls, matches: Mapping[str, SignatureMatch]) -> SignatureScanner:
        """Compile `matches` (keyed by rule id); raise `SignatureCompileError` listing problems."""
        grouped: dict[tuple[Transform, ...], list[_Pattern]] = {}
        for key, match in matches.items():
            mask = 0
            for target in match.targets:
                mask |= _TARGET_BIT[target]
            transforms = tuple(match.transforms)
            if transforms not in grouped:
                grouped[transforms] = []
            bit = 1 << list(grouped).index(transforms)
            for index, pattern in enumerate(match.patterns, start=1):
                grouped[transforms].append(_pattern(key, index, pattern, match.caseless, mask, bit))
        problems: list[str] = []
        chains: list[_Chain] = []
        for position, (transforms, patterns) in enumerate(grouped.items()):
            try:
                compiled = _Database.compile(patterns)
            except hyperscan.error:
                problems.extend(filter(None, (_check(p) for p in patterns)))
                continue
            targets = 0
            for p in patterns:
                targets |= p.targets
            chains.append(
                _Chain(
                    bit=1 << position,
                    transforms=transforms,
                    transform=chain(transforms),
                    triggers=triggers(transforms),
                    targets=targets,
                    compiled=compiled,
                )
            )
        if problems:
            raise SignatureCompileError(problems)
        every = [p for patterns in grouped.values() for p in patterns]
        return cls(tuple(chains), _Database.compile(every) if every else None)

    @property
    def database_count(self) -> int:
        """How many hyperscan databases the scanner holds (one per chain, plus the combined one)."""
        return len(self._chains) + (self._combined is not None)

    def scan(self, view: RequestView) -> frozenset[str]:
        """The keys whose match hit this request."""
        combined = self._combined
        if combined is None:
            return frozenset()
        hits: set[str] = set()

        def on_match(pattern_id: int, start: int, end: int, flags: int, context: object) -> None:
            compiled, targets, chains = cast(tuple[_Database, int, int], context)
            if compiled.targets[pattern_id] & targets and compiled.chains[pattern_id] & chains:
                hits.add(compiled.owners[pattern_id])

        sources: dict[str, int] = {}
        for target in self._targets:
            bit = _TARGET_BIT[target]
            for value in target_values(view, target):
                sources[value] = sources.get(value, 0) | bit
        for value, targets in sources.items():
            if not value:
                continue
            present = features(value)
            untouched = 0
            for step in self._chains:
                if not step.targets & targets:
                    continue
                if step.triggers & present:
                    data = _encode(step.transform(value), step.compiled.utf8)
                    if data:
                        step.compiled.database.scan(
                            data,
                            match_event_handler=on_match,
                            context=(step.compiled, targets, step.bit),
                            scratch=step.compiled.scratch,
                        )
                else:
                    untouched |= step.bit
            if untouched:
                combined.database.scan(
                    _encode(value, combined.utf8),
                    match_event_handler=on_match,
                    context=(combined, targets, untouched),
                    scratch=combined.scratch,
                )
        return frozenset(hits)


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


def _encode(value: str, utf8: bool) -> bytes:
    # A UTF-8 database must only ever see valid UTF-8, so lone surrogates are replaced there.
    return value.encode("utf-8", errors="replace" if utf8 else "surrogatepass")
