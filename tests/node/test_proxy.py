"""The reverse proxy against a real origin: keep-alive, bodies, framing and headers."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from failsmall.model import BodyOverBuffer
from tests.node.conftest import (
    CannedNode,
    Keys,
    OriginServer,
    StartNode,
    WatchDir,
    blocking,
    fast_limits,
    make_bundle,
    raw_exchange,
    ready_node,
    serving,
)


def headers_seen(response: httpx.Response) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in response.json()["headers"]:
        out.setdefault(name.lower(), []).append(value)
    return out


async def test_get_and_post_over_one_keepalive_connection(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin)
    base = f"http://127.0.0.1:{node.port}"
    limits = httpx.Limits(max_connections=1)
    async with httpx.AsyncClient(base_url=base, limits=limits) as client:
        for i in range(20):
            got = await client.get("/hello")
            assert got.status_code == 200 and got.text == "hello"
            posted = await client.post("/echo", content=b"x" * i)
            assert posted.status_code == 200
            assert posted.json()["body_len"] == i
    assert origin.requests == 40
    assert len(node.ctx.connections) <= 1
    # The node reused pooled upstream connections instead of one per request.
    assert len(origin.peers) <= 2


async def test_chunked_request_and_response(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin)

    async def parts() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"a" * 1000

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        sent = await client.post("/echo", content=parts())
        assert sent.status_code == 200
        assert sent.json()["body_len"] == 10_000
        assert sent.json()["chunked"] is True
        got = await client.get("/big", params={"n": "300000", "chunked": "1"})
        assert got.status_code == 200
        assert got.headers["transfer-encoding"] == "chunked"
        assert len(got.content) == 300_000


async def test_large_bodies_stream_both_ways(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(
        start_node, watch, keys, origin, limits=fast_limits(waf_body_buffer=64 * 1024)
    )
    body = bytes(range(256)) * (12 * 1024)  # 3 MiB, far past the 64 KiB WAF buffer
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}", timeout=20) as client:
        sent = await client.post("/echo", content=body)
        assert sent.status_code == 200, sent.text
        assert sent.json()["body_sha256"] == hashlib.sha256(body).hexdigest()
        got = await client.get("/big", params={"n": str(5 * 1024 * 1024)})
        assert got.status_code == 200
        assert len(got.content) == 5 * 1024 * 1024


async def test_body_past_the_waf_buffer_is_rejected_when_configured(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(
        start_node,
        watch,
        keys,
        origin,
        limits=fast_limits(waf_body_buffer=4096, body_over_buffer=BodyOverBuffer.REJECT),
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        small = await client.post("/echo", content=b"y" * 4000)
        assert small.status_code == 200
    answer = await raw_exchange(
        node.port,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"1400\r\n"
        + b"z" * 0x1400
        + b"\r\n0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413 ")


async def test_hop_by_hop_headers_are_removed_and_forwarding_headers_added(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin)
    request = (
        b"GET /echo?q=1 HTTP/1.1\r\nHost: shop.example\r\n"
        b"Connection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\n"
        b"TE: trailers\r\nUpgrade: websocket\r\nProxy-Authorization: Basic Zm9v\r\n"
        b"Proxy-Connection: keep-alive\r\nX-Forwarded-For: 203.0.113.9\r\n"
        b"X-Request-Id: client-id-42\r\nX-End-To-End: kept\r\n\r\n"
    )
    raw = await raw_exchange(node.port, request, timeout_s=1.0)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"X-Request-Id: client-id-42" in head
    assert b"Via: 1.1 failsmall" in head
    response = httpx.Response(200, content=body)
    seen = headers_seen(response)
    for name in ("x-hop", "keep-alive", "te", "upgrade", "proxy-authorization", "proxy-connection"):
        assert name not in seen, name
    assert seen["x-end-to-end"] == ["kept"]
    assert seen["x-forwarded-for"] == ["203.0.113.9, 127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == ["shop.example"]
    assert seen["x-request-id"] == ["client-id-42"]
    assert seen["via"] == ["1.1 failsmall"]
    assert response.json()["path"] == "/echo?q=1"


async def test_hop_by_hop_response_headers_are_removed(canned_node: CannedNode) -> None:
    async with canned_node(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Private\r\n"
        b"X-Private: 1\r\nKeep-Alive: timeout=5\r\nProxy-Authenticate: Basic\r\n"
        b"X-Public: 2\r\n\r\nok"
    ) as node:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
            got = await client.get("/")
        assert got.status_code == 200 and got.text == "ok"
        assert got.headers["x-public"] == "2"
        for name in ("x-private", "keep-alive", "proxy-authenticate"):
            assert name not in got.headers
        generated = got.headers["x-request-id"]
        assert generated and generated != "client-id-42"


async def test_pipelined_requests_are_answered_in_order(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin)
    one = b"GET /slow?s=0.2 HTTP/1.1\r\nHost: a\r\n\r\n"
    two = b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    raw = await raw_exchange(node.port, one + two)
    assert raw.count(b"HTTP/1.1 200 OK") == 2
    assert raw.index(b"slow") < raw.index(b"hello")


async def test_head_request_gets_no_body(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        head = await client.head("/big", params={"n": "5000"})
        assert head.status_code == 200
        assert head.headers["content-length"] == "5000"
        assert head.content == b""
        after = await client.get("/hello")
        assert after.text == "hello"


async def test_cacheable_response_is_served_from_cache(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        first = await client.get("/cached")
        second = await client.get("/cached")
    assert first.status_code == second.status_code == 200
    assert second.text == first.text
    assert second.headers.get("x-cache") == "HIT"
    assert origin.requests == 1


async def test_no_bundle_means_503_with_a_reason(start_node: StartNode) -> None:
    node = await start_node()
    async with httpx.AsyncClient() as client:
        got = await client.get(f"http://127.0.0.1:{node.port}/")
        assert got.status_code == 503
        assert "not received a configuration bundle" in got.text
        ready = await client.get(f"http://127.0.0.1:{node.admin_port}/readyz")
        assert ready.status_code == 503


async def test_unknown_host_gets_404(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    from failsmall.model import Route

    node = await ready_node(
        start_node, watch, keys, origin, routes=[Route(host="shop.example", origin="web")]
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        miss = await client.get("/hello", headers={"Host": "other.example"})
        hit = await client.get("/hello", headers={"Host": "shop.example"})
    assert miss.status_code == 404 and "no route" in miss.text
    assert hit.status_code == 200


async def test_origin_body_ended_by_close_is_rechunked_for_the_client(
    canned_node: CannedNode,
) -> None:
    async with (
        canned_node(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end") as node,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client,
    ):
        for _ in range(2):  # the client connection stays usable
            got = await client.get("/")
            assert got.status_code == 200
            assert got.text == "until the end"
            assert got.headers["transfer-encoding"] == "chunked"


async def test_engine_decisions_block_challenge_abort_and_delay(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    from failsmall.model import (
        BlockAction,
        ChallengeAction,
        FaultConfig,
        Phase,
        Rule,
        Ruleset,
    )

    rules = Ruleset(
        id="custom",
        rules=[
            Rule(
                id="block-admin",
                expression='http.request.uri.path.startsWith("/admin")',
                action=BlockAction(status=451),
            ),
            Rule(
                id="challenge-login",
                expression='http.request.uri.path == "/login"',
                action=ChallengeAction(),
            ),
            Rule(
                id="inspect-body",
                expression='http.request.body.raw.contains("attack-marker")',
                action=BlockAction(status=403),
            ),
        ],
    )
    node = await ready_node(
        start_node,
        watch,
        keys,
        origin,
        rulesets=[rules],
        phases={Phase.CUSTOM: "custom"},
        limits=fast_limits(waf_body_buffer=4096),
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        blocked = await client.get("/admin/users")
        assert blocked.status_code == 451
        challenged = await client.get("/login")
        assert challenged.status_code == 403
        assert challenged.headers["x-failsmall-challenge"] == "1"
        attack = await client.post("/echo", content=b"a" * 1000 + b"attack-marker")
        assert attack.status_code == 403
        # Past the inspection buffer the marker is not seen (inspect_partial).
        hidden = await client.post("/echo", content=b"a" * 8000 + b"attack-marker")
        assert hidden.status_code == 200
        assert (await client.get("/hello")).status_code == 200
    assert origin.requests == 2

    faulty = keys.sign(
        make_bundle(
            origin.url,
            fault=FaultConfig(abort_percent=100, abort_status=503, delay_percent=100, delay_ms=300),
        )
    )
    watch.publish(faulty)
    await serving(node, faulty.digest)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        aborted = await client.get("/hello")
        assert aborted.status_code == 503
        assert loop.time() - started >= 0.3


async def test_http10_client_without_keepalive(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    node = await ready_node(start_node, watch, keys, origin)
    raw = await raw_exchange(node.port, b"GET /big?n=100&chunked=1 HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert b"Transfer-Encoding" not in head
    assert len(body) == 100


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "status"),
    [
        (["127.0.0.0/8"], "203.0.113.9", 403),  # behind a trusted balancer: the listed client
        (["127.0.0.0/8"], "203.0.113.9, 198.51.100.7", 200),  # a forged hop is not believed
        ([], "203.0.113.9", 200),  # no trusted proxies: X-Forwarded-For is only forwarded
    ],
    ids=["trusted-peer", "forged-hop", "untrusted-peer"],
)
async def test_behind_trusted_proxies_rules_see_the_forwarded_client(
    start_node: StartNode,
    watch: WatchDir,
    keys: Keys,
    origin: OriginServer,
    trusted: list[str],
    forwarded_for: str,
    status: int,
) -> None:
    node = await ready_node(
        start_node,
        watch,
        keys,
        origin,
        **blocking("block-bad", 'ip_in_list(ip.src, "bad")'),
        ip_lists={"bad": ["203.0.113.9"]},
        trusted_proxies=trusted,
    )
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{node.port}") as client:
        got = await client.get("/echo", headers={"X-Forwarded-For": forwarded_for})
    assert got.status_code == status
    if status == 200:  # the origin sees the chain with this hop appended
        assert headers_seen(got)["x-forwarded-for"] == [f"{forwarded_for}, 127.0.0.1"]


async def test_requests_read_whole_then_by_llhttp_on_one_connection(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer
) -> None:
    """A connection's plain requests are read whole until one is not (split over two reads):
    from then on llhttp reads every request, starting from that one, and the origin sees
    each request as it was sent."""
    import json

    import h11

    node = await ready_node(start_node, watch, keys, origin)
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    client = h11.Connection(h11.CLIENT)

    async def answer() -> tuple[int, bytes]:
        status, body = 0, b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(await asyncio.wait_for(reader.read(65536), 10))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if client.our_state is h11.DONE and client.their_state is h11.DONE:
                    client.start_next_cycle()
                return status, body

    async def send(*pieces: bytes) -> dict[str, object]:
        # h11 is told what was sent, so that it reads the answer; the bytes are ours.
        head, _, body = b"".join(pieces).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        method, target, _ = lines[0].split(b" ")
        headers = [(n, v) for n, _, v in (line.partition(b": ") for line in lines[1:])]
        client.send(h11.Request(method=method, target=target, headers=headers))
        if body:
            client.send(h11.Data(data=body))
        client.send(h11.EndOfMessage())
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.05)
        status, got = await answer()
        assert status == 200
        seen: dict[str, object] = json.loads(got)
        return seen

    try:
        whole = await send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        assert whole["body_len"] == 3 and whole["method"] == "POST"
        (conn,) = node.ctx.connections
        assert conn.llhttp_fresh  # read whole
        split = await send(b"GET /echo?n=1 HT", b"TP/1.1\r\nHost: a\r\nX-Split: yes\r\n\r\n")
        assert split["path"] == "/echo?n=1"
        assert ["X-Split", "yes"] in split["headers"]  # type: ignore[operator]
        assert not conn.llhttp_fresh
        after = await send(b"POST /echo?n=2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nxy")
        assert after["path"] == "/echo?n=2" and after["body_len"] == 2
        last = await send(b"GET /echo?n=3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert last["path"] == "/echo?n=3"
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed after the last
    finally:
        writer.close()
    assert origin.requests == 4
