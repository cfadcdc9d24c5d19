from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

_T = TypeVar("_T", bound=tuple[object, ...])

HS_VERSION: str
HS_FLAG_CASELESS: int
HS_FLAG_DOTALL: int
HS_FLAG_SINGLEMATCH: int
HS_FLAG_UTF8: int
HS_FLAG_UCP: int
MEMO_ARG_PART: int
MEMO_COOKIE_PART: int
MEMO_HEADER: int
MEMO_BODY: int
MEMO_MAX_VALUE: int
MEMO_ENTRY_OVERHEAD: int
MEMO_BYTES_PER_SIGHTING: int
MEMO_MIN_SIGHTINGS: int
MEMO_TEXT_KEY: tuple[int, int]
HEAD_TARGET_BITS: dict[str, int]

class CompileError(ValueError): ...

_Known = tuple[frozenset[str], int, int]

class Memo:
    max_bytes: int
    @property
    def size(self) -> int: ...
    @property
    def offered(self) -> int: ...
    @property
    def sighting_bits(self) -> int: ...
    def __init__(self, max_bytes: int) -> None: ...
    def __len__(self) -> int: ...
    def get(self, key: Hashable, kind: int, /) -> _Known | None: ...
    def put(
        self, key: Hashable, kind: int, hits: frozenset[str], values: int, chars: int, size: int, /
    ) -> bool: ...
    def discard(self, key: Hashable, kind: int, /) -> None: ...
    def items(self) -> list[tuple[Hashable, int, _Known, int]]: ...
    def clear(self) -> None: ...

_Step = tuple[int, str, Callable[[str], str], int]

class ValueScanner:
    def __init__(
        self,
        expressions: list[bytes],
        flags: list[int],
        owners: list[str],
        targets: list[int],
        chains: list[int],
        chain_table: list[tuple[int, int, int, list[_Step]]],
        features: Callable[[str, int], int],
        subsets: list[tuple[int, int, list[int]]],
        *,
        workers: int = 1,
    ) -> None: ...
    def scan_value(self, value: str, targets: int) -> tuple[frozenset[str], int]: ...
    def scan(self, result: str, targets: int, chains: int) -> frozenset[str]: ...
    def scan_sources(
        self, sources: dict[str, int], memo: Memo, room_values: int, room_chars: int, /
    ) -> tuple[set[str], int, int, int]: ...
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
    ) -> tuple[int, int, int, int]: ...
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
    ) -> tuple[int, int, int]: ...

def index_headers(
    headers: tuple[tuple[str, str], ...],
) -> tuple[dict[str, list[str]], list[str]]: ...
def cache_headers(
    headers: Sequence[tuple[bytes, bytes]], /
) -> tuple[tuple[str, ...], tuple[str, ...], str | None, bool]: ...
def has_header(headers: tuple[tuple[str, str], ...], name: str, /) -> bool: ...
def tuple_of(cls: type[_T], /, *items: object) -> _T: ...
def features(value: str, wanted: int, reference: Callable[[str, int], int]) -> int: ...
def transform(name: str, value: str, reference: Callable[[str], str]) -> str: ...
def text_hash(text: str, /) -> int: ...
def utf8(text: str) -> bytes: ...
def utf8_replace(data: bytes) -> str: ...
def nfkc(text: str) -> str: ...
def flatten_json(
    document: object,
    max_values: int,
    max_depth: int,
    max_name_chars: int,
    dumps: Callable[[object], str],
) -> tuple[list[tuple[str, str]], int]: ...
def json_fields(
    body: bytes, max_values: int, max_depth: int, max_name_chars: int
) -> tuple[list[tuple[str, str]], int]: ...
def json_pruned(body: bytes, max_depth: int) -> str: ...
def add_fields(
    sources: dict[str, int], fields: Sequence[tuple[str, str]], names: int, values: int
) -> None: ...
