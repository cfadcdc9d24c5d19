"""`bench/uvloop_forwarder.py` forwards what the proxy bench sends, and answers it correctly.

The forwarder runs as the bench runs it, in front of an origin in this test that records each
request it reads and answers with what it read (method, target, body length). One kept-alive
client connection sends a GET, a POST with an 8 KiB body, a HEAD, a GET answered in chunks, one
answered 204, and two GETs pipelined in one write. A response whose body ends when the origin
closes is passed on in chunks, and the next request goes on a new origin connection.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from failsmall.transport.natsd import free_port

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 5.0
CHUNKS = (b"first chunk, ", b"second, ", b"last")


@dataclass
class Origin:
    """Reads requests (Content-Length bodies only) and notes each as (method, target, body)."""

    seen: list[tuple[str, str, bytes]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    connections: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        while head := await read_head(reader):
            request_line, headers = head
            method, target, _ = request_line.split(" ")
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.seen.append((method, target, body))
            self.headers.append(headers)
            writer.write(answer(method, target, body))
            await writer.drain()
            if target == "/until-close":
                break
        writer.close()


def answer(method: str, target: str, body: bytes) -> bytes:
    echo = f"{method} {target} {len(body)}".encode()
    if target == "/chunked":
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in CHUNKS)
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    if target == "/until-close":  # a body ended by closing the connection
        return b"HTTP/1.1 200 OK\r\n\r\n" + echo
    if target == "/empty":
        return b"HTTP/1.1 204 No Content\r\nX-Echo: " + echo + b"\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-Echo: %s\r\n\r\n" % (len(echo), echo)
    return head if method == "HEAD" else head + echo


async def read_head(reader: asyncio.StreamReader) -> tuple[str, dict[str, str]] | None:
    """The start line and headers (names in lower case) of the next message; None at EOF."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        assert exc.partial == b"", f"a message cut short: {exc.partial!r}"
        return None
    start, *lines = raw[:-4].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, value = line.split(":", 1)
        headers[name.strip().lower()] = value.strip()
    return start, headers


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def read_response(reader: asyncio.StreamReader, method: str) -> Response:
    head = await asyncio.wait_for(read_head(reader), TIMEOUT_S)
    assert head is not None, "the forwarder closed the connection"
    status_line, headers = head
    status = int(status_line.split(" ")[1])
    body = b""
    if method == "HEAD" or status in (204, 304):
        pass
    elif "content-length" in headers:
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), TIMEOUT_S)
    else:
        assert headers.get("transfer-encoding") == "chunked", headers
        while size := int(await asyncio.wait_for(reader.readline(), TIMEOUT_S), 16):
            body += await asyncio.wait_for(reader.readexactly(size + 2), TIMEOUT_S)
            body = body[:-2]
        assert await reader.readexactly(2) == b"\r\n"
    return Response(status, headers, body)


def request(method: str, target: str, body: bytes = b"") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    head = f"{method} {target} HTTP/1.1\r\nHost: shop.example\r\nX-Kept: yes\r\n{length}"
    return (head + "Connection: keep-alive\r\n\r\n").encode() + body


@pytest.fixture
async def origin() -> AsyncIterator[tuple[Origin, int]]:
    recorded = Origin()
    server = await asyncio.start_server(recorded.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield recorded, port


@pytest.fixture
def forwarder_port(origin: tuple[Origin, int]) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, str(REPO / "bench" / "uvloop_forwarder.py"), str(port)]
    proc = subprocess.Popen([*command, f"http://127.0.0.1:{origin[1]}"])
    try:
        deadline = time.monotonic() + 15
        while True:
            assert proc.poll() is None, f"the forwarder exited with status {proc.returncode}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the forwarder did not listen within 15 s"
                time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


async def test_forwards_each_request_once_and_answers_in_order(
    origin: tuple[Origin, int], forwarder_port: int
) -> None:
    recorded, _ = origin
    reader, writer = await asyncio.open_connection("127.0.0.1", forwarder_port)
    post_body = bytes(range(256)) * 32  # 8 KiB
    sent = [
        ("GET", "/get", b""),
        ("POST", "/post", post_body),
        ("HEAD", "/head", b""),
        ("GET", "/chunked", b""),
        ("GET", "/empty", b""),
    ]
    responses = []
    for method, target, body in sent:
        writer.write(request(method, target, body))
        responses.append(await read_response(reader, method))
    pipelined = [("GET", "/pipelined-1", b""), ("GET", "/pipelined-2", b"")]
    writer.write(b"".join(request(*r) for r in pipelined))
    responses += [await read_response(reader, "GET") for _ in pipelined]
    writer.close()

    assert recorded.seen == [*sent, *pipelined]
    assert recorded.connections == 1  # one kept-alive connection to the origin
    for headers in recorded.headers:
        assert headers["host"] == "shop.example"
        assert headers["x-kept"] == "yes"
        assert "connection" not in headers  # hop-by-hop: not passed on
    statuses = [r.status for r in responses]
    assert statuses == [200, 200, 200, 200, 204, 200, 200]
    get, post, head, chunked, empty, first, second = responses
    assert get.body == b"GET /get 0"
    assert post.body == b"POST /post 8192"
    assert head.body == b"" and head.headers["content-length"] == "12"
    assert head.headers["x-echo"] == "HEAD /head 0"
    assert chunked.body == b"".join(CHUNKS)
    assert empty.body == b"" and empty.headers["x-echo"] == "GET /empty 0"
    assert (first.body, second.body) == (b"GET /pipelined-1 0", b"GET /pipelined-2 0")


async def test_a_body_ended_by_closing_is_chunked_and_the_origin_connection_reopened(
    origin: tuple[Origin, int], forwarder_port: int
) -> None:
    recorded, _ = origin
    reader, writer = await asyncio.open_connection("127.0.0.1", forwarder_port)
    writer.write(request("GET", "/until-close"))
    until_close = await read_response(reader, "GET")
    writer.write(request("GET", "/get"))
    after = await read_response(reader, "GET")
    writer.close()

    assert until_close.headers["transfer-encoding"] == "chunked"
    assert until_close.body == b"GET /until-close 0"
    assert after.body == b"GET /get 0"
    assert recorded.connections == 2
