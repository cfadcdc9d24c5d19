"""An edge node in front of two real origins that report what arrived, and a raw HTTP client.

The node serves one bundle: a custom rule blocking `/admin` (403), the managed ruleset, and a
rate limit of 2 requests an hour per client and path on `/login` (429). Requests with
`Host: files.test` go to the stdlib file server, all others to the aiohttp application. The
node trusts loopback as a proxy, so a test picks its client address with `X-Forwarded-For`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from failsmall.managed.measure import managed_bundle
from failsmall.model import Limits, Origin, RateLimit, Route
from failsmall.model.envelope import public_key_pem
from failsmall.node.server import EdgeNode
from tests.evasion.origins import Witness, app_origin, file_origin
from tests.node.conftest import (
    Keys,
    WatchDir,
    blocking,
    make_bundle,
    node_config,
    raw_exchange,
    serving,
)

APP_HOST = "app.test"
FILES_HOST = "files.test"
BLOCKED = 403
OVER_RATE = 429


@dataclass(frozen=True)
class Sent:
    """One request as bytes on the wire, and the host it names."""

    method: str
    target: str
    host: str = APP_HOST
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    def wire(self) -> bytes:
        head = [f"{self.method} {self.target} HTTP/1.1", f"Host: {self.host}"]
        head += [f"{name}: {value}" for name, value in self.headers]
        if self.body or self.method == "POST":
            head.append(f"Content-Length: {len(self.body)}")
        head.append("Connection: close")
        return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes


async def send(port: int, request: Sent) -> Answer:
    """Send `request` as it is (no client-side normalization) and read the answer."""
    raw = await raw_exchange(port, request.wire())
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    assert len(status_line) >= 2, f"no HTTP answer to {request.target!r}: {raw[:200]!r}"
    return Answer(int(status_line[1]), body)


@dataclass(frozen=True)
class Edge:
    """A node and the two origins behind it."""

    port: int
    app: Witness
    files: Witness

    def origin(self, host: str) -> Witness:
        return self.files if host == FILES_HOST else self.app


def edge_bundle_fields(app_url: str, files_url: str) -> dict[str, object]:
    managed = managed_bundle()
    custom = blocking("block-admin", 'http.request.uri.path == "/admin"', BLOCKED)
    return {
        "origins": [Origin(id="app", url=app_url), Origin(id="files", url=files_url)],
        "routes": [Route(host=FILES_HOST, origin="files"), Route(origin="app")],
        "rulesets": [*custom["rulesets"], *managed.rulesets],
        "phases": {**custom["phases"], **managed.phases},
        "trusted_proxies": ["127.0.0.1"],
        # The wall-clock budget only as a watchdog: on a loaded machine, no verdict here may
        # depend on how long inspection took.
        "limits": Limits(module_time_budget_us=10_000_000),
        "rate_limits": [
            RateLimit(
                id="login",
                expression='http.request.uri.path == "/login"',
                key=["ip", "path"],
                requests=2,
                period_s=3600,
                status=OVER_RATE,
            )
        ],
    }


@contextlib.asynccontextmanager
async def running_edge(root: Path, bundle_fields: dict[str, object]) -> AsyncIterator[int]:
    """A node serving a bundle of `bundle_fields`, signed by a key of its own; its port."""
    private = Ed25519PrivateKey.generate()
    keys = Keys(private, root / "trusted.pub")
    root.mkdir(parents=True, exist_ok=True)
    keys.public_path.write_bytes(public_key_pem(private.public_key()))
    watch = WatchDir(root / "watch")
    node = EdgeNode(node_config(root, keys, watch))
    await node.start()
    try:
        bundle = make_bundle("http://127.0.0.1:9", **bundle_fields)
        await serving(node, watch.publish(keys.sign(bundle)), timeout_s=60)
        yield node.port
    finally:
        await node.stop()


@pytest_asyncio.fixture(scope="package", loop_scope="package")
async def edge(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Edge]:
    """One node for the whole suite (starting one compiles the managed ruleset); each test
    that needs a rate-limit bucket of its own sends from its own client address."""
    root = tmp_path_factory.mktemp("evasion")
    async with app_origin() as app, contextlib.AsyncExitStack() as stack:
        files = stack.enter_context(file_origin(root / "site"))
        async with running_edge(root / "node", edge_bundle_fields(app.url, files.url)) as port:
            yield Edge(port, app, files)
