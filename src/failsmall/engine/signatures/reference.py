"""The readable value scanner: what the compiled one (`native`) does, in Python.

For a value not seen before, as a value of some targets:

1. the value's features are computed once (see `transforms.features`), among those the chains
   of its targets look at: a chain none of whose transforms is triggered would return the value
   unchanged, so it is not run, and a triggered chain runs from its first triggered step
   (the compiled scanner also passes over a later step whose triggers are absent from the text
   it is given, which it would give back: the same results);
2. the chains that are triggered run, sharing the work of common prefixes
   (`url_decode_uni, html_entity_decode, ...` is computed once for all chains starting so);
3. each distinct result is scanned once, and a pattern's hit counts only when the value came
   from one of its match's targets and the result is what its chain made of the value.

`ReferenceValueScanner.scan_head` walks the values of a request head the way the compiled
`scan_head` does, and `ReferenceMemo` remembers what the compiled `Memo` does, in the same order.

The engine runs the compiled scanner; tests check that both give the same hits and counts.
"""

from __future__ import annotations

import json
import unicodedata
from collections import OrderedDict
from collections.abc import Hashable, Sequence

import hyperscan

from failsmall.engine.body import JsonWalk, flatten_json_reference
from failsmall.engine.forms import cookie_pair, form_pair
from failsmall.engine.json_document import load_json
from failsmall.engine.native import (
    MEMO_ARG_PART,
    MEMO_BYTES_PER_SIGHTING,
    MEMO_COOKIE_PART,
    MEMO_ENTRY_OVERHEAD,
    MEMO_HEADER,
    MEMO_MAX_VALUE,
    MEMO_MIN_SIGHTINGS,
    MEMO_TEXT_KEY,
)
from failsmall.engine.signatures.compiled import (
    Chain,
    HeadScan,
    JsonScan,
    Known,
    Pattern,
    ScanMemo,
    SourcesScan,
)
from failsmall.engine.signatures.targets import TARGET_BIT
from failsmall.engine.signatures.transforms import TransformFn, features
from failsmall.engine.work import Stop, WorkCount
from failsmall.model.rules import Target

NO_HITS: frozenset[str] = frozenset()
NOTHING: Known = (NO_HITS, 0, 0)
_PATH, _URI, _QUERY, _METHOD = (
    TARGET_BIT[t] for t in (Target.PATH, Target.URI, Target.QUERY, Target.METHOD)
)
_ARG_NAMES, _ARG_VALUES = TARGET_BIT[Target.ARG_NAMES], TARGET_BIT[Target.ARG_VALUES]
_HEADER_NAMES, _HEADER_VALUES = TARGET_BIT[Target.HEADER_NAMES], TARGET_BIT[Target.HEADER_VALUES]
_USER_AGENT, _REFERER = TARGET_BIT[Target.USER_AGENT], TARGET_BIT[Target.REFERER]
_COOKIE_NAMES, _COOKIE_VALUES = TARGET_BIT[Target.COOKIE_NAMES], TARGET_BIT[Target.COOKIE_VALUES]
_FROM_HEADERS = _HEADER_NAMES | _HEADER_VALUES | _USER_AGENT | _REFERER
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
        self, sources: dict[str, int], memo: ScanMemo, room_values: int, room_chars: int
    ) -> SourcesScan:
        """The values of `sources` (each with its target mask) in order: their hits, values and
        characters remembered in `memo`, or scanned (and remembered when short), stopping
        before the first whose work does not fit the room left (then the last item says which
        limit, as a `Stop`)."""
        hits: set[str] = set()
        work = WorkCount(room_values, room_chars)
        fresh: list[tuple[str, int, frozenset[str], int]] = []
        stop = Stop.NONE
        for value, targets in sources.items():
            if not value:
                continue
            known = memo.get(value, targets)
            if known is None:
                known = self._fresh_value_hits(value, targets)
                if len(value) <= MEMO_MAX_VALUE:
                    fresh.append((value, targets, known[0], known[2]))
            found, found_values, found_chars = known
            if not work.fits(found_values, found_chars):
                stop = work.stop_at(found_values, found_chars)
                break
            hits |= found
        # Remembered after the walk: a body with more distinct values than the memo holds then
        # finds those remembered from the last time (a memo filled as it is read would push out
        # each value just before it is read).
        for value, targets, found, found_chars in fresh:
            memo.put(value, targets, found, 1, found_chars, len(value))
        return hits, work.values, work.chars, stop

    def scan_json(
        self,
        hits: set[str],
        memo: ScanMemo,
        body: bytes,
        text: str,
        text_bits: int,
        names_bit: int,
        values_bit: int,
        max_values: int,
        max_depth: int,
        max_name_chars: int,
        room_values: int,
        room_chars: int,
    ) -> JsonScan:
        """Add the hits of a JSON body to `hits`: `text` as a value of `text_bits` (when not
        0), then each field's name and value (as values of `names_bit` and `values_bit`, when
        not 0) of the body flattened within the limits, scanned with `scan_sources`. Returns how
        the flattening ended (INVALID, with nothing scanned, when `json.loads` with an unlimited
        recursion refuses the body), the values and characters counted and
        where the scan ended."""
        try:
            try:
                document = json.loads(body)
            except RecursionError:
                document = load_json(body)
        except ValueError:
            return JsonWalk.INVALID, 0, 0, Stop.NONE
        fields, status = flatten_json_reference(document, max_values, max_depth, max_name_chars)
        sources: dict[str, int] = {text: text_bits} if text_bits else {}
        for name, value in fields:
            if names_bit:
                sources[name] = sources.get(name, 0) | names_bit
            if values_bit:
                sources[value] = sources.get(value, 0) | values_bit
        found, values, chars, stop = self.scan_sources(sources, memo, room_values, room_chars)
        hits |= found
        return status, values, chars, stop

    def scan_head(
        self,
        hits: set[str],
        memo: ScanMemo,
        mask: int,
        method: str,
        path: str,
        query: str,
        headers: tuple[tuple[str, str], ...],
        room_values: int,
        room_chars: int,
    ) -> HeadScan:
        """Add the hits of the values of the head targets in `mask` to `hits`, as far as they
        fit the room left; return the values and characters counted and where it ended.

        A value's hits are the union of its hits as a value of each of its targets, so the
        parts of a request are remembered one by one, whatever else the request holds: the raw
        `name=value` parts of the query, each header's (name, value) pair, the raw parts of a
        Cookie header. A part seen before (a browser's headers, `theme=dark`) costs one lookup.
        """
        work = WorkCount(room_values, room_chars)
        uri = f"{path}?{query}" if query else path
        found: Known | None
        for bit, value in (
            (mask & _PATH, path),
            (mask & _URI, uri),
            (mask & _QUERY, query),
            (mask & _METHOD, method),
        ):
            if bit:
                found = self._value_hits(memo, value, bit)
                if not work.fits(found[1], found[2]):
                    return work.values, work.chars, work.stop_at(found[1], found[2])
                hits |= found[0]
        if query and mask & (_ARG_NAMES | _ARG_VALUES):
            for part in query.split("&"):
                if part:
                    found = memo.get(part, MEMO_ARG_PART)
                    if found is None:
                        found = self._arg_part_hits(memo, mask, part)
                    if not work.fits(found[1], found[2]):
                        return work.values, work.chars, work.stop_at(found[1], found[2])
                    hits |= found[0]
        if headers and mask & (_FROM_HEADERS | _COOKIE_NAMES | _COOKIE_VALUES):
            for pair in headers:
                found = memo.get(pair, MEMO_HEADER)
                if found is None:
                    found = self._header_hits(memo, mask, pair, work.max_values - work.values)
                if not work.fits(found[1], found[2]):
                    return work.values, work.chars, work.stop_at(found[1], found[2])
                hits |= found[0]
        return work.values, work.chars, Stop.NONE

    def _arg_part_hits(self, memo: ScanMemo, mask: int, part: str) -> Known:
        """The hits of the name and value of one raw `name=value` part of the query."""
        name, value = form_pair(part)
        found = NOTHING
        if mask & _ARG_NAMES:
            found = self._value_hits(memo, name, _ARG_NAMES)
        if mask & _ARG_VALUES:
            found = _plus(found, self._value_hits(memo, value, _ARG_VALUES))
        if len(part) <= MEMO_MAX_VALUE:
            memo.put(part, MEMO_ARG_PART, *found, len(part))
        return found

    def _header_hits(
        self, memo: ScanMemo, mask: int, pair: tuple[str, str], room_values: int
    ) -> Known:
        """The hits of one header: its lowercase name, and its value for the header value, user
        agent and referer targets, or, for a Cookie header, its cookies' names and values. A
        Cookie header whose cookies pass `room_values` is walked no further (the walk stops at
        it whatever the rest holds) and is not remembered."""
        name, value = pair
        lower = name.lower()
        found = NOTHING
        if mask & _HEADER_NAMES:
            found = self._value_hits(memo, lower, _HEADER_NAMES)
        if lower == "cookie":  # matched parsed, through the cookie targets
            if mask & (_COOKIE_NAMES | _COOKIE_VALUES):
                for part in value.split(";"):
                    found = _plus(found, self._cookie_part_hits(memo, mask, part))
                    if found[1] > room_values:
                        return found
        else:
            bits = mask & _HEADER_VALUES
            if lower == "user-agent":
                bits |= mask & _USER_AGENT
            elif lower == "referer":
                bits |= mask & _REFERER
            if bits:
                found = _plus(found, self._value_hits(memo, value, bits))
        if len(name) + len(value) <= MEMO_MAX_VALUE:
            memo.put(pair, MEMO_HEADER, *found, len(name) + len(value))
        return found

    def _cookie_part_hits(self, memo: ScanMemo, mask: int, part: str) -> Known:
        """The hits of the name and value of one raw `;`-separated part of a Cookie header."""
        known = memo.get(part, MEMO_COOKIE_PART)
        if known is not None:
            return known
        found = NOTHING
        cookie = cookie_pair(part)
        if cookie is not None:
            if mask & _COOKIE_NAMES:
                found = self._value_hits(memo, cookie[0], _COOKIE_NAMES)
            if mask & _COOKIE_VALUES:
                found = _plus(found, self._value_hits(memo, cookie[1], _COOKIE_VALUES))
        if len(part) <= MEMO_MAX_VALUE:
            memo.put(part, MEMO_COOKIE_PART, *found, len(part))
        return found

    def _value_hits(self, memo: ScanMemo, value: str, targets: int) -> Known:
        """The hits of `value` as a value of `targets`, and its cost: remembered, or scanned
        (and remembered when short). An empty value has none. A value that is not ASCII is
        scanned as written and in its NFKC form."""
        if not value:
            return NOTHING
        found = memo.get(value, targets)
        if found is None:
            found = self._fresh_value_hits(value, targets)
            if len(value) <= MEMO_MAX_VALUE:
                memo.put(value, targets, *found, len(value))
        return found

    def _fresh_value_hits(self, value: str, targets: int) -> Known:
        """The hits and cost of a value not seen before: as written and, for a value that is
        not ASCII, in its NFKC form too."""
        hits, chars = self.scan_value(value, targets)
        if not value.isascii():
            folded = unicodedata.normalize("NFKC", value)
            if folded != value:
                more, more_chars = self.scan_value(folded, targets)
                hits, chars = hits | more, chars + more_chars
        return (hits, 1, chars)

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


def _plus(a: Known, b: Known) -> Known:
    """The hits and cost of two values together."""
    if not b[1]:
        return a
    if not a[1]:
        return b
    return (a[0] | b[0] if a[0] and b[0] else a[0] or b[0], a[1] + b[1], a[2] + b[2])


_WORD = (1 << 64) - 1


def _fold(a: int, b: int) -> int:
    """The 128-bit product of two words, its halves xored (`memo_fold`)."""
    product = a * b
    return (product ^ product >> 64) & _WORD


def _narrowest_bytes(text: str) -> bytes:
    """The bytes a str holds its characters in: one, two or four bytes each, the fewest that
    hold its widest character (lone surrogates as they are)."""
    widest = max(map(ord, text), default=0)
    if widest < 0x100:
        return text.encode("latin-1")
    return text.encode("utf-16-le" if widest < 0x10000 else "utf-32-le", "surrogatepass")


def _word(data: bytes, at: int) -> int:
    """The little-endian word of the 8 bytes at `at`."""
    return int.from_bytes(data[at : at + 8], "little")


_LANES = (0, 0x243F6A8885A308D3, 0x13198A2E03707344, 0xA4093822299F31D0)


def text_hash(text: str) -> int:
    """The memo's hash of a str (`memo_text_hash` in `_memo.h`): its bytes, 16 at a time, each
    block multiplied into the seed (the key and the size; while more than 64 bytes are left,
    four seeds, one a block, then xored together); then the last 16 bytes (or, of
    fewer, both ends) multiplied with the key and the seed, and that once more."""
    data = _narrowest_bytes(text)
    size = len(data)
    if size == 0:
        return 0
    k0, k1 = MEMO_TEXT_KEY
    seed = k0 ^ (size * 0x9E3779B97F4A7C15) & _WORD
    if size <= 16:
        half = 8 if size >= 8 else 4 if size >= 4 else 0
        if half:
            a, b = (int.from_bytes(part, "little") for part in (data[:half], data[-half:]))
        else:
            a, b = data[0] << 16 | data[size // 2] << 8 | data[-1], 0
    else:
        laned = (size - 1) // 64 * 64  # the bytes taken in four lanes: while over 64 are left
        if laned:
            lanes = [seed ^ start for start in _LANES]
            for at in range(0, laned, 64):
                lanes = [
                    _fold(_word(data, at + 16 * lane) ^ k1, _word(data, at + 16 * lane + 8) ^ v)
                    for lane, v in enumerate(lanes)
                ]
            seed = lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3]
        for at in range(laned, size - 16, 16):
            seed = _fold(_word(data, at) ^ k1, _word(data, at + 8) ^ seed)
        a, b = int.from_bytes(data[-16:-8], "little"), int.from_bytes(data[-8:], "little")
    mixed = _fold(a ^ k1, b ^ seed)
    return _fold(mixed ^ 0xE7037ED1A0B428DB, seed ^ k1 ^ 0x8EBC6AF09C88C6E3) >> 1


def memo_hash(key: Hashable, kind: int) -> int:
    """The hash a memo files (key, kind) by (`memo_mix` in `_memo.h`), as an unsigned word: of
    a str its `text_hash`, of another key its Python hash."""
    hashed = text_hash(key) if isinstance(key, str) else hash(key)
    mixed = ((hashed * 1000003) ^ (kind * 0x9E3779B97F4A7C15)) & _WORD
    return mixed - 1 if mixed == _WORD else mixed  # C's -1 (an error there) is -2


def sighting_bits(max_bytes: int) -> int:
    """The bits of the filter of keys offered once of a memo of `max_bytes`."""
    bits = MEMO_MIN_SIGHTINGS
    while bits < max_bytes // MEMO_BYTES_PER_SIGHTING:
        bits *= 2
    return bits


class ReferenceMemo:
    """What the compiled `Memo` does, in Python: entries keyed by (key, kind), bounded by the
    size of their keys.

    A key not held is stored on its second offer: the first sets two bits of a Bloom filter of
    sightings sized by `max_bytes` (picked by the low and the high half of its hash), and a key
    offered with both set is stored. The filter is emptied when it has noted an offer per eight
    of its bits. When full, the oldest entries are forgotten one by one (insertion
    order), as many as make room for the new one: eviction is gradual, and a flood of unique
    values only pushes out the oldest entries instead of clearing everything at once.
    """

    __slots__ = ("_entries", "_max_bytes", "_noted", "_sightings", "offered", "size")

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self.size = 0
        self.offered = 0  # keys not held ever offered
        self._entries: OrderedDict[tuple[Hashable, int], tuple[Known, int]] = OrderedDict()
        self._sightings = [False] * sighting_bits(max_bytes)
        self._noted = 0  # offers noted since the filter was last emptied

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, max_bytes: int) -> None:
        if sighting_bits(max_bytes) != len(self._sightings):
            self._sightings = [False] * sighting_bits(max_bytes)
            self._noted = 0
        self._max_bytes = max_bytes
        self._forget_oldest()

    @property
    def sighting_bits(self) -> int:
        return len(self._sightings)

    def get(self, key: Hashable, kind: int) -> Known | None:
        entry = self._entries.get((key, kind))
        return entry[0] if entry is not None else None

    def put(
        self, key: Hashable, kind: int, hits: frozenset[str], values: int, chars: int, size: int
    ) -> bool:
        """Store (key, kind) if offered again (see the class); whether it was stored now."""
        if (key, kind) in self._entries:
            return False
        self.offered += 1
        mixed, sightings = memo_hash(key, kind), self._sightings
        low, high = mixed & (len(sightings) - 1), (mixed >> 32) & (len(sightings) - 1)
        self._noted += 1
        if self._noted > len(sightings) // 8:
            sightings[:] = [False] * len(sightings)
            self._noted = 1
        if not (sightings[low] and sightings[high]):
            sightings[low] = sightings[high] = True
            return False
        cost = size + MEMO_ENTRY_OVERHEAD
        if cost > self._max_bytes:
            return False
        self.size += cost
        self._forget_oldest()
        self._entries[key, kind] = ((hits, values, chars), cost)
        return True

    def discard(self, key: Hashable, kind: int) -> None:
        entry = self._entries.pop((key, kind), None)
        if entry is not None:
            self.size -= entry[1]

    def items(self) -> list[tuple[Hashable, int, Known, int]]:
        return [(key, kind, known, cost) for (key, kind), (known, cost) in self._entries.items()]

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0
        self._sightings = [False] * len(self._sightings)
        self._noted = 0

    def _forget_oldest(self) -> None:
        while self.size > self._max_bytes and self._entries:
            self.size -= self._entries.popitem(last=False)[1][1]
