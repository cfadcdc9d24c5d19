"""The node reads a message that arrives whole in one read by one compiled call, and anything
else with llhttp. Both readers must mean the same: each request here is sent whole, then split
in two at every offset (so llhttp reads it), and each origin response is sent whole, then split
at every offset; the origin records the bytes it received and the client those it got back,
and a test fails exactly when a split run and the whole run differ in either.

The bundle blocks requests by query, header, host, method and body, so that what the engine
saw is part of what the client gets back: a field read differently shows as a different answer.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import h11
import pytest

from failsmall.model import BlockAction, Phase, Rule, Ruleset
from failsmall.node.server import EdgeNode
from tests.node.conftest import Keys, StartNode, WatchDir, make_bundle, serving

PAUSE_S = 0.005
"""Between the two pieces of a split message: long enough for the reader to take the first
piece alone in one read (the node and this test share one event loop)."""

BODY_RULE = 'http.request.body.raw.contains("evil")'
RULES = [
    Rule(id="q", expression='http.request.uri.query.contains("evil")', action=BlockAction()),
    Rule(id="ua", expression='http.user_agent.contains("evil")', action=BlockAction(status=406)),
    Rule(id="host", expression='http.host == "blocked.test"', action=BlockAction(status=421)),
    Rule(id="m", expression='http.request.method == "DELETE"', action=BlockAction(status=405)),
    Rule(id="b", expression=BODY_RULE, action=BlockAction(status=451)),
]
BUNDLE: dict[str, Any] = {
    "rulesets": [Ruleset(id="custom", rules=RULES)],
    "phases": {Phase.CUSTOM: "custom"},
}

# The origin's answers, by the last segment of the request's path.
ANSWERS: dict[bytes, bytes] = {
    b"plain": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    b"empty": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"listed": (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nX-Kept: k\r\n"
        b"Content-Length: 2\r\n\r\nok"
    ),
    b"chunked": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
    ),
    b"eof": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the origin closes",
    b"closing": b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye",
    b"nocontent": b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n",
    b"notmodified": b'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n',
    b"continue": (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nContent-Length: 7\r\nLocation: /x\r\n\r\ncreated"
    ),
    b"head": b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/html\r\n\r\n",
    b"teapot": b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 4\r\n\r\ntea!",
}
CLOSES = {b"eof", b"closing"}


@dataclass
class RecordingOrigin:
    """A raw HTTP/1.1 origin: answers each request with `ANSWERS` by the last segment of its
    path (the head answer to HEAD), whole or split at `split_at`, and records every byte it
    received, in order."""

    split_at: int | None = None
    received: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                body = await self._body(reader, head)
                self.received.append(head + b"|" + body)
                method, target = head.split(b" ", 2)[:2]
                name = b"head" if method == b"HEAD" else target.split(b"?")[0].rsplit(b"/")[-1]
                answer = ANSWERS.get(name, ANSWERS[b"plain"])
                if self.split_at is None:
                    writer.write(answer)
                else:
                    writer.write(answer[: self.split_at])
                    await writer.drain()
                    await asyncio.sleep(PAUSE_S)
                    writer.write(answer[self.split_at :])
                await writer.drain()
                if name in CLOSES:
                    return
        finally:
            writer.close()

    @staticmethod
    async def _body(reader: asyncio.StreamReader, head: bytes) -> bytes:
        lower = head.lower()
        found = re.search(rb"\r\ncontent-length: *(\d+)", lower)
        if found:
            return await reader.readexactly(int(found.group(1)))
        if b"\r\ntransfer-encoding: chunked" in lower:
            return dechunked(await reader.readuntil(b"\r\n0\r\n\r\n"))
        return b""


def dechunked(data: bytes) -> bytes:
    """The content of a chunked body (without trailers): how the node chunks a body it passes
    on follows the reads it arrived in, which is not what these tests compare."""
    content, at = b"", 0
    while True:
        end = data.index(b"\r\n", at)
        size = int(data[at:end], 16)
        if size == 0:
            return content
        content += data[end + 2 : end + 2 + size]
        at = end + 2 + size + 2


@pytest.fixture
async def recording_origin() -> AsyncIterator[RecordingOrigin]:
    origin = RecordingOrigin()
    origin.server = await asyncio.start_server(origin.serve, "127.0.0.1", 0)
    yield origin
    origin.server.close()
    await origin.server.wait_closed()


@pytest.fixture
async def node(
    recording_origin: RecordingOrigin, start_node: StartNode, watch: WatchDir, keys: Keys
) -> EdgeNode:
    """A node in front of `recording_origin` (set up first, so that it stops last, once the
    node has closed its connections)."""
    started = await start_node()
    await serving(started, watch.publish(keys.sign(make_bundle(recording_origin.url, **BUNDLE))))
    return started


_REQUEST_ID = re.compile(rb"\b([0-9a-f]{12})-[0-9a-f]+\b")


def normalized(data: bytes) -> bytes:
    """`data` with the request ids the node numbers itself (`<prefix>-<n>`) made alike."""
    return _REQUEST_ID.sub(rb"\1-n", data)


Answer = tuple[object, ...]


async def exchange(
    port: int, request: bytes, methods: list[bytes], split_at: int | None
) -> list[Answer]:
    """Send `request` (whole, or in two pieces at `split_at`) and read the answers to the
    requests it holds (`methods`, in order) until the last or until the node closes: each
    interim and final response head (version, status, reason, headers as sent) and body
    (chunks joined: the node chunks a body as its pieces arrive), and how the exchange ended."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if split_at is None:
            writer.write(request)
        else:
            writer.write(request[:split_at])
            await writer.drain()
            await asyncio.sleep(PAUSE_S)
            writer.write(request[split_at:])
        await writer.drain()
        client = h11.Connection(h11.CLIENT)
        answers: list[Answer] = []
        for method in methods:
            client.send(h11.Request(method=method, target="/", headers=[("Host", "a")]))
            client.send(h11.EndOfMessage())
            body = b""
            while True:
                event = client.next_event()
                if event is h11.NEED_DATA:
                    client.receive_data(await asyncio.wait_for(reader.read(65536), 10))
                elif isinstance(event, h11.InformationalResponse | h11.Response):
                    headers = [(n, normalized(v)) for n, v in event.headers.raw_items()]
                    answers.append((event.http_version, event.status_code, event.reason, headers))
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    answers.append((body, "end"))
                    break
                else:
                    answers.append((body, repr(event)))
                    return answers
            if client.our_state is h11.MUST_CLOSE or client.their_state is h11.MUST_CLOSE:
                answers.append(("closes",))
                break
            client.start_next_cycle()
        return answers
    finally:
        writer.close()


def get(path: bytes, *headers: bytes, method: bytes = b"GET", version: bytes = b"1.1") -> bytes:
    head = b"%s %s HTTP/%s\r\n" % (method, path, version)
    return head + b"".join(h + b"\r\n" for h in headers) + b"\r\n"


def post(path: bytes, body: bytes, *headers: bytes) -> bytes:
    return get(path, *headers, b"Content-Length: %d" % len(body), method=b"POST") + body


REQUESTS: dict[str, tuple[bytes, list[bytes]]] = {
    "get": (get(b"/a/plain?x=1&y=2", b"Host: site.test", b"User-Agent: t/1"), [b"GET"]),
    "get blocked by query": (get(b"/a/plain?q=evil", b"Host: site.test"), [b"GET"]),
    "get blocked by header": (get(b"/plain", b"Host: s", b"User-Agent: evil/1"), [b"GET"]),
    "get blocked by host": (get(b"/plain", b"Host: blocked.test"), [b"GET"]),
    "delete blocked": (get(b"/plain", b"Host: s", method=b"DELETE"), [b"DELETE"]),
    "connection close": (get(b"/plain", b"Host: s", b"Connection: close"), [b"GET"]),
    "http/1.0 keep-alive": (get(b"/plain", b"Connection: keep-alive", version=b"1.0"), [b"GET"]),
    "head": (get(b"/page", b"Host: s", method=b"HEAD"), [b"HEAD"]),
    "forwarded, own id, hop-by-hop": (
        get(
            b"/a/listed",
            b"Host: s",
            b"X-Forwarded-For: 10.0.0.1",
            b"X-Request-Id: client-id.1",
            b"Keep-Alive: timeout=5",
            b"Proxy-Authorization: x",
            b"Via: 1.0 other",
        ),
        [b"GET"],
    ),
    "post": (post(b"/submit/plain", b"a=1&b=2", b"Host: s"), [b"POST"]),
    "post blocked by body": (post(b"/submit/plain", b"a=evil", b"Host: s"), [b"POST"]),
    "post expecting 100-continue": (
        post(b"/submit/continue", b"payload", b"Host: s", b"Expect: 100-continue"),
        [b"POST"],
    ),
    "post chunked": (
        get(b"/up/plain", b"Host: s", b"Transfer-Encoding: chunked", method=b"POST")
        + b"5\r\nhello\r\n0\r\n\r\n",
        [b"POST"],
    ),
    "pipelined": (
        get(b"/one/plain", b"Host: s")
        + post(b"/two/teapot", b"xy", b"Host: s")
        + get(b"/3", b"Host: s"),
        [b"GET", b"POST", b"GET"],
    ),
}


async def both_ways(
    node: EdgeNode,
    origin: RecordingOrigin,
    request: bytes,
    methods: list[bytes],
    split_at: int | None,
) -> tuple[bytes, list[Answer]]:
    """What the origin received and what the client got back."""
    origin.received.clear()
    answers = await exchange(node.port, request, methods, split_at)
    return normalized(b"".join(origin.received)), answers


@pytest.mark.parametrize("name", list(REQUESTS))
async def test_a_request_split_anywhere_is_read_as_when_it_arrives_whole(
    node: EdgeNode, recording_origin: RecordingOrigin, name: str
) -> None:
    request, methods = REQUESTS[name]
    whole = await both_ways(node, recording_origin, request, methods, None)
    ends = [answer[1] for answer in whole[1] if len(answer) == 2]
    assert ends == ["end"] * len(methods), whole  # every request answered in full
    for offset in range(1, len(request)):
        split = await both_ways(node, recording_origin, request, methods, offset)
        assert split == whole, f"split at {offset}: {request[:offset]!r} | {request[offset:]!r}"


@pytest.mark.parametrize("name", [name.decode() for name in ANSWERS])
async def test_a_response_split_anywhere_is_passed_on_as_when_it_arrives_whole(
    node: EdgeNode, recording_origin: RecordingOrigin, name: str
) -> None:
    method = b"HEAD" if name == "head" else b"GET"
    request = get(b"/r/" + name.encode(), b"Host: s", method=method)
    recording_origin.split_at = None
    whole = await both_ways(node, recording_origin, request, [method], None)
    answer = ANSWERS[name.encode()]
    for offset in range(1, len(answer)):
        recording_origin.split_at = offset
        split = await both_ways(node, recording_origin, request, [method], None)
        assert split == whole, f"origin's answer split at {offset}: {answer[:offset]!r}"
