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
cookie, path id and query values are what is scanned.

So most values cost one scan, whatever the number of rules, targets and chains, and no value is
transformed twice the same way. A value that is not ASCII is also scanned in its NFKC form, so a
payload in full-width or other compatibility characters (`ＳＥＬＥＣＴ`) is caught as written.

Everything remembered lives in one `BoundedMemo`, which forgets its oldest entries a few at a
time when full, so a flood of unique values never makes every client pay for a cleared memo.
Each memo entry keeps the work its value cost (values, characters scanned), so the work counted
for a request, and whether it reached a limit of the bundle (see `failsmall.engine.work`), is
the same whether its parts were remembered or scanned.

Hyperscan only accepts patterns it can run in linear time; a pattern it refuses
(back-references, look-around, ...) is a build error, and there is no fallback to a
backtracking engine.
"""

from __future__ import annotations

import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import NamedTuple, Protocol

from failsmall.engine.native import add_fields
from failsmall.engine.request import BodyFormat, Request, RequestView, cookie_pair, form_pair
from failsmall.engine.signatures.compiled import (
    Chain,
    Pattern,
    SignatureCompileError,
    SourcesMemo,
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
from failsmall.engine.work import LimitReached, WorkCount
from failsmall.model.rules import SignatureMatch, Target

__all__ = ["SignatureCompileError", "SignatureScanner"]
#: Values and head parts up to this many characters are remembered.
MEMO_MAX_VALUE = 512
#: Whole requests are remembered too (a load tester, a retrying client), up to this size each:
#: a request's hits depend only on its method, path, query, headers and body.
MEMO_MAX_REQUEST = 16 * 1024
#: What the memo may hold, in (roughly) bytes of keys; past it the oldest entries go.
MEMO_BYTES = 8 * 1024 * 1024
#: The fixed cost of one memo entry, in the same rough bytes.
MEMO_ENTRY_OVERHEAD = 128
NO_HITS: frozenset[str] = frozenset()
_RequestKey = tuple[str, str, str, str, tuple[tuple[str, str], ...], bytes]
_PATH, _URI, _QUERY, _METHOD = (
    TARGET_BIT[t] for t in (Target.PATH, Target.URI, Target.QUERY, Target.METHOD)
)
_ARG_NAMES, _ARG_VALUES = TARGET_BIT[Target.ARG_NAMES], TARGET_BIT[Target.ARG_VALUES]
_HEADER_NAMES, _HEADER_VALUES = TARGET_BIT[Target.HEADER_NAMES], TARGET_BIT[Target.HEADER_VALUES]
_USER_AGENT, _REFERER = TARGET_BIT[Target.USER_AGENT], TARGET_BIT[Target.REFERER]
_COOKIE_NAMES, _COOKIE_VALUES = TARGET_BIT[Target.COOKIE_NAMES], TARGET_BIT[Target.COOKIE_VALUES]
_FROM_HEADERS = _HEADER_NAMES | _HEADER_VALUES | _USER_AGENT | _REFERER
_BODY_ARG_NAMES, _BODY_ARG_VALUES = (
    TARGET_BIT[Target.BODY_ARG_NAMES],
    TARGET_BIT[Target.BODY_ARG_VALUES],
)
_FILENAMES = TARGET_BIT[Target.FILENAMES]
#: Body formats whose fields are named: their names and values are inspected pair by pair.
_FORMS = frozenset({BodyFormat.URLENCODED, BodyFormat.JSON, BodyFormat.MULTIPART})


class Known(NamedTuple):
    """What scanning a value (or a head part, or a request) found and cost: the keys hit, the
    values it holds and the characters scanned for it, transforms included."""

    hits: frozenset[str]
    values: int
    chars: int


class ScanResult(NamedTuple):
    """The keys hit by a request, the work counted for it, and the limit that stopped the
    inspection if one did (then `hits` are those of the values inspected before)."""

    hits: frozenset[str]
    values: int
    chars: int
    reached: LimitReached | None


class BoundedMemo:
    """One memo for everything the scanner remembers, bounded by the size of its keys.

    When full, the oldest entries are forgotten one by one (insertion order), as many as make
    room for the new one: eviction is gradual, and a flood of unique values only pushes out the
    oldest entries instead of clearing everything at once.
    """

    __slots__ = ("_entries", "max_bytes", "size")

    def __init__(self, max_bytes: int = MEMO_BYTES) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        # An OrderedDict, not a dict: taking the oldest entry of a dict whose front was popped
        # again and again walks over every deleted slot (quadratic in a flood of values).
        self._entries: OrderedDict[Hashable, tuple[Known, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable) -> Known | None:
        entry = self._entries.get(key)
        return entry[0] if entry is not None else None

    def put(self, key: Hashable, known: Known, size: int) -> None:
        entries = self._entries
        cost = size + MEMO_ENTRY_OVERHEAD
        if cost > self.max_bytes or key in entries:
            return
        self.size += cost
        while self.size > self.max_bytes:
            self.size -= entries.popitem(last=False)[1][1]
        entries[key] = (known, cost)

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0

    @property
    def entries(self) -> Mapping[Hashable, tuple[Known, int]]:
        """What is remembered, by key: each entry's `Known` and its cost (read only)."""
        return self._entries


NOTHING = Known(NO_HITS, 0, 0)
# Memo keys: (value, targets) for a value (targets > 0), (part, _ARG_PART) for a raw query part,
# (part, _COOKIE_PART) for a raw cookie part, the (name, value) pair for a header, and a
# 6-tuple for a request: shapes that cannot collide.
_ARG_PART = 0
_COOKIE_PART = -1


class ValueScanner(Protocol):
    """Scans values as values of some targets (see `reference.ReferenceValueScanner`)."""

    def scan_value(self, value: str, targets: int) -> tuple[frozenset[str], int]: ...

    def scan_sources(
        self,
        sources: dict[str, int],
        memo: SourcesMemo,
        room_values: int,
        room_chars: int,
    ) -> SourcesScan: ...


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
        # targets), and the parts of a request head (see `_scan_head`), and whole requests.
        self.memo = BoundedMemo()
        self._head_mask = 0
        for target in self._targets:
            if target in HEAD_TARGETS:
                self._head_mask |= TARGET_BIT[target]
        # An empty body has no values for the body targets: they are not even looked at then.
        self._body_extractors = tuple(
            (TARGET_BIT[t], EXTRACTORS[t]) for t in self._targets if t in BODY_TARGETS
        )
        self._scan_value = values.scan_value if values is not None else _no_hits
        wanted = {bit for bit, _ in self._body_extractors}
        self._names_bit = _BODY_ARG_NAMES if _BODY_ARG_NAMES in wanted else 0
        self._values_bit = _BODY_ARG_VALUES if _BODY_ARG_VALUES in wanted else 0
        self._filenames_bit = _FILENAMES if _FILENAMES in wanted else 0

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
        return self._value_hits(value, TARGET_BIT[target]).hits

    def inspect(self, view: RequestView) -> ScanResult:
        """The keys whose match hit this request, the work counted, and the limit reached."""
        limits = view.limits
        work = WorkCount(limits.waf_max_values, limits.waf_max_transformed_chars)
        if self._values is None:
            return ScanResult(NO_HITS, 0, 0, None)
        request = view.request
        size = _size(request)
        key: _RequestKey | None = None
        if size <= MEMO_MAX_REQUEST:
            key = ("request", request.method, request.path, request.query, request.headers,
                   request.body)  # fmt: skip
            known = self.memo.get(key)
            if known is not None and work.fits(known.values, known.chars):
                return ScanResult(known.hits, known.values, known.chars, None)
        hits: set[str] = set()
        if self._scan_head(request, hits, work) and request.body and self._body_extractors:
            self._scan_body(self._values, self._body_sources(view), hits, work)
        result = frozenset(hits) if hits else NO_HITS
        if key is not None and work.reached is None:
            self.memo.put(key, Known(result, work.values, work.chars), size)
        return ScanResult(result, work.values, work.chars, work.reached)

    def _scan_body(
        self, values: ValueScanner, sources: dict[str, int], hits: set[str], work: WorkCount
    ) -> None:
        """Add the hits of the body's values (`sources`, see `_body_sources`) in order, as far
        as they fit the work limits, all in one call of the value scanner; then remember the
        short values it scanned."""
        found, count, chars, stopped, fresh = values.scan_sources(
            sources,
            self.memo.entries,
            work.max_values - work.values,
            work.max_chars - work.chars,
        )
        hits |= found
        work.values += count
        work.chars += chars
        if stopped is not None:
            fits = work.fits(*stopped)
            assert not fits, "scan_sources stopped at a value that fits"
        put = self.memo.put
        for value, targets, value_hits, value_chars in fresh:
            if len(value) <= MEMO_MAX_VALUE:
                put((value, targets), Known(value_hits, 1, value_chars), len(value))

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

    def _scan_head(self, request: Request, hits: set[str], work: WorkCount) -> bool:
        """Add the hits of the values of the head targets (every target but the body's); False
        when a work limit stopped it.

        A value's hits are the union of its hits as a value of each of its targets, so the
        parts of a request are memoised one by one, whatever else the request holds: the raw
        `name=value` parts of the query, each header's (name, value) pair, the raw parts of a
        Cookie header. A part seen before (a browser's headers, `theme=dark`) costs one lookup.
        """
        mask = self._head_mask
        value_hits = self._value_hits
        fits = work.fits
        query = request.query
        for bit, value in (
            (mask & _PATH, request.path),
            (mask & _URI, request.uri),
            (mask & _QUERY, query),
            (mask & _METHOD, request.method),
        ):
            if bit:
                found = value_hits(value, bit)
                if not fits(found.values, found.chars):
                    return False
                if found.hits:
                    hits.update(found.hits)
        memo = self.memo.get
        if query and mask & (_ARG_NAMES | _ARG_VALUES):
            for part in query.split("&"):
                if part:
                    found = memo((part, _ARG_PART)) or self._arg_part_hits(part)
                    if not fits(found.values, found.chars):
                        return False
                    if found.hits:
                        hits.update(found.hits)
        if request.headers and mask & (_FROM_HEADERS | _COOKIE_NAMES | _COOKIE_VALUES):
            for pair in request.headers:
                found = memo(pair) or self._header_hits(pair)
                if not fits(found.values, found.chars):
                    return False
                if found.hits:
                    hits.update(found.hits)
        return True

    def _arg_part_hits(self, part: str) -> Known:
        """The hits of the name and value of one raw `name=value` part of the query."""
        name, value = form_pair(part)
        mask = self._head_mask
        found = NOTHING
        if mask & _ARG_NAMES:
            found = self._value_hits(name, _ARG_NAMES)
        if mask & _ARG_VALUES:
            found = _plus(found, self._value_hits(value, _ARG_VALUES))
        if len(part) <= MEMO_MAX_VALUE:
            self.memo.put((part, _ARG_PART), found, len(part))
        return found

    def _header_hits(self, pair: tuple[str, str]) -> Known:
        """The hits of one header: its lowercase name, and its value for the header value, user
        agent and referer targets, or, for a Cookie header, its cookies' names and values."""
        name, value = pair
        lower = name.lower()
        mask = self._head_mask
        found = NOTHING
        if mask & _HEADER_NAMES:
            found = self._value_hits(lower, _HEADER_NAMES)
        if lower == "cookie":  # matched parsed, through the cookie targets
            if mask & (_COOKIE_NAMES | _COOKIE_VALUES):
                for part in value.split(";"):
                    found = _plus(found, self._cookie_part_hits(part))
        else:
            bits = mask & _HEADER_VALUES
            if lower == "user-agent":
                bits |= mask & _USER_AGENT
            elif lower == "referer":
                bits |= mask & _REFERER
            if bits:
                found = _plus(found, self._value_hits(value, bits))
        if len(name) + len(value) <= MEMO_MAX_VALUE:
            self.memo.put(pair, found, len(name) + len(value))
        return found

    def _cookie_part_hits(self, part: str) -> Known:
        """The hits of the name and value of one raw `;`-separated part of a Cookie header."""
        key = (part, _COOKIE_PART)
        known = self.memo.get(key)
        if known is not None:
            return known
        found = NOTHING
        cookie = cookie_pair(part)
        if cookie is not None:
            mask = self._head_mask
            if mask & _COOKIE_NAMES:
                found = self._value_hits(cookie[0], _COOKIE_NAMES)
            if mask & _COOKIE_VALUES:
                found = _plus(found, self._value_hits(cookie[1], _COOKIE_VALUES))
        if len(part) <= MEMO_MAX_VALUE:
            self.memo.put(key, found, len(part))
        return found

    def _value_hits(self, value: str, targets: int) -> Known:
        """The hits of `value` as a value of `targets`, and its cost: memoised, or scanned (and
        memoised when short). An empty value has none. A value that is not ASCII is scanned as
        written and in its NFKC form."""
        if not value:
            return NOTHING
        key = (value, targets)
        found = self.memo.get(key)
        if found is None:
            hits, chars = self._scan_value(value, targets)
            if not value.isascii():
                folded = unicodedata.normalize("NFKC", value)
                if folded != value:
                    more, more_chars = self._scan_value(folded, targets)
                    hits, chars = hits | more, chars + more_chars
            found = Known(hits, 1, chars)
            if len(value) <= MEMO_MAX_VALUE:
                self.memo.put(key, found, len(value))
        return found

    def _clear_memos(self) -> None:
        """Forget every memoised value, part and request (tests use it to scan from scratch)."""
        self.memo.clear()


def _no_hits(value: str, targets: int) -> tuple[frozenset[str], int]:
    return NO_HITS, 0


def _plus(a: Known, b: Known) -> Known:
    """The hits and cost of two values together."""
    if not b.values:
        return a
    if not a.values:
        return b
    return Known(a.hits | b.hits if a.hits and b.hits else a.hits or b.hits,
                 a.values + b.values, a.chars + b.chars)  # fmt: skip


def _size(request: Request) -> int:
    """Roughly the bytes a request takes as a memo key: its parts and a fixed overhead."""
    header_chars = sum([len(name) + len(value) for name, value in request.headers])
    return 256 + len(request.path) + len(request.query) + len(request.body) + header_chars
