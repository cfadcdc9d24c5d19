from collections.abc import Callable, Hashable, Mapping, Sequence

HS_VERSION: str
HS_FLAG_CASELESS: int
HS_FLAG_DOTALL: int
HS_FLAG_SINGLEMATCH: int
HS_FLAG_UTF8: int
HS_FLAG_UCP: int

class CompileError(ValueError): ...

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
    ) -> None: ...
    def scan_value(self, value: str, targets: int) -> tuple[frozenset[str], int]: ...
    def scan(self, result: str, targets: int, chains: int) -> frozenset[str]: ...
    def scan_sources(
        self,
        sources: dict[str, int],
        memo: Mapping[Hashable, tuple[tuple[frozenset[str], int, int], int]],
        room_values: int,
        room_chars: int,
    ) -> tuple[
        set[str], int, int, tuple[int, int] | None, list[tuple[str, int, frozenset[str], int]]
    ]: ...

def features(value: str, wanted: int, reference: Callable[[str, int], int]) -> int: ...
def transform(name: str, value: str, reference: Callable[[str], str]) -> str: ...
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
def add_fields(
    sources: dict[str, int], fields: Sequence[tuple[str, str]], names: int, values: int
) -> None: ...
