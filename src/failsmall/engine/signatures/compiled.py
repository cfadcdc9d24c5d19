"""What the signature matches of a bundle compile to: patterns tagged with their match's
targets and transform chain, and the chains themselves.

Both value scanners (`native`, which the engine runs, and `reference`, the readable one tests
compare it with) are built from these.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Protocol

from failsmall.engine.signatures.targets import TARGET_BIT
from failsmall.engine.signatures.transforms import TRANSFORMS, TRIGGERS, TransformFn, triggers
from failsmall.model.rules import SignatureMatch, Transform

#: What a value, a head part or a request found and cost: the keys hit, the values it holds
#: and the characters scanned for it, transforms included.
Known = tuple[frozenset[str], int, int]
#: What `scan_sources` returns: hits, values, characters, and where it ended (a `work.Stop`).
SourcesScan = tuple[set[str], int, int, int]
#: What `scan_head` returns: values, characters, and where it ended (a `work.Stop`).
HeadScan = tuple[int, int, int]
#: What `scan_json` returns: how the walk ended (a `body.JsonWalk`), values, characters, and
#: where the scan ended (a `work.Stop`).
JsonScan = tuple[int, int, int, int]


class ScanMemo(Protocol):
    """What the value scanners remember values and head parts in, keyed by (key, kind): a
    value's kind is its target mask, the other kinds are `native.MEMO_*` (`_native.Memo`, or
    `reference.ReferenceMemo`)."""

    def get(self, key: Hashable, kind: int, /) -> Known | None: ...

    def put(
        self, key: Hashable, kind: int, hits: frozenset[str], values: int, chars: int, size: int, /
    ) -> None: ...


# Hyperscan's pattern flags (hs_compile.h); the same in every Hyperscan 5 release.
HS_FLAG_CASELESS = 1
HS_FLAG_DOTALL = 2
HS_FLAG_SINGLEMATCH = 8
HS_FLAG_UTF8 = 32
HS_FLAG_UCP = 64
_BASE_FLAGS = HS_FLAG_SINGLEMATCH | HS_FLAG_DOTALL
#: A value's chains are a bit mask of 64 bits in the compiled scanner.
MAX_CHAINS = 64


class SignatureCompileError(Exception):
    """Some signature patterns cannot be compiled; `problems` names every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "signature patterns do not compile (hyperscan accepts linear-time patterns only): "
            + "; ".join(problems)
        )


@dataclass(frozen=True, slots=True)
class Pattern:
    """One pattern of one match: its rule's key, its place in the match, the expression and
    hyperscan flags, the mask of the match's targets and the bit of its chain."""

    key: str
    index: int
    expression: bytes
    flags: int
    targets: int
    chain: int


@dataclass(frozen=True, slots=True)
class Chain:
    """One transform chain: its steps (each with the id of the prefix it completes: chains
    that start alike share ids), the features that trigger each step, and the chain."""

    bit: int
    transforms: tuple[Transform, ...]
    steps: tuple[tuple[int, TransformFn], ...]
    step_triggers: tuple[int, ...]
    triggers: int
    targets: int


def compile_matches(
    matches: Mapping[str, SignatureMatch],
) -> tuple[tuple[Chain, ...], tuple[Pattern, ...]]:
    """The chains and the patterns of `matches` (keyed by rule id)."""
    chain_bits: dict[tuple[Transform, ...], int] = {}
    chain_targets: dict[tuple[Transform, ...], int] = {}
    patterns: list[Pattern] = []
    for key, match in matches.items():
        mask = 0
        for target in match.targets:
            mask |= TARGET_BIT[target]
        transforms = tuple(match.transforms)
        bit = chain_bits.setdefault(transforms, 1 << len(chain_bits))
        chain_targets[transforms] = chain_targets.get(transforms, 0) | mask
        for index, expression in enumerate(match.patterns, start=1):
            patterns.append(_pattern(key, index, expression, match.caseless, mask, bit))
    if len(chain_bits) > MAX_CHAINS:
        raise SignatureCompileError(
            [f"{len(chain_bits)} distinct transform chains: at most {MAX_CHAINS} are supported"]
        )
    prefixes: dict[tuple[Transform, ...], int] = {}
    chains = tuple(
        Chain(
            bit=bit,
            transforms=transforms,
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
    return chains, tuple(patterns)


def _pattern(
    key: str, index: int, expression: str, caseless: bool, targets: int, chain_bit: int
) -> Pattern:
    flags = _BASE_FLAGS
    if caseless:
        flags |= HS_FLAG_CASELESS
    if not expression.isascii():
        flags |= HS_FLAG_UTF8 | HS_FLAG_UCP
    return Pattern(key, index, expression.encode("utf-8"), flags, targets, chain_bit)
