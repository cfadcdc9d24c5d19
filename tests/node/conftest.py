"""Fixtures for the edge node: a real origin, signing keys, bundles and running nodes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.model import (
    BlockAction,
    Bundle,
    Limits,
    Origin,
    Phase,
    Route,
    Rule,
    Ruleset,
    SignedBundle,
    sign_bundle,
)
from failsmall.model.envelope import public_key_pem
from failsmall.node.config import NodeConfig
from failsmall.node.server import EdgeNode
from failsmall.transport.natsd import free_port


@dataclass
class OriginServer:
    """A real HTTP origin (aiohttp) with endpoints the proxy tests need."""

    port: int = 0
    requests: int = 0
    peers: set[tuple[str, int]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def origin_app(state: OriginServer) -> web.Application:
    async def count(request: web.Request) -> None:
        state.requests += 1
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            state.peers.add((peer[0], peer[1]))

    async def hello(request: web.Request) -> web.Response:
        await count(request)
        return web.Response(text="hello")

    async def echo_headers(request: web.Request) -> web.Response:
        await count(request)
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path_qs,
                "headers": [[k, v] for k, v in request.headers.items()],
                "body_len": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "chunked": request.headers.get("Transfer-Encoding", "") == "chunked",
            }
        )

    async def big(request: web.Request) -> web.StreamResponse:
        await count(request)
        size = int(request.query.get("n", "1000"))
        chunked = request.query.get("chunked") == "1"
        response = web.StreamResponse()
        if not chunked:
            response.content_length = size
        await response.prepare(request)
        block = bytes(range(256)) * 256
        sent = 0
        while sent < size:
            part = block[: min(len(block), size - sent)]
            await response.write(part)
            sent += len(part)
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.Response:
        await count(request)
        await asyncio.sleep(float(request.query.get("s", "1")))
        return web.Response(text="slow")

    async def cached(request: web.Request) -> web.Response:
        await count(request)
        return web.Response(
            text=f"cached body {state.requests}", headers={"Cache-Control": "max-age=60"}
        )

    async def websocket_echo(request: web.Request) -> web.WebSocketResponse:
        await count(request)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            if message.type is WSMsgType.TEXT:
                await ws.send_str(f"echo: {message.data}")
            elif message.type is WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
        return ws

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/ws", websocket_echo)
    app.router.add_get("/hello", hello)
    app.router.add_route("*", "/echo", echo_headers)
    app.router.add_get("/big", big)
    app.router.add_get("/slow", slow)
    app.router.add_get("/cached", cached)
    return app


@pytest.fixture
async def origin() -> AsyncIterator[OriginServer]:
    async with running_origin() as state:
        yield state


@contextlib.asynccontextmanager
async def running_origin(ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[OriginServer]:
    """The test origin (`origin_app`) on a free loopback port, over TLS with `ssl_context`."""
    state = OriginServer()
    runner = web.AppRunner(origin_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    server: Any = site._server
    state.port = server.sockets[0].getsockname()[1]
    try:
        yield state
    finally:
        await runner.cleanup()


@dataclass
class Keys:
    """A signing key and its public half on disk (what `--trust` points at)."""

    private: Ed25519PrivateKey
    public_path: Path

    def sign(self, bundle: Bundle) -> SignedBundle:
        return sign_bundle(bundle, self.private)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "trusted.pub"
    path.write_bytes(public_key_pem(key.public_key()))
    return Keys(key, path)


def make_bundle(origin_url: str, name: str = "test", **fields: Any) -> Bundle:
    values: dict[str, Any] = {
        "name": name,
        "origins": [Origin(id="web", url=origin_url)],
        "routes": [Route(origin="web")],
    }
    values.update(fields)
    return Bundle(**values)


def blocking(rule_id: str, expression: str, status: int = 403) -> dict[str, Any]:
    """Bundle fields for a custom ruleset of one rule blocking with `status` what `expression`
    matches (pass them on to `make_bundle` or `ready_node`)."""
    rule = Rule(id=rule_id, expression=expression, action=BlockAction(status=status))
    return {
        "rulesets": [Ruleset(id="custom", rules=[rule])],
        "phases": {Phase.CUSTOM: "custom"},
    }


def fast_limits(**overrides: Any) -> Limits:
    values: dict[str, Any] = {
        "header_timeout_s": 0.5,
        "body_timeout_s": 0.5,
        "upstream_connect_timeout_s": 1.0,
        "upstream_read_timeout_s": 0.5,
    }
    values.update(overrides)
    return Limits(**values)


class WatchDir:
    """The directory a node's DirectoryChannel watches; tests publish assignments into it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "bundles").mkdir(parents=True, exist_ok=True)
        self.revision = 0

    def publish_raw(self, digest: str, raw: bytes) -> None:
        (self.root / "bundles" / f"{digest}.json").write_bytes(raw)
        self.assign(digest)

    def publish(self, signed: SignedBundle) -> str:
        self.publish_raw(signed.digest, signed.to_bytes())
        return signed.digest

    def assign(self, digest: str) -> None:
        self.revision += 1
        tmp = self.root / "assignment.json.tmp"
        tmp.write_text(json.dumps({"digest": digest, "revision": self.revision}))
        tmp.replace(self.root / "assignment.json")

    def apply_reports(self) -> list[dict[str, Any]]:
        path = self.root / "apply-reports.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def health_reports(self) -> list[dict[str, Any]]:
        path = self.root / "health-reports.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]


async def eventually(
    check: Callable[[], bool], timeout_s: float = 10.0, what: str = "condition"
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


def node_config(tmp_path: Path, keys: Keys, watch: WatchDir, **overrides: Any) -> NodeConfig:
    values: dict[str, Any] = {
        "node_id": "edge-test",
        "state_dir": tmp_path / "state",
        "trust": [keys.public_path],
        "listen": "127.0.0.1:0",
        "admin": "127.0.0.1:0",
        "watch_dir": watch.root,
        "report_interval_s": 0.2,
    }
    values.update(overrides)
    return NodeConfig(**values)


@pytest.fixture
def watch(tmp_path: Path) -> WatchDir:
    return WatchDir(tmp_path / "watch")


StartNode = Callable[..., Awaitable[EdgeNode]]


@pytest.fixture
async def start_node(tmp_path: Path, keys: Keys, watch: WatchDir) -> AsyncIterator[StartNode]:
    nodes: list[EdgeNode] = []

    async def start(**overrides: Any) -> EdgeNode:
        node = EdgeNode(node_config(tmp_path, keys, watch, **overrides))
        await node.start()
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        if not node.stopped.is_set():
            await node.stop()


CannedNode = Callable[[bytes], contextlib.AbstractAsyncContextManager[EdgeNode]]


@pytest.fixture
def canned_node(start_node: StartNode, watch: WatchDir, keys: Keys) -> CannedNode:
    """`async with canned_node(raw) as node`: a node serving a bundle whose only origin answers
    every request with the bytes `raw`, then closes the connection (for responses a real origin
    would not send)."""

    @contextlib.asynccontextmanager
    async def run(response: bytes) -> AsyncIterator[EdgeNode]:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        try:
            node = await start_node()
            origin = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            await serving(node, watch.publish(keys.sign(make_bundle(origin))))
            yield node
        finally:
            server.close()
            await server.wait_closed()

    return run


async def ready_node(
    start_node: StartNode, watch: WatchDir, keys: Keys, origin: OriginServer, **bundle: Any
) -> EdgeNode:
    """A node serving a bundle whose origin is `origin`, with `bundle`'s other fields."""
    node = await start_node()
    await serving(node, watch.publish(keys.sign(make_bundle(origin.url, **bundle))))
    return node


async def serving(node: EdgeNode, digest: str, timeout_s: float = 10.0) -> None:
    await eventually(lambda: node.slot.digest == digest, timeout_s, f"node to serve {digest}")


async def raw_exchange(port: int, data: bytes, timeout_s: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes (or `timeout_s`), return what came back."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        chunks: list[bytes] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), deadline - loop.time())
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()


@pytest.fixture
def origin_process() -> Iterator[str]:
    """A real origin in its own process, for tests whose nodes are subprocesses too."""
    import socket
    import subprocess
    import sys

    port = free_port()
    script = Path(__file__).with_name("origin_main.py")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{root / 'src'}"}
    proc = subprocess.Popen([sys.executable, str(script), str(port)], env=env)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
