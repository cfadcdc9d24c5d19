"""The hotwired node: `python -m failsmall.drill.hotwired --node-id ID --listen HOST:PORT
--admin HOST:PORT --control URL`.

It polls the instant-push pointer and swaps to whatever bundle it finds: no signature, no
check against its own capacities, no last-known-good, no quarantine. Requests run the stand-in
bot module, the rules engine and the pre-fix killswitch step with no bulkhead: an exception
fails the request with a 500 and is logged in full, every time (unbudgeted error reporting).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from failsmall.drill.hotwired.parts import PreallocatedBot, PreFixKillswitch
from failsmall.engine import (
    Decision,
    Engine,
    EngineBuildError,
    EngineState,
    Request,
    RequestView,
    Routed,
)
from failsmall.model import Bundle, Capacities, Origin

log = logging.getLogger("failsmall.drill.hotwired")

POLL_S = 0.2
UNLIMITED = Capacities(bot_feature_slots=100_000, max_rules=1_000_000)
"""The rules engine is built without checking the bundle against any capacity."""


@dataclass(frozen=True)
class Loaded:
    digest: str
    engine: Engine
    bot: PreallocatedBot
    killswitch: PreFixKillswitch


class HotwiredNode:
    def __init__(self, node_id: str, control: str) -> None:
        self.node_id = node_id
        self.control = control.rstrip("/")
        self.loaded: Loaded | None = None
        self.state: EngineState | None = None
        self.client: aiohttp.ClientSession | None = None
        self.unbuildable = ""
        """A bundle the engine could not build, not tried again."""

    # -- configuration: take whatever the pointer says ----------------------------------------

    async def follow(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                have = self.loaded.digest if self.loaded else ""
                try:
                    async with session.get(
                        f"{self.control}/v1/bundle", params={"have": have}
                    ) as response:
                        if response.status == 200:
                            body = await response.json()
                            digest = str(body["digest"])
                            if digest != self.unbuildable:
                                self.swap(digest, Bundle.model_validate(body["bundle"]))
                except (aiohttp.ClientError, TimeoutError) as exc:
                    log.warning("control unreachable: %s", exc)
                except EngineBuildError as exc:
                    # Nothing checked the bundle before it reached every node; the engine's
                    # own compiler cannot build it, so the node stays on what it had.
                    self.unbuildable = str(body["digest"])
                    log.error("cannot build bundle %s: %s", self.unbuildable, exc)
                await asyncio.sleep(POLL_S)

    def swap(self, digest: str, bundle: Bundle) -> None:
        killswitch = PreFixKillswitch(bundle)
        previous = self.loaded.engine if self.loaded else None
        engine = Engine.build(killswitch.engine_bundle(bundle), UNLIMITED, reuse=previous)
        self.state = engine.new_state(carry=self.state)
        self.loaded = Loaded(digest, engine, PreallocatedBot(bundle.bot.feature_file), killswitch)
        log.info("now serving bundle %s (%s)", digest, bundle.name)

    # -- requests: no bulkhead ----------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        loaded, state = self.loaded, self.state
        if loaded is None or state is None:
            return web.Response(status=503, text="no configuration yet\n")
        body = await request.read()
        edge_request = Request(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers=tuple(request.headers.items()),
            body=body[: loaded.engine.limits.waf_body_buffer],
            body_truncated=len(body) > loaded.engine.limits.waf_body_buffer,
            client_ip=request.remote or "127.0.0.1",
            host=request.host,
            now=time.time(),
        )
        loaded.bot.score(RequestView(edge_request))
        verdict = loaded.engine.evaluate(edge_request, state)
        loaded.killswitch.read_results(verdict)
        match verdict.decision, verdict.route:
            case Decision.ALLOW, Routed(origin=origin):
                return await self.forward(origin, request, body)
            case Decision.UNROUTED | Decision.ALLOW, _:
                return web.Response(status=404, text="no route\n")
            case Decision.BLOCK | Decision.ERROR, _:
                return web.Response(status=verdict.status, text=f"{verdict.status}\n")
            case Decision.CHALLENGE, _:
                return web.Response(status=403, text="challenge\n")

    async def forward(self, origin: Origin, request: web.Request, body: bytes) -> web.Response:
        assert self.client is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with self.client.request(
            request.method, origin.url.rstrip("/") + request.path_qs, headers=headers, data=body
        ) as answer:
            payload = await answer.read()
            kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_BY_HOP}
            return web.Response(status=answer.status, body=payload, headers=kept)

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "node_id": self.node_id,
                "pid": os.getpid(),
                "serving": self.loaded.digest if self.loaded else "",
                "poisoned": [],
                "last_apply": None,
            }
        )


HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "upgrade", "te", "trailer"}
)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


async def serve(node_id: str, listen: str, admin: str, control: str) -> None:
    node = HotwiredNode(node_id, control)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as client:
        node.client = client
        proxy = web.Application()
        proxy.router.add_route("*", "/{path:.*}", node.handle)
        admin_app = web.Application()
        admin_app.router.add_get("/config", node.config)
        runners = []
        for app, address in ((proxy, listen), (admin_app, admin)):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            host, port = _address(address)
            await web.TCPSite(runner, host, port).start()
            runners.append(runner)
        log.info("hotwired node %s listening on %s (admin %s)", node_id, listen, admin)
        try:
            await node.follow()
        finally:
            for runner in runners:
                await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m failsmall.drill.hotwired")
    parser.add_argument("--node-id", required=True)
    parser.add_argument("--listen", required=True)
    parser.add_argument("--admin", required=True)
    parser.add_argument("--control", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(serve(args.node_id, args.listen, args.admin, args.control))
