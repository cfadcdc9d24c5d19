"""Multi-pattern signature matching with hyperscan.

Every pattern of every match compiles into one hyperscan block-mode database, each pattern
tagged with its match's targets and transform chain (see `compiled`). A new value of some
targets costs one call of the value scanner: it computes the value's trigger features, runs
the transform chains they trigger (sharing common prefixes), and scans each distinct result
once, keeping a pattern's hit only when the value came from one of its match's targets and the
result is what its chain made of the value. The engine's value scanner is compiled C linked to
libhs (`native`); `reference` is the same in Python, and tests hold the two to one answer.

A value's hits are the union of its hits as a value of each of its targets, so they are
memoised by value and targets, and so are the parts of a request head, whatever else the request
holds: each raw `name=value` part of the query, each header's (name, value) pair, each raw part
of a Cookie header. A browser's headers and steady cookies cost one lookup each; its session
cookie, path id and query values are what is scanned. The value scanner walks a request head in
one call (`scan_head`), and a body's values in another (`scan_sources`; a JSON body from its
bytes, `scan_json`, with no Python string for a value it remembers).

So most values cost one scan, whatever the number of rules, targets and chains, and no value is
transformed twice the same way. A value that is not ASCII is also scanned in its NFKC form, so a
payload in full-width or other compatibility characters (`ＳＥＬＥＣＴ`) is caught as written.

Everything remembered lives in one memo (`native.Memo`, a hash table in C that both calls read
and write directly), which forgets its oldest entries a few at a time when full, so a flood of
unique values never makes every client pay for a cleared memo, and which stores a key only on
its second offer, so one-off values (a session id, an order's ids) are scanned without being
stored at all.
Each memo entry keeps the work its value cost (values, characters scanned), so the work counted
for a request, and whether it reached a limit of the bundle (see `failsmall.engine.work`), is
the same whether its parts were remembered or scanned.

Hyperscan only accepts patterns it can run in linear time; a pattern it refuses
(back-references, look-around, ...) is a build error, and there is no fallback to a
backtracking engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Final, NamedTuple, Protocol

from failsmall.engine.body import JSON_WALKS, JsonWalk, ParsedBody, is_json, not_json
from failsmall.engine.native import (
    MEMO_BODY,
    MEMO_ENTRY_OVERHEAD,
    Memo,
    add_fields,
    extension,
    tuple_of,
)
from failsmall.engine.request import NO_HITS, BodyFormat, RequestView
from failsmall.engine.signatures.compiled import (
    Chain,
    HeadScan,
    JsonScan,
    Pattern,
    SignatureCompileError,
    SourcesScan,
    compile_matches,
)
from failsmall.engine.signatures.native import native_value_scanner
from failsmall.engine.signatures.targets import (
    BODY_TARGETS,
    EXTRACTORS,
    HEAD_TARGETS,
    TARGET_BIT,
)
from failsmall.engine.work import STOPS, LimitReached, Stop, WorkCount
from failsmall.model.rules import SignatureMatch, Target
from failsmall.model.traffic import Limits

__all__ = ["MEMO_ENTRY_OVERHEAD", "SignatureCompileError", "SignatureScanner", "memo_bytes"]
#: A body's scan is remembered whole (a retry, a load tester, a client posting the same
#: document or query with its own head), stored the second time it comes with nothing new in it,
#: when it takes at most this share of the memo: its hits depend only on its bytes, whether they
#: were cut at the buffer, what reading it takes from the head (`RequestView.body_head`) and the
#: limits, which `_BodyKey` holds.
MEMO_BODY_SHARE: Final = 8
#: The bytes a body's key takes besides the body's own, roughly.
BODY_KEY_OVERHEAD: Final = 256
#: What the memo may hold, in (roughly) bytes of keys; past it the oldest entries go. It holds
#: at least this, and `MEMO_BYTES_PER_BUFFER_BYTE` times the bundle's body buffer up to
#: `MEMO_MAX_BYTES` (see `memo_bytes`).
MEMO_BYTES: Final = 8 * 1024 * 1024
#: A JSON body's distinct names and values take about 8.5 times its size in the memo (1 MiB of
#: customer records: 62,000 entries), so a memo of twice that holds a body at the buffer's
#: limit beside the other clients' values: a body sent again finds all of its values, where a
#: memo smaller than one body forgets, on each sending, the values the next one reads first.
MEMO_BYTES_PER_BUFFER_BYTE: Final = 16
MEMO_MAX_BYTES: Final = 64 * 1024 * 1024


def memo_bytes(limits: Limits) -> int:
    """What the memo of a bundle with these limits may hold, in (roughly) bytes of keys."""
    return max(MEMO_BYTES, min(MEMO_BYTES_PER_BUFFER_BYTE * limits.waf_body_buffer, MEMO_MAX_BYTES))


class _UnderLimits:
    """The limits a body was inspected under, as a part of its key in the memo: equal only
    to itself and hashed by identity, in C (a `Limits`' own hash and equality run interpreted).
    The scanner makes one for each `Limits` it meets in turn; two bundles with the same limits
    get two, which costs a miss, never a wrong answer."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits


_BodyKey = tuple[bytes, bool, tuple[str, tuple[str, ...]], _UnderLimits]
"""A body remembered whole: its bytes, whether they were cut at the buffer, what reading it
takes from the head (`RequestView.body_head`), and the limits it was inspected under (a
scanner outlives a bundle that changes only its limits, and a body inspected whole under one
bundle's limits may reach another's)."""
_BODY_ARG_NAMES, _BODY_ARG_VALUES = (
    TARGET_BIT[Target.BODY_ARG_NAMES],
    TARGET_BIT[Target.BODY_ARG_VALUES],
)
_FILENAMES: Final = TARGET_BIT[Target.FILENAMES]
_BODY: Final = TARGET_BIT[Target.BODY]
#: Body formats whose fields are named: their names and values are inspected pair by pair.
_FORMS: Final = frozenset({BodyFormat.URLENCODED, BodyFormat.JSON, BodyFormat.MULTIPART})
_WRONG_BITS = {
    name: bit for name, bit in extension.HEAD_TARGET_BITS.items() if TARGET_BIT[Target[name]] != bit
}
if _WRONG_BITS:
    raise ImportError(
        f"the compiled head walk was built with other target bits ({_WRONG_BITS}) than "
        "failsmall.engine.signatures.targets: rebuild the package (`pip install -e .`)"
    )


#: Bodies up to this long are always looked up whole (their hash is cheap); longer ones only
#: when their fingerprint is in its slot (`BodySightings`).
SHORT_BODY: Final = 256
#: The bytes at each end of a long body its fingerprint is made of.
BODY_ENDS: Final = 32
#: Slots of `BodySightings` (a power of two).
SIGHTING_SLOTS: Final = 4096


class BodySightings:
    """Which long bodies the memo has stored whole, by a fingerprint of their length and ends,
    so that a body with none is not looked up: the lookup would hash all of it, and distinct
    bodies (an API's orders, each with its own ids; uploads whose names differ past their first
    bytes) are never found. A fixed table of slots, each holding the last fingerprint stored in
    it: bounded, nothing cleared at once. A fingerprint overwritten, or one whose body the memo
    has forgotten, costs a body seen before a scan of its values (each of them remembered), and
    a distinct body of a stored one's fingerprint costs the hash; neither changes a result: the
    memo holds what the scan finds."""

    def __init__(self) -> None:
        self._slots = [0] * SIGHTING_SLOTS

    def fingerprint(self, body: bytes) -> int:
        """The body's fingerprint, never 0; 0 for a short body (not filtered)."""
        if len(body) <= SHORT_BODY:
            return 0
        return hash((len(body), body[:BODY_ENDS], body[-BODY_ENDS:])) or 1

    def may_be_remembered(self, fingerprint: int) -> bool:
        return fingerprint == 0 or self._slots[fingerprint & (SIGHTING_SLOTS - 1)] == fingerprint

    def remembered(self, fingerprint: int) -> None:
        if fingerprint:
            self._slots[fingerprint & (SIGHTING_SLOTS - 1)] = fingerprint


class ScanResult(NamedTuple):
    """The keys hit by a request, the work counted for it, and the limit that stopped the
    inspection if one did (then `hits` are those of the values inspected before)."""

    hits: frozenset[str]
    values: int
    chars: int
    reached: LimitReached | None


#: Read from a C static where called for each request, not looked up in the module's globals
#: (what mypyc does for a name that is not `Final`).
_TUPLE_OF: Final = tuple_of
_SCAN_RESULT: Final = ScanResult


def scan_result_of(
    hits: frozenset[str], values: int, chars: int, reached: LimitReached | None
) -> ScanResult:
    """A `ScanResult` made by `tuple_of` (one C call) rather than by the NamedTuple's
    generated `__new__`, which runs interpreted: the WAF makes one per request it scans."""
    return _TUPLE_OF(_SCAN_RESULT, hits, values, chars, reached)


def frozen(hits: set[str]) -> frozenset[str]:
    """`hits` as a frozenset; the shared empty one when there are none."""
    return frozenset(hits) if hits else NO_HITS


class ValueScanner(Protocol):
    """Scans values as values of some targets, and the values of a request head and a body,
    remembering them in a memo (see `reference.ReferenceValueScanner`)."""

    def scan_value(self, value: str, targets: int) -> tuple[frozenset[str], int]: ...

    def scan_sources(
        self, sources: dict[str, int], memo: Memo, room_values: int, room_chars: int, /
    ) -> SourcesScan: ...

    def scan_json(
        self,
        hits: set[str],
        memo: Memo,
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
        /,
    ) -> JsonScan: ...

    def scan_head(
        self,
        hits: set[str],
        memo: Memo,
        mask: int,
        method: str,
        path: str,
        query: str,
        headers: tuple[tuple[str, str], ...],
        room_values: int,
        room_chars: int,
        /,
    ) -> HeadScan: ...


#: Builds a value scanner from the chains and patterns of a bundle's matches.
ValueScannerFactory = Callable[[Sequence[Chain], Sequence[Pattern]], ValueScanner]


class SignatureScanner:
    """Scans a request with every signature match of a bundle at once.

    Build it with `compile`; `scan` returns the keys (rule ids) whose match hit. A scanner owns
    its hyperscan scratch space and is meant for one thread, like the node's request loop (the
    compiled value scanner refuses a scan while another is under way).
    """

    def __init__(self, chains: Sequence[Chain], values: ValueScanner | None) -> None:
        self._chains = tuple(chains)
        self._values = values
        self._targets = tuple(t for t in Target if any(c.targets & TARGET_BIT[t] for c in chains))
        # What short values seen before found and cost (user agents, accept headers, paths,
        # cookie names repeat across clients: a value's hits depend only on the value and its
        # targets), and the parts of a request head (see `scan_head`), and whole bodies.
        self.memo = Memo(MEMO_BYTES)
        self._sightings = BodySightings()
        self._under: _UnderLimits | None = None
        self._head_mask = 0
        for target in self._targets:
            if target in HEAD_TARGETS:
                self._head_mask |= TARGET_BIT[target]
        # An empty body has no values for the body targets: they are not even looked at then.
        self._body_extractors = tuple(
            (TARGET_BIT[t], EXTRACTORS[t]) for t in self._targets if t in BODY_TARGETS
        )
        wanted = {bit for bit, _ in self._body_extractors}
        self._names_bit = _BODY_ARG_NAMES if _BODY_ARG_NAMES in wanted else 0
        self._values_bit = _BODY_ARG_VALUES if _BODY_ARG_VALUES in wanted else 0
        self._filenames_bit = _FILENAMES if _FILENAMES in wanted else 0
        self._text_bit = _BODY if _BODY in wanted else 0

    @classmethod
    def compile(
        cls,
        matches: Mapping[str, SignatureMatch],
        value_scanner: ValueScannerFactory = native_value_scanner,
    ) -> SignatureScanner:
        """Compile `matches` (keyed by rule id) into a scanner whose values are scanned by what
        `value_scanner` builds (the compiled one unless a test asks for the reference); raise
        `SignatureCompileError` listing problems."""
        chains, patterns = compile_matches(matches)
        if not patterns:
            return cls(chains, None)
        return cls(chains, value_scanner(chains, patterns))

    @property
    def chain_count(self) -> int:
        """How many distinct transform chains the matches use."""
        return len(self._chains)

    def scan(self, view: RequestView) -> frozenset[str]:
        """The keys whose match hit this request (within the limits of `view.limits`)."""
        return self.inspect(view).hits

    def value_hits(self, value: str, target: Target) -> frozenset[str]:
        """The keys whose match hits `value` as a value of `target`."""
        if self._values is None:
            return NO_HITS
        hits, _, _, stop = self._values.scan_sources(
            {value: TARGET_BIT[target]}, self.memo, 1, 1 << 62
        )
        assert stop == Stop.NONE, "one value always fits unbounded room"
        return frozenset(hits)

    def inspect(self, view: RequestView) -> ScanResult:
        """The keys whose match hit this request, the work counted, and the limit reached.

        Most requests are a head within the limits and no body to scan: their work is what the
        head walk counted. Any other is counted in a `WorkCount`, which records the limit
        reached."""
        values = self._values
        if values is None:
            return scan_result_of(NO_HITS, 0, 0, None)
        limits = view.limits
        max_values, max_chars = limits.waf_max_values, limits.waf_max_transformed_chars
        request = view.request
        hits: set[str] = set()
        head_values, head_chars_scanned, stop = values.scan_head(
            hits, self.memo, self._head_mask, request.method, request.path, request.query,
            request.headers, max_values, max_chars,
        )  # fmt: skip
        body = request.body and self._body_extractors
        if not body and stop == Stop.NONE:
            return scan_result_of(frozen(hits), head_values, head_chars_scanned, None)
        work = WorkCount(max_values, max_chars)
        if work.add(head_values, head_chars_scanned, STOPS[stop]) and body:
            self._inspect_body(values, view, hits, work)
        return scan_result_of(frozen(hits), work.values, work.chars, work.reached)

    def _inspect_body(
        self, values: ValueScanner, view: RequestView, hits: set[str], work: WorkCount
    ) -> None:
        """Add the body's hits to `hits` and count its work in `work`.

        A body inspected whole before, under the same key (`_BodyKey`), is found in the memo
        when its work fits the room the head left. Any other is scanned, and remembered whole
        when the scan read all of it and found nothing new in it (a body of new values is
        neither stored nor, when long, looked up: that spares distinct traffic the key's hash
        and keeps its one-off bodies from pushing the values they share out of the memo)."""
        memo = self.memo
        body = view.request.body
        size = BODY_KEY_OVERHEAD + len(body)  # roughly the bytes its key takes
        remembered = size + MEMO_ENTRY_OVERHEAD <= memo.max_bytes // MEMO_BODY_SHARE
        key: _BodyKey | None = None
        fingerprint = 0
        if remembered:
            fingerprint = self._sightings.fingerprint(body)
            if self._sightings.may_be_remembered(fingerprint):
                key = self._body_key(view)
                known = memo.get(key, MEMO_BODY)
                if known is not None and work.stop_at(known[1], known[2]) is Stop.NONE:
                    hits |= known[0]
                    work.add(known[1], known[2], Stop.NONE)
                    return
        offered = memo.offered
        before_values, before_chars = work.values, work.chars
        found: set[str] = set()
        if not self._scan_json_body(values, view, found, work):
            self._scan_body(values, self._body_sources(view), found, work)
        hits |= found
        # Only a body inspected whole is remembered whole: found whole, it is not read, so a
        # limit its decoding or parsing reached (which the WAF reports, and may block for)
        # would go unreported. Reading the limits here costs nothing: the WAF reads them next,
        # for any request whose body was read.
        if remembered and work.reached is None and memo.offered == offered and not view.body_limits:
            if key is None:
                key = self._body_key(view)
            if memo.put(
                key, MEMO_BODY, frozen(found), work.values - before_values,
                work.chars - before_chars, size,
            ):  # fmt: skip
                self._sightings.remembered(fingerprint)

    def _body_key(self, view: RequestView) -> _BodyKey:
        """The key the body of `view` is remembered whole by."""
        limits = view.limits
        under = self._under
        if under is None or under.limits is not limits:
            under = self._under = _UnderLimits(limits)
        request = view.request
        return request.body, request.body_truncated, view.body_head, under

    def _scan_body(
        self, values: ValueScanner, sources: dict[str, int], hits: set[str], work: WorkCount
    ) -> None:
        """Add the hits of the body's values (`sources`, see `_body_sources`) in order, as far
        as they fit the work limits, all in one call of the value scanner (which remembers the
        short values it scanned)."""
        found, count, chars, stop = values.scan_sources(sources, self.memo, *work.room)
        hits |= found
        work.add(count, chars, STOPS[stop])

    def _scan_json_body(
        self, values: ValueScanner, view: RequestView, hits: set[str], work: WorkCount
    ) -> bool:
        """Add the hits of a JSON body not parsed yet, walked and scanned in one call of the
        value scanner (`scan_json`: the values `_body_sources` would give, in the same order,
        without a string for each value remembered); the body's fields are made only if
        something reads them. False, with nothing scanned, for any other body, for one that is not
        JSON (its text is then scanned), and for one the walk leaves to `json.loads` (then its
        fields are scanned as parsed)."""
        if view.has_parsed_body or not is_json(view.content_type):
            return False
        data = view.decoded.data
        if not data:
            return False
        limits = view.limits
        text = view.body_text if self._text_bit else ""
        status, count, chars, stop = values.scan_json(
            hits, self.memo, data, text, self._text_bit, self._names_bit, self._values_bit,
            limits.waf_max_values, limits.waf_max_body_depth, limits.waf_max_transformed_chars,
            *work.room,
        )  # fmt: skip
        match JSON_WALKS[status]:
            case JsonWalk.INVALID:
                view.body_parsed(not_json())  # its text is scanned as parsed, not walked again
                return False
            case JsonWalk.UNDECIDED:
                return False
            case walk:
                view.body_parsed(ParsedBody.walked_json(data, walk, limits))
                work.add(count, chars, STOPS[stop])
                return True

    def _body_sources(self, view: RequestView) -> dict[str, int]:
        """The distinct values of the body targets with the mask of their targets, in the order
        of the body: its text, then each field's name and value in turn (so a limit cuts the
        body at one place, not every name before any value), then file names."""
        sources: dict[str, int] = {}
        seen = sources.get
        pairs = self._names_bit and self._values_bit and view.body.format in _FORMS
        for bit, extract in self._body_extractors:
            if pairs and bit & (self._names_bit | self._values_bit):
                continue
            if bit == self._filenames_bit:
                continue
            for value in extract(view):
                sources[value] = seen(value, 0) | bit
        if pairs:
            add_fields(sources, view.body.fields, self._names_bit, self._values_bit)
        if self._filenames_bit:
            for value in view.filenames:
                sources[value] = seen(value, 0) | self._filenames_bit
        return sources

    def _clear_memos(self) -> None:
        """Forget every memoised value, part and request (tests use it to scan from scratch)."""
        self.memo.clear()
        self._sightings = BodySightings()
