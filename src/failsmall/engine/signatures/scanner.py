"""Multi-pattern signature matching with hyperscan.

All patterns that share a (target set, transform chain) group compile into one hyperscan
block-mode database, so a request's target values are transformed once per chain and scanned
once per group, whatever the number of rules. Hyperscan only accepts patterns it can run in
linear time; a pattern it refuses (back-references, look-around, ...) is a build error, and
there is no fallback to a backtracking engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

import hyperscan

from failsmall.engine.request import RequestView
from failsmall.engine.signatures.targets import target_values
from failsmall.engine.signatures.transforms import TransformFn, chain
from failsmall.model.rules import SignatureMatch, Target, Transform

_BASE_FLAGS = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_DOTALL


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


@dataclass(frozen=True, slots=True)
class _Group:
    """One compiled database: the patterns of every match sharing targets and transforms."""

    targets: tuple[Target, ...]
    transforms: tuple[Transform, ...]
    transform: TransformFn
    database: hyperscan.Database
    scratch: hyperscan.Scratch
    owners: tuple[str, ...]
    utf8: bool


class SignatureScanner:
    """Scans a request with every signature match of a ruleset bundle at once.

    Build it with `compile`; `scan` returns the keys (rule ids) whose match hit. A scanner owns
    its scratch space (one per database: the Python binding cannot grow a scratch to fit
    several) and is meant for one thread, like the node's request loop.
    """

    def __init__(self, groups: tuple[_Group, ...]) -> None:
        self._groups = groups

    @classmethod
    def compile(cls, matches: Mapping[str, SignatureMatch]) -> SignatureScanner:
        """Compile `matches` (keyed by rule id); raise `SignatureCompileError` listing problems."""
        grouped: dict[tuple[tuple[Target, ...], tuple[Transform, ...]], list[_Pattern]] = {}
        for key, match in matches.items():
            group_key = (tuple(sorted(set(match.targets))), tuple(match.transforms))
            patterns = grouped.setdefault(group_key, [])
            for index, pattern in enumerate(match.patterns, start=1):
                patterns.append(_pattern(key, index, pattern, match.caseless))
        problems: list[str] = []
        groups: list[_Group] = []
        for (targets, transforms), patterns in grouped.items():
            try:
                database = _database(patterns)
            except hyperscan.error:
                problems.extend(filter(None, (_check(p) for p in patterns)))
                continue
            groups.append(
                _Group(
                    targets=targets,
                    transforms=transforms,
                    transform=chain(transforms),
                    database=database,
                    scratch=hyperscan.Scratch(database),
                    owners=tuple(p.key for p in patterns),
                    utf8=any(p.flags & hyperscan.HS_FLAG_UTF8 for p in patterns),
                )
            )
        if problems:
            raise SignatureCompileError(problems)
        return cls(tuple(groups))

    @property
    def database_count(self) -> int:
        """How many hyperscan databases a request is scanned with."""
        return len(self._groups)

    def scan(self, view: RequestView) -> frozenset[str]:
        """The keys whose match hit this request."""
        hits: set[str] = set()
        values_by_target: dict[Target, list[str]] = {}
        transformed: dict[tuple[Target, tuple[Transform, ...]], list[bytes]] = {}

        def on_match(pattern_id: int, start: int, end: int, flags: int, owners: object) -> None:
            hits.add(cast(tuple[str, ...], owners)[pattern_id])

        for group in self._groups:
            seen: set[bytes] = set()
            for target in group.targets:
                cache_key = (target, group.transforms)
                encoded = transformed.get(cache_key)
                if encoded is None:
                    raw = values_by_target.get(target)
                    if raw is None:
                        raw = target_values(view, target)
                        values_by_target[target] = raw
                    encoded = [_encode(group.transform(value), group.utf8) for value in raw]
                    transformed[cache_key] = encoded
                for data in encoded:
                    if data in seen:
                        continue
                    seen.add(data)
                    group.database.scan(
                        data,
                        match_event_handler=on_match,
                        context=group.owners,
                        scratch=group.scratch,
                    )
        return frozenset(hits)


def _pattern(key: str, index: int, expression: str, caseless: bool) -> _Pattern:
    flags = _BASE_FLAGS
    if caseless:
        flags |= hyperscan.HS_FLAG_CASELESS
    if not expression.isascii():
        flags |= hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_UCP
    return _Pattern(key, index, expression.encode("utf-8"), flags)


def _check(pattern: _Pattern) -> str:
    """'' when hyperscan compiles `pattern` on its own, else a problem naming it."""
    try:
        _database([pattern])
    except hyperscan.error as exc:
        message = exc.args[0] if exc.args else str(exc)
        return f"rule {pattern.key} pattern {pattern.index}: {message}"
    return ""


def _database(patterns: Sequence[_Pattern]) -> hyperscan.Database:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(
        expressions=[p.expression for p in patterns],
        ids=list(range(len(patterns))),
        elements=len(patterns),
        flags=[p.flags for p in patterns],
    )
    return database


def _encode(value: str, utf8: bool) -> bytes:
    # Surrogates (from lone escapes) are replaced so a UTF-8 database only ever sees valid UTF-8.
    return value.encode("utf-8", errors="replace" if utf8 else "surrogatepass")
