"""The compiled part of the engine (`_native.c` and `_jsonwalk.c`, linked to libhs): JSON bodies
and documents to fields, and the signature scanner's per-value work. It is built by `pip install`
(see `setup.py`); there is no fallback to the Python reference implementations, which tests
compare it with."""

from __future__ import annotations

try:
    from failsmall.engine import _native as extension
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "the engine's compiled part (src/failsmall/engine/_native.c) is not built: install a C "
        "compiler and the Hyperscan library and headers (Debian/Ubuntu: `apt-get install gcc "
        "libhyperscan-dev`), then reinstall the package (`pip install -e .` in a checkout)"
    ) from exc

add_fields = extension.add_fields
cache_headers = extension.cache_headers
flatten_json = extension.flatten_json
has_header = extension.has_header
index_headers = extension.index_headers
json_fields = extension.json_fields
json_pruned = extension.json_pruned
tuple_of = extension.tuple_of
Memo = extension.Memo
#: The kinds of memo key besides a value's (whose kind is its target mask, above 0).
MEMO_ARG_PART = extension.MEMO_ARG_PART
MEMO_COOKIE_PART = extension.MEMO_COOKIE_PART
MEMO_HEADER = extension.MEMO_HEADER
#: A whole body, with what reading it depends on (the signature scanner's `_BodyKey`).
MEMO_BODY = extension.MEMO_BODY
#: Values and head parts up to this many characters are remembered.
MEMO_MAX_VALUE = extension.MEMO_MAX_VALUE
#: The fixed cost of one memo entry, in the rough bytes a memo is bounded by.
MEMO_ENTRY_OVERHEAD = extension.MEMO_ENTRY_OVERHEAD
#: A memo's filter of keys offered once (a key is stored on its second offer) has a bit per
#: this many of its bytes, rounded up to a power of two, and at least `MEMO_MIN_SIGHTINGS`.
MEMO_BYTES_PER_SIGHTING = extension.MEMO_BYTES_PER_SIGHTING
MEMO_MIN_SIGHTINGS = extension.MEMO_MIN_SIGHTINGS
#: The key of the memo's hash of a str (`memo_text_hash`), drawn when the module is loaded.
MEMO_TEXT_KEY = extension.MEMO_TEXT_KEY

__all__ = [
    "MEMO_ARG_PART",
    "MEMO_BODY",
    "MEMO_BYTES_PER_SIGHTING",
    "MEMO_COOKIE_PART",
    "MEMO_ENTRY_OVERHEAD",
    "MEMO_HEADER",
    "MEMO_MAX_VALUE",
    "MEMO_MIN_SIGHTINGS",
    "MEMO_TEXT_KEY",
    "Memo",
    "add_fields",
    "cache_headers",
    "extension",
    "flatten_json",
    "has_header",
    "index_headers",
    "json_fields",
    "json_pruned",
    "tuple_of",
]
