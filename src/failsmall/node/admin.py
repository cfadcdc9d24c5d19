"""The admin listener: health, readiness, Prometheus metrics and the config view.

GET /healthz   200 while the process runs
GET /readyz    200 when a bundle is served, else 503 with the reason; a line per failing
               background loop ("degraded: ..."); a module whose circuit breaker is open makes
               it say `degraded`, with 503 when that module fails closed (the node answers 503
               anyway: traffic should go to other nodes)
GET /metrics   Prometheus text format
GET /config    JSON: serving digest, LKG digests, poisoned digests, apply history
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from failsmall.model.traffic import FailurePolicy
from failsmall.node.agent import ConfigAgent
from failsmall.node.metrics import render
from failsmall.node.serving import ServingSlot


class AdminServer:
    """An aiohttp app on its own port; off the request path, so framework cost is irrelevant."""

    def __init__(self, slot: ServingSlot, agent: ConfigAgent, registry: CollectorRegistry) -> None:
        self.slot = slot
        self.agent = agent
        self.registry = registry
        self._runner: web.AppRunner | None = None
        self.port = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/config", self.config)
        return app

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        degraded = "".join(f"degraded: {line}\n" for line in self.agent.degraded())
        if self.slot.current is None:
            return web.Response(
                status=503,
                text="not ready: no configuration bundle has been received yet\n" + degraded,
            )
        serving = self.slot.current
        settings = serving.engine.bundle.modules
        closed = any(
            settings[module].while_open is FailurePolicy.FAIL_CLOSED
            for module, _ in serving.state.open_breakers()
        )
        return web.Response(
            status=503 if closed else 200,
            text=f"{degraded}ready: serving {self.slot.digest}\n",
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=render(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def config(self, request: web.Request) -> web.Response:
        return web.json_response(self.agent.describe())
