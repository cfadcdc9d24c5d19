from collections.abc import Sequence

from failsmall.node.framing import BodyFraming, ResponseHead

def bind(
    response_head: type[ResponseHead],
    as_sent: BodyFraming,
    chunked: BodyFraming,
    close: BodyFraming,
    status_lines: dict[int, bytes],
    via: bytes,
    upgrade_headers: bytes,
    /,
) -> None: ...
def response_head(
    status: int,
    headers: Sequence[tuple[bytes, bytes]],
    head_request: bool,
    http10: bool,
    keep_alive: bool,
    request_id: bytes,
    bundle_tag: bytes,
    /,
) -> ResponseHead: ...
def request_head(
    method: bytes,
    url: bytes,
    host: bytes,
    authority: bytes,
    forward: Sequence[tuple[bytes, bytes]],
    xff: bytes,
    client_ip: bytes,
    request_id: bytes,
    websocket: bool,
    chunked: bool,
    content_length: int,
    /,
) -> bytes: ...
def latin1_headers(headers: Sequence[tuple[bytes, bytes]], /) -> tuple[tuple[str, str], ...]: ...
def whole_response(data: bytes, /) -> tuple[int, list[tuple[bytes, bytes]], bool, bytes] | None: ...

_Noted = tuple[list[tuple[bytes, bytes]], bytes, int, int, bytes, bytes, bool]

def whole_request(
    data: bytes, /
) -> (
    tuple[
        bytes,
        bytes,
        list[tuple[bytes, bytes]],
        bool,
        bool,
        bytes,
        int,
        _Noted,
        str,
        str,
        tuple[tuple[str, str], ...],
    ]
    | None
): ...
